//! A repository in a local directory (a disk, a NAS mount).
//!
//! Writes go to `<root>/tmp/<random>`, are fsynced, then hard-linked to their final name
//! (which fails if the name exists: put-if-absent), and the parent directory is fsynced.
//! Invariant: an object name is visible only after its bytes are durable; a crash leaves
//! at worst a stray file under `tmp/`, which is never listed as an object.
//!
//! Ranged reads keep a few recently read objects open and read them with `pread`: objects
//! are write-once, so a kept handle always reads the bytes the name was written with
//! (even after a delete), and a restore of many small files costs one system call per
//! blob instead of five.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::{Backend, ObjectInfo, check_name, range_in};
use crate::error::{Error, Result};

const TMP_DIR: &str = "tmp";

/// Most objects kept open for ranged reads (packs: a restore reads them in runs).
const OPEN_HANDLES: usize = 64;

/// Open objects by name, with their size.
type OpenHandles = Arc<Mutex<HashMap<String, (Arc<File>, u64)>>>;

/// Objects as files below a root directory.
#[derive(Debug, Clone)]
pub struct LocalBackend {
    root: PathBuf,
    open: OpenHandles,
}

impl LocalBackend {
    /// A backend rooted at `root`, which is created if missing.
    pub fn create(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        fs::create_dir_all(root.join(TMP_DIR))?;
        Ok(Self::at(root))
    }

    fn at(root: PathBuf) -> Self {
        Self {
            root,
            open: Arc::default(),
        }
    }

    /// An open handle and the size of an object, from the cache or newly opened. Only
    /// packs (`data/`, content-addressed, never rewritten) are kept open: a handle kept on
    /// an object that is replaced (the config, a lock) would go on reading the old file.
    fn handle(&self, name: &str) -> Result<(Arc<File>, u64)> {
        if !name.starts_with("data/") {
            let path = self.path(name)?;
            let f = File::open(&path).map_err(|e| Self::not_found(name, e))?;
            let size = f.metadata().map_err(|e| Error::backend(name, e))?.len();
            return Ok((Arc::new(f), size));
        }
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(h) = open.get(name) {
            return Ok(h.clone());
        }
        let path = self.path(name)?;
        let f = File::open(&path).map_err(|e| Self::not_found(name, e))?;
        let size = f.metadata().map_err(|e| Error::backend(name, e))?.len();
        if open.len() >= OPEN_HANDLES {
            open.clear();
        }
        let h = (Arc::new(f), size);
        open.insert(name.to_owned(), h.clone());
        Ok(h)
    }

    /// A backend rooted at an existing directory; [`Error::RepositoryMissing`] otherwise.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        if !root.is_dir() {
            return Err(Error::RepositoryMissing {
                location: root.display().to_string(),
            });
        }
        fs::create_dir_all(root.join(TMP_DIR))?;
        Ok(Self::at(root))
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, name: &str) -> Result<PathBuf> {
        check_name(name)?;
        Ok(self.root.join(name))
    }

    fn write_temp(&self, name: &str, bytes: &[u8]) -> Result<PathBuf> {
        let tmp = self.root.join(TMP_DIR).join(format!(
            "{}.{}",
            hex::encode(crate::crypto::random_array::<12>()),
            std::process::id()
        ));
        let result = (|| {
            let mut f = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
            f.write_all(bytes)?;
            f.sync_all()
        })();
        match result {
            Ok(()) => Ok(tmp),
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                Err(Error::backend(name, e))
            }
        }
    }

    fn ensure_parent(&self, name: &str, path: &Path) -> Result<()> {
        if let Some(parent) = path.parent()
            && !parent.is_dir()
        {
            fs::create_dir_all(parent).map_err(|e| Error::backend(name, e))?;
            if let Some(grand) = parent.parent() {
                sync_dir(grand).map_err(|e| Error::backend(name, e))?;
            }
        }
        Ok(())
    }

    fn not_found(name: &str, e: std::io::Error) -> Error {
        if e.kind() == ErrorKind::NotFound {
            Error::NotFound {
                object: name.into(),
            }
        } else {
            Error::backend(name, e)
        }
    }
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

impl Backend for LocalBackend {
    fn location(&self) -> String {
        self.root.display().to_string()
    }

    fn put(&self, name: &str, bytes: &[u8]) -> Result<()> {
        let path = self.path(name)?;
        self.ensure_parent(name, &path)?;
        let tmp = self.write_temp(name, bytes)?;
        let linked = fs::hard_link(&tmp, &path);
        let _ = fs::remove_file(&tmp);
        match linked {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                return Err(Error::AlreadyExists {
                    object: name.into(),
                });
            }
            Err(e) => return Err(Error::backend(name, e)),
        }
        let parent = path.parent().unwrap_or(&self.root);
        sync_dir(parent).map_err(|e| Error::backend(name, e))
    }

    fn replace(&self, name: &str, bytes: &[u8]) -> Result<()> {
        let path = self.path(name)?;
        self.open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
        self.ensure_parent(name, &path)?;
        let tmp = self.write_temp(name, bytes)?;
        if let Err(e) = fs::rename(&tmp, &path) {
            let _ = fs::remove_file(&tmp);
            return Err(Error::backend(name, e));
        }
        let parent = path.parent().unwrap_or(&self.root);
        sync_dir(parent).map_err(|e| Error::backend(name, e))
    }

    fn get(&self, name: &str) -> Result<Vec<u8>> {
        let path = self.path(name)?;
        fs::read(&path).map_err(|e| Self::not_found(name, e))
    }

    fn get_range(&self, name: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        let (f, size) = self.handle(name)?;
        range_in(name, size, offset, len)?;
        let mut buf = vec![0u8; len as usize];
        f.read_exact_at(&mut buf, offset)
            .map_err(|e| Error::backend(name, e))?;
        Ok(buf)
    }

    fn get_range_into(&self, name: &str, offset: u64, buf: &mut [u8]) -> Result<()> {
        let (f, size) = self.handle(name)?;
        range_in(name, size, offset, buf.len() as u64)?;
        f.read_exact_at(buf, offset)
            .map_err(|e| Error::backend(name, e))
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        // Walk only the directory the prefix points into.
        let dir_part = prefix.rfind('/').map(|i| &prefix[..i]).unwrap_or("");
        let start = if dir_part.is_empty() {
            self.root.clone()
        } else {
            check_name(dir_part)?;
            self.root.join(dir_part)
        };
        let mut out = Vec::new();
        let mut stack = vec![(start, dir_part.to_owned())];
        while let Some((dir, name)) = stack.pop() {
            let entries = match fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::backend(prefix, e)),
            };
            for entry in entries {
                let entry = entry.map_err(|e| Error::backend(prefix, e))?;
                let Some(file_name) = entry.file_name().to_str().map(str::to_owned) else {
                    continue;
                };
                let full = if name.is_empty() {
                    file_name
                } else {
                    format!("{name}/{file_name}")
                };
                if full == TMP_DIR || check_name(&full).is_err() {
                    continue;
                }
                let meta = match entry.metadata() {
                    Ok(m) => m,
                    // Deleted by another process since it was listed (locks come and go).
                    Err(e) if e.kind() == ErrorKind::NotFound => continue,
                    Err(e) => return Err(Error::backend(&*full, e)),
                };
                if meta.is_dir() {
                    if prefix.starts_with(&format!("{full}/")) || full.starts_with(prefix) {
                        stack.push((entry.path(), full));
                    }
                } else if meta.is_file() && full.starts_with(prefix) {
                    out.push(ObjectInfo {
                        name: full,
                        size: meta.len(),
                    });
                }
            }
        }
        Ok(out)
    }

    fn delete(&self, name: &str) -> Result<()> {
        let path = self.path(name)?;
        // A deleted object must read as missing from this process too.
        self.open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::backend(name, e)),
        }
        let parent = path.parent().unwrap_or(&self.root);
        sync_dir(parent).map_err(|e| Error::backend(name, e))
    }

    fn stat(&self, name: &str) -> Result<ObjectInfo> {
        let path = self.path(name)?;
        let meta = fs::metadata(&path).map_err(|e| Self::not_found(name, e))?;
        Ok(ObjectInfo {
            name: name.to_owned(),
            size: meta.len(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contract() {
        let dir = tempfile::tempdir().unwrap();
        let b = LocalBackend::create(dir.path().join("repo")).unwrap();
        super::super::contract_tests::run(&b);
        // Nothing is left in tmp/ after successful writes.
        assert_eq!(fs::read_dir(b.root().join(TMP_DIR)).unwrap().count(), 0);
    }

    #[test]
    fn kept_handles_never_outlive_a_delete() {
        let dir = tempfile::tempdir().unwrap();
        let b = LocalBackend::create(dir.path()).unwrap();
        b.put("data/ab/x", b"0123456789").unwrap();
        assert_eq!(b.get_range("data/ab/x", 2, 3).unwrap(), b"234");
        assert_eq!(b.get_range("data/ab/x", 7, 3).unwrap(), b"789");
        assert!(b.get_range("data/ab/x", 8, 3).is_err(), "past the end");
        b.delete("data/ab/x").unwrap();
        assert!(b.get_range("data/ab/x", 2, 3).unwrap_err().is_not_found());
        // More objects than handles kept: older ones are reopened, not lost.
        for i in 0..(OPEN_HANDLES + 5) {
            b.put(&format!("data/ab/{i}"), format!("object {i}").as_bytes())
                .unwrap();
            assert_eq!(
                b.get_range(&format!("data/ab/{i}"), 0, 6).unwrap(),
                b"object"
            );
        }
        assert_eq!(b.get_range("data/ab/0", 7, 1).unwrap(), b"0");
    }

    /// Regression: a handle kept from a ranged read of the config went on reading the
    /// replaced file, so reading the config back after writing it (`update_config`) saw
    /// the old object's length and failed as corrupt.
    #[test]
    fn a_replaced_object_reads_as_its_new_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let b = LocalBackend::create(dir.path()).unwrap();
        for name in ["config", "data/ab/x"] {
            b.replace(name, b"short").unwrap();
            assert_eq!(b.get_range(name, 0, 5).unwrap(), b"short");
            b.replace(name, b"a longer object").unwrap();
            assert_eq!(
                b.get_range(name, 0, 15).unwrap(),
                b"a longer object",
                "{name}"
            );
        }
        // Replaced by another process (another handle on the same directory).
        let other = LocalBackend::open(dir.path()).unwrap();
        other.replace("config", b"third").unwrap();
        assert_eq!(b.get_range("config", 0, 5).unwrap(), b"third");
    }

    #[test]
    fn open_missing_directory_is_repository_missing() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            LocalBackend::open(dir.path().join("nope")),
            Err(Error::RepositoryMissing { .. })
        ));
    }

    #[test]
    fn stray_temp_files_are_not_listed() {
        let dir = tempfile::tempdir().unwrap();
        let b = LocalBackend::create(dir.path()).unwrap();
        fs::write(b.root().join(TMP_DIR).join("leftover"), b"x").unwrap();
        b.put("keys/aa", b"k").unwrap();
        let names: Vec<_> = b.list("").unwrap().into_iter().map(|o| o.name).collect();
        assert_eq!(names, vec!["keys/aa".to_string()]);
    }
}
