//! Glob patterns for exclusion (backup) and inclusion/exclusion (restore).
//!
//! A pattern without `/` matches an entry's name wherever it is (`*.tmp`); a pattern with
//! `/` matches the whole absolute path (`/var/lib/chat/cache`, `**/node_modules`), where
//! `*` stays within one component and `**` crosses them. A pattern also covers everything
//! below what it matches, because a matched directory is skipped or taken whole.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

use crate::error::{Error, Result};

/// A compiled set of glob patterns, with the frontend's rule: a pattern without `/`
/// matches an entry's name, one with `/` its whole path.
#[derive(Debug, Clone)]
pub struct Patterns {
    by_name: GlobSet,
    by_path: GlobSet,
    count: usize,
}

impl Patterns {
    /// Compiles the patterns; fails with [`Error::Pattern`] naming one that does not parse.
    pub fn new(patterns: &[String]) -> Result<Self> {
        let mut by_name = GlobSetBuilder::new();
        let mut by_path = GlobSetBuilder::new();
        for p in patterns {
            let glob = GlobBuilder::new(p)
                .literal_separator(true)
                .backslash_escape(true)
                .build()
                .map_err(|e| Error::Pattern {
                    pattern: p.clone(),
                    reason: e.kind().to_string(),
                })?;
            if p.contains('/') {
                by_path.add(glob);
            } else {
                by_name.add(glob);
            }
        }
        let built = |b: GlobSetBuilder| {
            b.build().map_err(|e| Error::Pattern {
                pattern: patterns.join(" "),
                reason: e.to_string(),
            })
        };
        Ok(Self {
            by_name: built(by_name)?,
            by_path: built(by_path)?,
            count: patterns.len(),
        })
    }

    /// Whether there are no patterns (then nothing matches).
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Whether the entry at absolute `path` (whose last component is `name`) matches; the
    /// bytes need not be UTF-8.
    pub fn matches(&self, path: &[u8], name: &[u8]) -> bool {
        !self.is_empty()
            && (self.by_name.is_match(Path::new(OsStr::from_bytes(name)))
                || self.by_path.is_match(Path::new(OsStr::from_bytes(path))))
    }
}

/// Reads an exclude file: one pattern per line; blank lines and lines starting with `#`
/// are ignored, surrounding whitespace is trimmed.
pub(crate) fn read_pattern_file(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(p: &[&str]) -> Patterns {
        Patterns::new(&p.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn names_and_paths() {
        let p = set(&["*.tmp", "/srv/chat/cache", "**/node_modules"]);
        assert!(p.matches(b"/a/b/x.tmp", b"x.tmp"));
        assert!(!p.matches(b"/a/b/x.tmpl", b"x.tmpl"));
        assert!(p.matches(b"/srv/chat/cache", b"cache"));
        assert!(!p.matches(b"/other/srv/chat/cache", b"cache"));
        assert!(p.matches(b"/x/y/node_modules", b"node_modules"));
        assert!(!set(&[]).matches(b"/a", b"a"));
        // `*` does not cross a separator in a path pattern.
        assert!(!set(&["/srv/*"]).matches(b"/srv/a/b", b"b"));
        assert!(set(&["/srv/*"]).matches(b"/srv/a", b"a"));
    }

    #[test]
    fn non_utf8_names_match() {
        assert!(set(&["*.log"]).matches(b"/d/\xff.log", b"\xff.log"));
    }

    #[test]
    fn bad_pattern_is_an_error() {
        assert!(matches!(
            Patterns::new(&["a[".to_string()]),
            Err(Error::Pattern { .. })
        ));
    }

    #[test]
    fn pattern_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("ex");
        std::fs::write(&f, "# comment\n\n  *.tmp  \n/srv/cache\n").unwrap();
        assert_eq!(read_pattern_file(&f).unwrap(), vec!["*.tmp", "/srv/cache"]);
    }
}
