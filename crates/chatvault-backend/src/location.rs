//! Where a repository lives: a typed [`Location`] parsed from `--repo` / `CHATVAULT_REPO` /
//! a run plan, and the `--option key=value` settings of its store.
//!
//! Grammar (docs/OPERATIONS.md, "Repository locations"):
//!
//! ```text
//! /abs/path | ./rel/path | rel/path | local:PATH      a local directory
//! s3:http[s]://HOST[:PORT]/BUCKET[/PREFIX]            S3 and S3-compatible stores
//! azblob:http[s]://ACCOUNT.blob.core.windows.net/CONTAINER[/PREFIX]
//! azblob:http://127.0.0.1:10000/ACCOUNT/CONTAINER[/PREFIX]   (path-style, Azurite)
//! gcs:BUCKET[/PREFIX]                                 Google Cloud Storage
//! sftp:[USER@]HOST:/PATH  |  sftp://[USER@]HOST[:PORT]/PATH
//! webdav:http[s]://HOST[:PORT]/PATH
//! ```
//!
//! Invariants:
//! - A string whose first `:` comes before any `/` names a scheme, and a scheme this build
//!   does not know is refused: `s3x:http://…` is never taken as a relative directory
//!   named `s3x:http:`. A local directory whose name has a colon is written `./a:b`.
//! - A location never holds a credential: user information with a password (`user:pw@`)
//!   is refused, and the refusal does not repeat what was given. [`Location`]'s `Display`
//!   and `Debug` print only scheme, host, port, bucket and path.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use crate::error::Error;

/// A repository location.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Location {
    /// A local directory (a disk, a NAS mount).
    Local(PathBuf),
    /// An S3 bucket (AWS or an S3-compatible store: Garage, MinIO, Ceph RGW, OSS, COS).
    S3 {
        /// `http://host:port` or `https://host` (no path).
        endpoint: String,
        /// The bucket.
        bucket: String,
        /// The key prefix inside the bucket, without leading or trailing `/` (may be empty).
        prefix: String,
    },
    /// An Azure Blob Storage container.
    Azblob {
        /// The account endpoint: `https://ACCOUNT.blob.core.windows.net`, or for path-style
        /// hosts (Azurite) `http://host:port/ACCOUNT`.
        endpoint: String,
        /// The container.
        container: String,
        /// The prefix inside the container.
        prefix: String,
    },
    /// A Google Cloud Storage bucket.
    Gcs {
        /// The bucket.
        bucket: String,
        /// The prefix inside the bucket.
        prefix: String,
    },
    /// A directory on an SFTP server (through the system's `ssh`).
    Sftp {
        /// The login name, when given.
        user: Option<String>,
        /// The host.
        host: String,
        /// The port, when not 22.
        port: Option<u16>,
        /// The directory on the server.
        path: String,
    },
    /// A directory on a WebDAV server.
    Webdav {
        /// `http://host:port` or `https://host`.
        endpoint: String,
        /// The directory below the endpoint, without leading or trailing `/`.
        path: String,
    },
}

/// The schemes this build knows, for messages.
pub const SCHEMES: &str = "local, s3, azblob, gcs, sftp, webdav";

impl Location {
    /// Parses a location string (the grammar is in this module's documentation).
    pub fn parse(s: &str) -> Result<Location, Error> {
        if s.is_empty() {
            return Err(Error::location("the location is empty"));
        }
        let Some((scheme, rest)) = split_scheme(s) else {
            return Ok(Location::Local(PathBuf::from(s)));
        };
        match scheme {
            "local" if !rest.is_empty() => Ok(Location::Local(PathBuf::from(rest))),
            "local" => Err(Error::location("local: needs a path")),
            "s3" => {
                let (endpoint, mut segs) = http_endpoint("s3", rest)?;
                let bucket = take_first(&mut segs, "s3", "a bucket")?;
                Ok(Location::S3 {
                    endpoint,
                    bucket,
                    prefix: segs.join("/"),
                })
            }
            "azblob" => parse_azblob(rest),
            "gcs" => {
                let mut segs = path_segments("gcs", rest)?;
                let bucket = take_first(&mut segs, "gcs", "a bucket")?;
                Ok(Location::Gcs {
                    bucket,
                    prefix: segs.join("/"),
                })
            }
            "sftp" => parse_sftp(rest),
            "webdav" => {
                let (endpoint, segs) = http_endpoint("webdav", rest)?;
                Ok(Location::Webdav {
                    endpoint,
                    path: segs.join("/"),
                })
            }
            other => Err(Error::UnknownScheme {
                scheme: printable(other),
            }),
        }
    }

    /// Whether the location is a local directory.
    pub fn is_local(&self) -> bool {
        matches!(self, Location::Local(_))
    }

    /// The scheme (`local`, `s3`, …).
    pub fn scheme(&self) -> &'static str {
        match self {
            Location::Local(_) => "local",
            Location::S3 { .. } => "s3",
            Location::Azblob { .. } => "azblob",
            Location::Gcs { .. } => "gcs",
            Location::Sftp { .. } => "sftp",
            Location::Webdav { .. } => "webdav",
        }
    }
}

/// `scheme` and the rest when `s` starts with `scheme:` and the colon comes before any `/`
/// (a path like `./a:b` or `/x/y:z` has no scheme).
fn split_scheme(s: &str) -> Option<(&str, &str)> {
    let colon = s.find(':')?;
    if s[..colon].contains('/') || s.starts_with('.') || s.starts_with('~') {
        return None;
    }
    Some((&s[..colon], &s[colon + 1..]))
}

/// A scheme as it may be echoed: printable ASCII only, at most 32 characters.
fn printable(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_graphic())
        .take(32)
        .collect()
}

/// `http[s]://host[:port]` and the path segments of an HTTP URL, refusing credentials,
/// queries and fragments.
fn http_endpoint(scheme: &'static str, rest: &str) -> Result<(String, Vec<String>), Error> {
    // The URL parser resolves `..` away; a location must not hide one.
    let raw_path = rest.split_once("://").map_or(rest, |(_, p)| p);
    let raw_path = raw_path.split(['?', '#']).next().unwrap_or_default();
    path_segments(scheme, raw_path)?;
    let url = url::Url::parse(rest).map_err(|_| {
        Error::location(format!(
            "{scheme}: needs an http:// or https:// URL, as in {scheme}:https://host/bucket"
        ))
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(Error::location(format!(
            "{scheme}: needs an http:// or https:// URL"
        )));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(Error::location(format!(
            "{scheme}: a location must not carry credentials (user or password in the URL); \
             they come from the store's environment variables and files"
        )));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(Error::location(format!(
            "{scheme}: a location has no query or fragment (a signed URL is not a location)"
        )));
    }
    let host = url
        .host_str()
        .ok_or_else(|| Error::location(format!("{scheme}: the URL has no host")))?;
    let mut endpoint = format!("{}://{}", url.scheme(), host);
    if let Some(port) = url.port() {
        endpoint.push_str(&format!(":{port}"));
    }
    let segs = path_segments(scheme, url.path())?;
    Ok((endpoint, segs))
}

/// Non-empty path segments, refusing `.` and `..`.
fn path_segments(scheme: &'static str, path: &str) -> Result<Vec<String>, Error> {
    let segs: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    if segs.iter().any(|s| s == "." || s == "..") {
        return Err(Error::location(format!(
            "{scheme}: `.` and `..` are not allowed in a location's path"
        )));
    }
    Ok(segs)
}

fn take_first(segs: &mut Vec<String>, scheme: &'static str, what: &str) -> Result<String, Error> {
    if segs.is_empty() {
        return Err(Error::location(format!(
            "{scheme}: the location names no {what}"
        )));
    }
    Ok(segs.remove(0))
}

fn parse_azblob(rest: &str) -> Result<Location, Error> {
    let (endpoint, mut segs) = http_endpoint("azblob", rest)?;
    let host = endpoint.split("://").nth(1).unwrap_or_default();
    let host_only = host.rsplit_once(':').map_or(host, |(h, _)| h);
    // Path-style (Azurite and other emulators on an address): the account is the first
    // path segment. Azure itself names the account in the host.
    let path_style = host_only == "localhost"
        || host_only.starts_with('[')
        || host_only.parse::<std::net::Ipv4Addr>().is_ok();
    let endpoint = if path_style {
        let account = take_first(&mut segs, "azblob", "an account")?;
        format!("{endpoint}/{account}")
    } else {
        endpoint
    };
    let container = take_first(&mut segs, "azblob", "a container")?;
    Ok(Location::Azblob {
        endpoint,
        container,
        prefix: segs.join("/"),
    })
}

fn parse_sftp(rest: &str) -> Result<Location, Error> {
    if let Some(url_part) = rest.strip_prefix("//") {
        // sftp://[user@]host[:port]/path
        let url = url::Url::parse(&format!("sftp://{url_part}"))
            .map_err(|_| Error::location("sftp: not a valid sftp://[user@]host[:port]/path"))?;
        if url.password().is_some() {
            return Err(no_password());
        }
        let host = url
            .host_str()
            .ok_or_else(|| Error::location("sftp: the location has no host"))?;
        let path = url.path();
        if path.is_empty() || path == "/" {
            return Err(Error::location("sftp: the location names no directory"));
        }
        return Ok(Location::Sftp {
            user: (!url.username().is_empty()).then(|| url.username().to_owned()),
            host: host.to_owned(),
            port: url.port(),
            path: path.to_owned(),
        });
    }
    // sftp:[user@]host:/path
    let (user, host_path) = match rest.split_once('@') {
        Some((user, _)) if user.contains(':') => return Err(no_password()),
        Some((user, host_path)) => (Some(user.to_owned()), host_path),
        None => (None, rest),
    };
    let (host, path) = host_path
        .split_once(':')
        .ok_or_else(|| Error::location("sftp: write sftp:[user@]host:/path"))?;
    if host.is_empty() || path.is_empty() {
        return Err(Error::location("sftp: write sftp:[user@]host:/path"));
    }
    if path.split('/').any(|s| s == "..") {
        return Err(Error::location(
            "sftp: `..` is not allowed in a location's path",
        ));
    }
    Ok(Location::Sftp {
        user,
        host: host.to_owned(),
        port: None,
        path: path.to_owned(),
    })
}

fn no_password() -> Error {
    Error::location(
        "sftp: a location must not carry a password; use an ssh key or agent (~/.ssh/config)",
    )
}

impl FromStr for Location {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Location::parse(s)
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let slash = |p: &str| {
            if p.is_empty() {
                String::new()
            } else {
                format!("/{p}")
            }
        };
        match self {
            Location::Local(p) => write!(f, "{}", p.display()),
            Location::S3 {
                endpoint,
                bucket,
                prefix,
            } => write!(f, "s3:{endpoint}/{bucket}{}", slash(prefix)),
            Location::Azblob {
                endpoint,
                container,
                prefix,
            } => write!(f, "azblob:{endpoint}/{container}{}", slash(prefix)),
            Location::Gcs { bucket, prefix } => write!(f, "gcs:{bucket}{}", slash(prefix)),
            Location::Sftp {
                user,
                host,
                port,
                path,
            } => {
                let user = user.as_deref().map(|u| format!("{u}@")).unwrap_or_default();
                match port {
                    Some(port) => write!(f, "sftp://{user}{host}:{port}{path}"),
                    None => write!(f, "sftp:{user}{host}:{path}"),
                }
            }
            Location::Webdav { endpoint, path } => write!(f, "webdav:{endpoint}{}", slash(path)),
        }
    }
}

impl fmt::Debug for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Location({self})")
    }
}

/// A store's settings from `--option key=value` (repeatable), checked against the keys its
/// scheme knows. Values are never secrets: credentials come from the environment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreOptions {
    values: BTreeMap<String, String>,
}

/// Keys every remote scheme takes.
const COMMON_KEYS: &[&str] = &["connections", "retries", "timeout", "list_page"];

impl StoreOptions {
    /// Parses `key=value` strings (later ones win).
    pub fn parse<S: AsRef<str>>(pairs: &[S]) -> Result<StoreOptions, Error> {
        let mut values = BTreeMap::new();
        for p in pairs {
            let (k, v) = p
                .as_ref()
                .split_once('=')
                .ok_or_else(|| Error::InvalidOption {
                    key: printable(p.as_ref().split('=').next().unwrap_or_default()),
                    reason: "write --option key=value".into(),
                })?;
            values.insert(k.trim().to_owned(), v.trim().to_owned());
        }
        Ok(StoreOptions { values })
    }

    /// The value of `key`, if given.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }

    /// Whether no option was given.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Refuses keys the scheme does not know (a misspelt `regoin=` must not be ignored).
    pub(crate) fn check_keys(&self, scheme: &str, known: &[&str]) -> Result<(), Error> {
        for k in self.values.keys() {
            if !known.contains(&k.as_str()) && !COMMON_KEYS.contains(&k.as_str()) {
                let mut all: Vec<&str> = known.iter().chain(COMMON_KEYS).copied().collect();
                all.sort_unstable();
                return Err(Error::InvalidOption {
                    key: printable(k),
                    reason: format!(
                        "not an option of {scheme} locations (known: {})",
                        all.join(", ")
                    ),
                });
            }
        }
        Ok(())
    }

    /// A number option, or `default`.
    pub(crate) fn number<T: FromStr>(&self, key: &str, default: T) -> Result<T, Error> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|_| Error::InvalidOption {
                key: key.to_owned(),
                reason: format!("{:?} is not a number", printable(v)),
            }),
        }
    }

    /// An `on`/`off` option, or `default`.
    pub(crate) fn switch(&self, key: &str, default: bool) -> Result<bool, Error> {
        match self.get(key) {
            None => Ok(default),
            Some("on" | "true" | "yes" | "1") => Ok(true),
            Some("off" | "false" | "no" | "0") => Ok(false),
            Some(v) => Err(Error::InvalidOption {
                key: key.to_owned(),
                reason: format!("{:?} is not on or off", printable(v)),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s3(endpoint: &str, bucket: &str, prefix: &str) -> Location {
        Location::S3 {
            endpoint: endpoint.into(),
            bucket: bucket.into(),
            prefix: prefix.into(),
        }
    }

    #[test]
    fn each_scheme_parses_and_prints_back() {
        let cases = [
            ("/srv/backup", Location::Local("/srv/backup".into())),
            ("./a:b", Location::Local("./a:b".into())),
            ("repo", Location::Local("repo".into())),
            ("local:/srv/x", Location::Local("/srv/x".into())),
            (
                "s3:http://127.0.0.1:3900/chat/node-1",
                s3("http://127.0.0.1:3900", "chat", "node-1"),
            ),
            (
                "s3:https://s3.eu-west-1.amazonaws.com/bucket",
                s3("https://s3.eu-west-1.amazonaws.com", "bucket", ""),
            ),
            (
                "s3:https://host/b/deep/er/",
                s3("https://host", "b", "deep/er"),
            ),
            (
                "azblob:https://acct.blob.core.windows.net/backups/chat",
                Location::Azblob {
                    endpoint: "https://acct.blob.core.windows.net".into(),
                    container: "backups".into(),
                    prefix: "chat".into(),
                },
            ),
            (
                "azblob:http://127.0.0.1:10000/devstoreaccount1/c",
                Location::Azblob {
                    endpoint: "http://127.0.0.1:10000/devstoreaccount1".into(),
                    container: "c".into(),
                    prefix: "".into(),
                },
            ),
            (
                "gcs:bucket/chat/x",
                Location::Gcs {
                    bucket: "bucket".into(),
                    prefix: "chat/x".into(),
                },
            ),
            (
                "sftp:backup@vault.example:/srv/chatvault",
                Location::Sftp {
                    user: Some("backup".into()),
                    host: "vault.example".into(),
                    port: None,
                    path: "/srv/chatvault".into(),
                },
            ),
            (
                "sftp://backup@vault.example:2222/srv/chatvault",
                Location::Sftp {
                    user: Some("backup".into()),
                    host: "vault.example".into(),
                    port: Some(2222),
                    path: "/srv/chatvault".into(),
                },
            ),
            (
                "webdav:https://dav.example/remote.php/dav/chat",
                Location::Webdav {
                    endpoint: "https://dav.example".into(),
                    path: "remote.php/dav/chat".into(),
                },
            ),
        ];
        for (text, want) in cases {
            let got = Location::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(got, want, "{text}");
            // Display gives a string that parses to the same location.
            assert_eq!(Location::parse(&got.to_string()).unwrap(), want, "{text}");
        }
    }

    #[test]
    fn regression_unknown_scheme_is_refused_not_a_relative_directory() {
        // `--repo s3x:http://host/bucket` (or any scheme this build lacks) once created a
        // local directory named `s3x:http:`.
        for text in [
            "s3x:http://127.0.0.1:9000/bucket/repo",
            "b2:bucket/repo",
            "rclone:remote:path",
            "S3:http://host/b",
        ] {
            let err = Location::parse(text).unwrap_err();
            assert!(matches!(err, Error::UnknownScheme { .. }), "{text}: {err}");
            assert!(err.to_string().contains("s3, azblob"), "{err}");
        }
    }

    #[test]
    fn credentials_in_a_location_are_refused_without_being_repeated() {
        for text in [
            "s3:https://AKIAEXAMPLE:hunter2secret@host/bucket",
            "s3:https://hunter2secret@host/bucket",
            "webdav:https://user:hunter2secret@dav/x",
            "sftp:user:hunter2secret@host:/srv",
            "sftp://user:hunter2secret@host/srv",
        ] {
            let err = Location::parse(text).unwrap_err();
            let shown = format!("{err} {err:?}");
            assert!(!shown.contains("hunter2secret"), "{shown}");
            assert!(
                shown.contains("password") || shown.contains("credentials"),
                "{shown}"
            );
        }
    }

    #[test]
    fn malformed_remote_locations_are_refused() {
        for text in [
            "",
            "s3:",
            "s3:host/bucket",
            "s3:ftp://host/bucket",
            "s3:https://host",
            "s3:https://host/",
            "s3:https://host/b/../c",
            "s3:https://host/b?X-Amz-Signature=abc",
            "gcs:",
            "sftp:host",
            "sftp:host:",
            "azblob:https://acct.blob.core.windows.net",
            "local:",
        ] {
            assert!(Location::parse(text).is_err(), "{text:?} accepted");
        }
    }

    #[test]
    fn options_refuse_unknown_keys_and_bad_values() {
        let o = StoreOptions::parse(&["region=garage", "retries=3"]).unwrap();
        assert_eq!(o.get("region"), Some("garage"));
        o.check_keys("s3", &["region"]).unwrap();
        let e = o.check_keys("gcs", &["storage_class"]).unwrap_err();
        assert!(e.to_string().contains("region"), "{e}");
        assert!(StoreOptions::parse(&["novalue"]).is_err());
        let o = StoreOptions::parse(&["retries=many", "ec2_metadata=maybe"]).unwrap();
        assert!(o.number("retries", 6u32).is_err());
        assert!(o.switch("ec2_metadata", false).is_err());
        assert_eq!(o.number("timeout", 30u64).unwrap(), 30);
    }
}
