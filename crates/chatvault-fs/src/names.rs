//! Entry names and paths inside a snapshot, and the checks that keep restore in its target.
//!
//! Invariants:
//! - A name that passes [`check_name`] is one normal path component: non-empty, not `.` or
//!   `..`, without `/` or NUL. Joined under a directory it can only name a child of it.
//! - Snapshot paths are `/`-separated byte strings starting with `/`; [`display`] is for
//!   messages only (unprintable and non-UTF-8 bytes escaped).

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// Why a name from a tree cannot be written to disk, or `None` when it can. Frontends
/// that write their own files (or take names from a caller) use the same rule.
pub fn check_name(name: &[u8]) -> Option<&'static str> {
    if name.is_empty() {
        Some("empty name")
    } else if name == b"." || name == b".." {
        Some("name is . or ..")
    } else if name.contains(&b'/') {
        Some("name contains '/'")
    } else if name.contains(&0) {
        Some("name contains NUL")
    } else {
        None
    }
}

/// Whether a symbolic link at snapshot path `link` (inside the restored part, given relative
/// to the restore root as components) with this target stays inside the restore root when
/// resolved lexically.
///
/// A `..` after a normal component is refused: that component may itself be a restored
/// link (`sub/up/..` with `sub/up -> ..` resolves above the root although it lexically
/// stays inside). Leading `..`s climb real directories restore created, and normal
/// components only descend, so what is accepted stays inside.
pub(crate) fn link_stays_inside(depth: usize, target: &[u8]) -> bool {
    let target = Path::new(OsStr::from_bytes(target));
    if target.as_os_str().is_empty() {
        return false;
    }
    // The link lives in a directory `depth` levels below the root.
    let mut level = depth as i64;
    let mut descended = false;
    for c in target.components() {
        match c {
            Component::RootDir | Component::Prefix(_) => return false,
            Component::ParentDir if descended => return false,
            Component::ParentDir => level -= 1,
            Component::Normal(_) => {
                level += 1;
                descended = true;
            }
            Component::CurDir => {}
        }
        if level < 0 {
            return false;
        }
    }
    true
}

/// `parent/name` for snapshot paths.
pub(crate) fn join(parent: &[u8], name: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(parent.len() + 1 + name.len());
    p.extend_from_slice(parent);
    if !p.ends_with(b"/") {
        p.push(b'/');
    }
    p.extend_from_slice(name);
    p
}

/// A snapshot path for messages: [`chatvault_core::printable_bytes`], the escaping every
/// frontend uses (UTF-8 kept; control and formatting characters and other bytes escaped).
pub fn display(path: &[u8]) -> String {
    chatvault_core::printable_bytes(path).into_owned()
}

/// A snapshot path as a local path (for messages and progress).
pub(crate) fn as_path(path: &[u8]) -> &Path {
    Path::new(OsStr::from_bytes(path))
}

/// Makes a path absolute and removes `.` and `..` lexically, without following links
/// (a link given as a path is backed up as the link).
pub(crate) fn normalize(path: &Path) -> std::io::Result<PathBuf> {
    let abs = std::path::absolute(path)?;
    let mut out = PathBuf::from("/");
    for c in abs.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    Ok(out)
}

/// Splits a `/`-separated snapshot sub-path into components, refusing any that are not
/// plain names.
pub(crate) fn components(path: &str) -> Result<Vec<&[u8]>, String> {
    path.split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .map(|c| match check_name(c.as_bytes()) {
            None => Ok(c.as_bytes()),
            Some(why) => Err(format!("{path}: {why}")),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_names_are_refused() {
        for bad in [&b""[..], b".", b"..", b"a/b", b"/", b"/etc", b"a\0b"] {
            assert!(check_name(bad).is_some(), "{bad:?}");
        }
        for good in [
            &b"a"[..],
            b"...",
            b".hidden",
            b"\xff\xfe",
            "日本".as_bytes(),
        ] {
            assert!(check_name(good).is_none(), "{good:?}");
        }
    }

    #[test]
    fn link_targets() {
        assert!(link_stays_inside(0, b"a/b"));
        assert!(link_stays_inside(1, b"../a"));
        assert!(link_stays_inside(2, b"./../../x"));
        assert!(!link_stays_inside(0, b"../a"));
        assert!(!link_stays_inside(1, b"../../a"));
        assert!(!link_stays_inside(3, b"/etc/passwd"));
        assert!(!link_stays_inside(1, b"a/../../../b"));
        assert!(!link_stays_inside(1, b""));
        // Regression: `sub/up -> ..` makes `sub/up/../x` resolve outside.
        assert!(!link_stays_inside(0, b"sub/up/../x"));
        assert!(!link_stays_inside(3, b"a/../b"));
        assert!(link_stays_inside(3, b"../../a/b/./c"));
    }

    #[test]
    fn display_escapes() {
        assert_eq!(display(b"/a/\xffb\n"), "/a/\\xffb\\n");
        assert_eq!(display("/日本".as_bytes()), "/日本");
    }

    #[test]
    fn normalize_is_lexical() {
        assert_eq!(
            normalize(Path::new("/a/./b/../c/")).unwrap(),
            Path::new("/a/c")
        );
        assert_eq!(normalize(Path::new("/../..")).unwrap(), Path::new("/"));
        assert!(normalize(Path::new("rel")).unwrap().is_absolute());
    }

    #[test]
    fn sub_path_components() {
        assert_eq!(
            components("/a//b/./c").unwrap(),
            vec![&b"a"[..], b"b", b"c"]
        );
        assert!(components("a/../b").is_err());
        assert_eq!(components("/").unwrap(), Vec::<&[u8]>::new());
    }
}
