//! What this client remembers about a repository, to refuse rollbacks and forks: the admin
//! key, the highest config sequence seen with the hash of that config, the highest key
//! generation, and each local writer's sequence.
//!
//! Stored as `pins` in the repository's cache directory, one `name value` pair per line.
//! Invariants:
//! - The pinned numbers only grow, and a config with the pinned sequence but another hash
//!   is refused (two different configs signed with one sequence are a fork).
//! - Fail closed: a missing pins file is a first contact (trust on first use of the admin
//!   key that the key slot vouches for), but a pins file that exists and does not parse is
//!   an error, never a first contact.
//! - The file is written to a fresh temporary name (`O_CREAT | O_EXCL | O_NOFOLLOW`, mode
//!   0600), synced, renamed over `pins`, and the directory is synced; the pins path itself
//!   is never followed if it is a symlink.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::crypto::sign::PublicKey;
use crate::error::{Error, Result};
use crate::id::RepoId;

/// The largest pins file read: a few hundred bytes per local writer.
const MAX_PINS_BYTES: u64 = 1 << 20;

#[derive(Debug)]
pub(crate) struct Pins {
    path: PathBuf,
    values: BTreeMap<String, String>,
}

fn damaged(why: impl Into<String>) -> Error {
    Error::corrupt(
        "local pins file",
        format!(
            "{}; it guards against rollbacks, so it is not ignored: move it aside only if \
             you trust the repository's current config",
            why.into()
        ),
    )
}

impl Pins {
    pub fn load(dir: &Path, repo: &RepoId) -> Result<Self> {
        let path = dir.join("pins");
        let mut values = BTreeMap::new();
        match fs::symlink_metadata(&path) {
            Ok(m) if !m.file_type().is_file() => {
                return Err(damaged("it is not a regular file (a symlink?)"));
            }
            Ok(m) if m.len() > MAX_PINS_BYTES => return Err(damaged("it is too large")),
            Ok(_) => {
                let text = fs::read_to_string(&path)
                    .map_err(|e| damaged(format!("it cannot be read: {e}")))?;
                for line in text.lines() {
                    let (k, v) = line
                        .split_once(' ')
                        .filter(|(k, _)| !k.is_empty())
                        .ok_or_else(|| damaged("a line is not a `name value` pair"))?;
                    if values.insert(k.to_owned(), v.to_owned()).is_some() {
                        return Err(damaged(format!("{k} appears twice")));
                    }
                }
                for key in ["repo_id", "admin_key", "config_sequence", "key_generation"] {
                    if !values.contains_key(key) {
                        return Err(damaged(format!("it lacks {key}")));
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        let pins = Self { path, values };
        for (k, v) in &pins.values {
            let numeric =
                k == "config_sequence" || k == "key_generation" || k.starts_with("writer_seq.");
            if numeric && v.parse::<u64>().is_err() {
                return Err(damaged(format!("{k} is not a number")));
            }
        }
        if let Some(r) = pins.values.get("repo_id")
            && *r != repo.to_hex()
        {
            return Err(Error::untrusted(
                "config",
                "the cache belongs to another repository",
            ));
        }
        Ok(pins)
    }

    fn number(&self, key: &str) -> u64 {
        // Every numeric value was checked by `load` or written by this type.
        self.values
            .get(key)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    /// Refuses a config older than the one seen before, or another config with the same
    /// sequence, then remembers this one. `hash` is the BLAKE3 hash of the config object.
    pub fn check_and_update(&mut self, c: &Config, hash: &[u8; 32]) -> Result<()> {
        if let Some(admin) = self.values.get("admin_key")
            && *admin != c.admin_key.to_hex()
        {
            return Err(Error::untrusted(
                "config",
                "admin key differs from the pinned one",
            ));
        }
        for (what, key, found) in [
            ("config sequence", "config_sequence", c.sequence),
            (
                "key generation",
                "key_generation",
                u64::from(c.key_generation),
            ),
        ] {
            let pinned = self.number(key);
            if found < pinned {
                return Err(Error::Rollback {
                    what,
                    pinned,
                    found,
                });
            }
        }
        let hash = hex::encode(hash);
        if c.sequence == self.number("config_sequence")
            && let Some(pinned) = self.values.get("config_hash")
            && *pinned != hash
        {
            return Err(Error::untrusted(
                "config",
                format!(
                    "another config with sequence {} was seen before: two configs were \
                     signed with one sequence (a fork, or an admin key used elsewhere)",
                    c.sequence
                ),
            ));
        }
        self.values.insert("repo_id".into(), c.repo_id.to_hex());
        self.values.insert("admin_key".into(), c.admin_key.to_hex());
        self.values
            .insert("config_sequence".into(), c.sequence.to_string());
        self.values.insert("config_hash".into(), hash);
        self.values
            .insert("key_generation".into(), c.key_generation.to_string());
        self.save()
    }

    /// The next sequence number for objects signed by `writer`: above every number this
    /// client used before, and at least the current time in microseconds, so a writer that
    /// lost its cache still moves forward (as long as its clock does).
    pub fn next_writer_seq(&mut self, writer: &PublicKey) -> Result<u64> {
        let key = format!("writer_seq.{}", writer.to_hex());
        let now_us = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(0);
        let next = (self.number(&key) + 1).max(now_us);
        self.values.insert(key, next.to_string());
        self.save()?;
        Ok(next)
    }

    /// Remembers the last snapshot this client's writer committed.
    pub fn set(&mut self, key: &str, value: String) -> Result<()> {
        self.values.insert(key.to_owned(), value);
        self.save()
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }

    /// Every entry whose name starts with `prefix`, copied out.
    pub fn with_prefix(&self, prefix: &str) -> Vec<(String, String)> {
        self.values
            .range(prefix.to_owned()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Forgets an entry.
    pub fn remove(&mut self, key: &str) -> Result<()> {
        if self.values.remove(key).is_some() {
            self.save()?;
        }
        Ok(())
    }

    fn save(&self) -> Result<()> {
        let dir = self
            .path
            .parent()
            .ok_or_else(|| Error::invalid("pins", "the pins file has no directory"))?;
        let tmp = dir.join(format!(
            "pins.tmp{}-{}",
            std::process::id(),
            hex::encode(crate::crypto::random_array::<4>())
        ));
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(&tmp)?;
        let mut text = String::new();
        for (k, v) in &self.values {
            text.push_str(k);
            text.push(' ');
            text.push_str(v);
            text.push('\n');
        }
        let written = f.write_all(text.as_bytes()).and_then(|()| f.sync_all());
        drop(f);
        // rename replaces a symlink at `pins` itself rather than following it.
        if let Err(e) = written.and_then(|()| fs::rename(&tmp, &self.path)) {
            let _ = fs::remove_file(&tmp);
            return Err(e.into());
        }
        fs::File::open(dir)?.sync_all()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::sign::Signer;

    fn config(sequence: u64) -> Config {
        let admin = Signer::from_seed(&[1; 32]);
        let mut c = crate::config::tests::sample(&admin);
        c.sequence = sequence;
        c
    }

    #[test]
    fn a_rollback_and_a_fork_are_refused_and_a_newer_config_is_pinned() {
        let dir = tempfile::tempdir().unwrap();
        let c = config(3);
        let mut pins = Pins::load(dir.path(), &c.repo_id).unwrap();
        pins.check_and_update(&c, &[1; 32]).unwrap();
        pins.check_and_update(&c, &[1; 32]).unwrap();
        let mut pins = Pins::load(dir.path(), &c.repo_id).unwrap();
        assert!(matches!(
            pins.check_and_update(&config(2), &[9; 32]),
            Err(Error::Rollback {
                pinned: 3,
                found: 2,
                ..
            })
        ));
        let e = pins.check_and_update(&c, &[2; 32]).unwrap_err();
        assert!(matches!(e, Error::Untrusted { .. }), "{e}");
        assert!(e.to_string().contains("two configs"), "{e}");
        pins.check_and_update(&config(4), &[2; 32]).unwrap();
    }

    /// Before: a pins file that did not parse was read as empty, i.e. as a first contact,
    /// so damaging it disabled the rollback protection it exists for.
    #[test]
    fn a_damaged_pins_file_is_an_error_not_a_first_contact() {
        let c = config(3);
        for damage in [
            "garbage",
            "repo_id x\nrepo_id y\n",
            "config_sequence many\n",
            "",
        ] {
            let dir = tempfile::tempdir().unwrap();
            let mut pins = Pins::load(dir.path(), &c.repo_id).unwrap();
            pins.check_and_update(&c, &[1; 32]).unwrap();
            let text = fs::read_to_string(dir.path().join("pins")).unwrap();
            let bad = if damage.is_empty() {
                // Truncated: the last lines are gone.
                text.lines().take(2).collect::<Vec<_>>().join("\n")
            } else {
                format!("{text}{damage}\n")
            };
            fs::write(dir.path().join("pins"), bad).unwrap();
            let e = Pins::load(dir.path(), &c.repo_id).unwrap_err();
            assert!(matches!(e, Error::Corrupt { .. }), "{damage:?}: {e}");
            assert!(e.to_string().contains("pins"), "{e}");
        }
    }

    #[test]
    fn the_pins_file_is_private_and_never_written_through_a_symlink() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let c = config(3);
        let mut pins = Pins::load(dir.path(), &c.repo_id).unwrap();
        pins.check_and_update(&c, &[1; 32]).unwrap();
        let mode = fs::metadata(dir.path().join("pins"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        // A symlink planted at the pins path: loading refuses it, and saving replaces
        // the link instead of writing through it.
        let target = dir.path().join("elsewhere");
        fs::write(&target, "untouched").unwrap();
        fs::remove_file(dir.path().join("pins")).unwrap();
        std::os::unix::fs::symlink(&target, dir.path().join("pins")).unwrap();
        assert!(matches!(
            Pins::load(dir.path(), &c.repo_id),
            Err(Error::Corrupt { .. })
        ));
        pins.set("x", "1".into()).unwrap();
        assert_eq!(fs::read_to_string(&target).unwrap(), "untouched");
        assert!(
            fs::symlink_metadata(dir.path().join("pins"))
                .unwrap()
                .is_file()
        );
        let leftovers: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains("tmp"))
            .collect();
        assert!(leftovers.is_empty());
    }
}
