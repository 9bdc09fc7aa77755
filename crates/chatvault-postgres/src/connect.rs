//! Connection settings: a URL or `key=value` string, a password from a file or the
//! environment, and a display form that never shows the password.
//!
//! Invariants: [`PgConnect`]'s `Debug` and [`PgConnect::target`] never contain the
//! password; the password is never read from anywhere the caller did not name (the URL,
//! the given file, `PGPASSWORD`).

use std::path::Path;
use std::str::FromStr;

use crate::error::{Error, Result};

/// How to reach the database.
#[derive(Clone)]
pub struct PgConnect {
    config: postgres::Config,
}

impl std::fmt::Debug for PgConnect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgConnect")
            .field("target", &self.target())
            .finish_non_exhaustive()
    }
}

impl PgConnect {
    /// Parses `postgresql://user[:password]@host[:port]/db[?…]` or `host=… user=…
    /// dbname=…`. A password in the string is used but never shown; without one,
    /// `password_file` (its first line) or else `PGPASSWORD` gives it.
    pub fn new(url: &str, password_file: Option<&Path>) -> Result<PgConnect> {
        // The client's parse error quotes no part of the string.
        let mut config = postgres::Config::from_str(url).map_err(|e| {
            Error::Config(format!("not a PostgreSQL URL or key=value string ({e})"))
        })?;
        if config.get_password().is_none() {
            if let Some(path) = password_file {
                let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
                    path: path.display().to_string(),
                    source,
                })?;
                let line = text.lines().next().unwrap_or_default();
                config.password(line);
            } else if let Ok(p) = std::env::var("PGPASSWORD") {
                config.password(p);
            }
        }
        if config.get_user().is_none()
            && let Ok(u) = std::env::var("PGUSER")
        {
            config.user(&u);
        }
        if config.get_hosts().is_empty() {
            config.host("localhost");
        }
        Ok(PgConnect { config })
    }

    /// `user@host:port/db`, for messages (never the password).
    pub fn target(&self) -> String {
        let host = self
            .config
            .get_hosts()
            .first()
            .map(|h| match h {
                postgres::config::Host::Tcp(h) => h.clone(),
                postgres::config::Host::Unix(p) => p.display().to_string(),
            })
            .unwrap_or_default();
        let port = self.config.get_ports().first().copied().unwrap_or(5432);
        format!(
            "{}@{host}:{port}/{}",
            self.config.get_user().unwrap_or(""),
            self.database()
        )
    }

    /// The database's name (the user's name when none is given, as libpq does).
    pub fn database(&self) -> String {
        self.config
            .get_dbname()
            .or(self.config.get_user())
            .unwrap_or("postgres")
            .to_owned()
    }

    /// Opens a connection (no TLS: a socket on the database host or a trusted network;
    /// see docs/OPERATIONS.md).
    pub fn connect(&self) -> Result<postgres::Client> {
        let mut config = self.config.clone();
        config.application_name("chatvault");
        config
            .connect(postgres::NoTls)
            .map_err(|source| Error::Connect {
                target: self.target(),
                source,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_is_never_shown() {
        let c = PgConnect::new(
            "postgresql://chatvault:s3cret-pw@db.example:6543/mattermost",
            None,
        )
        .unwrap();
        assert_eq!(c.target(), "chatvault@db.example:6543/mattermost");
        assert_eq!(c.database(), "mattermost");
        let shown = format!("{c:?} {}", c.target());
        assert!(!shown.contains("s3cret"), "{shown}");
        let e = PgConnect::new("postgresql://u:s3cret@[bad", None).unwrap_err();
        assert!(!e.to_string().contains("s3cret"), "{e}");
    }

    #[test]
    fn a_password_file_gives_the_password() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pw");
        std::fs::write(&f, "from-file\n").unwrap();
        let c = PgConnect::new("host=/run/postgresql user=backup dbname=chat", Some(&f)).unwrap();
        assert_eq!(c.config.get_password(), Some(&b"from-file"[..]));
        assert_eq!(c.target(), "backup@/run/postgresql:5432/chat");
        assert!(!format!("{c:?}").contains("from-file"));
    }
}
