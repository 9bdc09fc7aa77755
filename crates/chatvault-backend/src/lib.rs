//! Remote storage for chatvault repositories: S3 and S3-compatible stores (AWS, Garage,
//! MinIO, Ceph RGW, Alibaba OSS, Tencent COS), Azure Blob, Google Cloud Storage, SFTP and
//! WebDAV, through OpenDAL, behind chatvault-core's [`Backend`] trait.
//!
//! The primary entry is [`connect`]: a [`Location`] (parsed from `--repo`) and its
//! [`StoreOptions`] (from `--option key=value`) give a boxed [`Backend`] for
//! `Repository::init` or `Repository::open`.
//!
//! ```
//! use chatvault_backend::{Location, StoreOptions, Mode, connect};
//! # fn main() -> Result<(), chatvault_backend::Error> {
//! let dir = tempfile::tempdir().unwrap();
//! let location: Location = dir.path().to_str().unwrap().parse()?;
//! let backend = connect(&location, &StoreOptions::default(), Mode::Create)?;
//! backend.put("keys/00", b"slot").map_err(chatvault_backend::Error::from)?;
//!
//! let remote: Location = "s3:http://127.0.0.1:3900/chat/node-1".parse()?;
//! assert_eq!(remote.to_string(), "s3:http://127.0.0.1:3900/chat/node-1");
//! assert!("s3x:http://host/bucket".parse::<Location>().is_err());
//! # Ok(()) }
//! ```
//!
//! Layers, bottom up: [`OpendalBackend`] makes one request per call, under a deadline and a
//! connection limit, and turns store errors into the core's typed ones; [`Retrying`]
//! retries the passing ones with backoff and jitter and confirms creates whose response was
//! lost; [`Faulty`] injects failures for tests. Tokio lives only in this crate: one
//! runtime it owns, and a blocking façade that never panics inside another runtime.
#![deny(missing_docs)]

mod error;
mod fault;
mod location;
mod remote;
mod retry;
mod runtime;
mod services;
#[doc(hidden)]
pub mod test_servers;

pub use chatvault_core::Backend;
pub use error::{Error, Result};
pub use fault::{FaultPlan, Faulty};
pub use location::{Location, SCHEMES, StoreOptions};
pub use remote::{OpendalBackend, PROBE_PREFIX, RemoteOptions};
pub use retry::{READBACK_MAX, RetryPolicy, Retrying, is_transient};
pub use services::S3Credentials;

use chatvault_core::LocalBackend;

/// Whether [`connect`] is for a new repository or an existing one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `init`: a local directory is created if missing.
    Create,
    /// Every other command: a missing local directory is
    /// [`RepositoryMissing`](chatvault_core::Error::RepositoryMissing).
    Open,
}

/// The backend for a location: a [`LocalBackend`] for a directory; for a remote store, its
/// OpenDAL operator with our HTTP client, probed for conditional creates, under the retry
/// layer. The options are refused if the scheme does not take them (a local directory
/// takes none).
pub fn connect(
    location: &Location,
    options: &StoreOptions,
    mode: Mode,
) -> Result<Box<dyn Backend>> {
    if let Location::Local(path) = location {
        if !options.is_empty() {
            return Err(Error::InvalidOption {
                key: "option".into(),
                reason: "a local directory takes no --option".into(),
            });
        }
        let b = match mode {
            Mode::Create => LocalBackend::create(path)?,
            Mode::Open => LocalBackend::open(path)?,
        };
        return Ok(Box::new(b));
    }
    Ok(Box::new(connect_remote(location, options, None)?))
}

/// The retrying, probed backend for a remote location (what [`connect`] boxes), with
/// credentials from the store's environment variables and files, or for S3 from `creds`
/// when given (the environment is then not read).
pub fn connect_remote(
    location: &Location,
    options: &StoreOptions,
    creds: Option<&S3Credentials>,
) -> Result<Retrying<OpendalBackend>> {
    let tuning = services::Tuning::from_options(options)?;
    let op = services::operator(location, options, &tuning, creds)?;
    let mut backend = OpendalBackend::new(op, location.to_string(), tuning.remote);
    let guard = backend.probe();
    tracing::info!(location = %location, create_guard = guard.as_str(), "connected to the store");
    Ok(Retrying::new(backend, tuning.retry))
}
