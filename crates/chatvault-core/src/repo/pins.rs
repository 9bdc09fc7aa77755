//! What this client remembers about a repository, to refuse rollbacks: the admin key, the
//! highest config sequence and key generation seen, and each local writer's sequence.
//!
//! Stored as `pins` in the repository's cache directory, one `name value` pair per line,
//! replaced atomically. Invariants: the pinned numbers only grow; a missing pins file is a
//! first contact (trust on first use of the admin key that the key slot vouches for).

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::crypto::sign::PublicKey;
use crate::error::{Error, Result};
use crate::id::RepoId;

#[derive(Debug)]
pub(crate) struct Pins {
    path: PathBuf,
    values: BTreeMap<String, String>,
}

impl Pins {
    pub fn load(dir: &Path, repo: &RepoId) -> Result<Self> {
        let path = dir.join("pins");
        let mut values = BTreeMap::new();
        match fs::read_to_string(&path) {
            Ok(text) => {
                for line in text.lines() {
                    if let Some((k, v)) = line.split_once(' ') {
                        values.insert(k.to_owned(), v.to_owned());
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        let pins = Self { path, values };
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
        self.values
            .get(key)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    /// Refuses a config older than the one seen before, then remembers this one.
    pub fn check_and_update(&mut self, c: &Config) -> Result<()> {
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
        self.values.insert("repo_id".into(), c.repo_id.to_hex());
        self.values.insert("admin_key".into(), c.admin_key.to_hex());
        self.values
            .insert("config_sequence".into(), c.sequence.to_string());
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

    fn save(&self) -> Result<()> {
        let tmp = self
            .path
            .with_extension(format!("tmp{}", std::process::id()));
        let mut f = fs::File::create(&tmp)?;
        for (k, v) in &self.values {
            writeln!(f, "{k} {v}")?;
        }
        f.sync_all()?;
        fs::rename(&tmp, &self.path)?;
        Ok(())
    }
}
