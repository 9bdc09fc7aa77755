//! One request per call to a store through OpenDAL, with timeouts, a connection limit and
//! typed errors; [`Retrying`](crate::Retrying) adds the retries.
//!
//! Invariants:
//! - Every request runs on the crate's runtime ([`crate::runtime`]) under a deadline: the
//!   request timeout, plus the I/O allowance for its bytes (a 16 MiB pack over a slow
//!   link is not a hung request). A request past its deadline is a passing failure.
//! - At most `connections` requests are in flight per backend (a semaphore).
//! - Errors are classified once, here: `NotFound`; refused credentials or permissions →
//!   [`Error::StorageDenied`]; server errors, throttling, timeouts, refused or reset
//!   connections, short reads → [`Error::StorageUnavailable`] (retried above);
//!   an unmet `If-None-Match` → `AlreadyExists`; anything else → `Backend`.
//!   Reasons carry OpenDAL's kind and message only (an S3 error code, a status), never a
//!   header, a URL with a query, or a credential.
//! - A listing returns objects only: directory markers and names that are not chatvault
//!   object names are skipped; a missing directory lists as empty.

use std::sync::Arc;
use std::time::Duration;

use chatvault_core::{Backend, CreateGuard, Error, ObjectInfo, Result, check_object_name};
use opendal::{Buffer, ErrorKind, Operator};
use tokio::sync::Semaphore;

use crate::runtime::{self, RunError};

/// Timeouts and limits of one store connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemoteOptions {
    /// The deadline of a request that moves no bulk data, and the base of every other
    /// one. By default 30 s.
    pub request_timeout: Duration,
    /// The slowest transfer rate a request is allowed before it is timed out, in bytes per
    /// second: a request for `n` bytes gets `request_timeout + n / min_rate`. By default
    /// 256 KiB/s.
    pub min_rate: u64,
    /// Requests in flight at once. By default 16.
    pub connections: usize,
    /// Entries asked for per listing page (the store may give fewer). By default the
    /// store's own (1000 for S3).
    pub list_page: Option<usize>,
}

impl Default for RemoteOptions {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(30),
            min_rate: 256 * 1024,
            connections: 16,
            list_page: None,
        }
    }
}

impl RemoteOptions {
    fn deadline(&self, bytes: u64) -> Duration {
        self.request_timeout + Duration::from_secs(bytes / self.min_rate.max(1))
    }
}

/// A store reached through OpenDAL; each call is one request (see the module docs).
#[derive(Clone)]
pub struct OpendalBackend {
    op: Operator,
    location: String,
    opts: RemoteOptions,
    limit: Arc<Semaphore>,
    /// Whether the service can send a conditional create (`If-None-Match: *`).
    conditional: bool,
    guard: CreateGuard,
}

impl std::fmt::Debug for OpendalBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpendalBackend")
            .field("location", &self.location)
            .field("create_guard", &self.guard)
            .finish_non_exhaustive()
    }
}

/// The prefix of the objects the create probe writes and deletes at once.
pub const PROBE_PREFIX: &str = "probes/";

impl OpendalBackend {
    /// Wraps an operator; `location` is what [`Backend::location`] prints (it must hold no
    /// credential). The create guard is [`CreateGuard::Unknown`] until [`probe`](Self::probe).
    pub fn new(op: Operator, location: String, opts: RemoteOptions) -> Self {
        let conditional = op.info().capability().write_with_if_not_exists;
        Self {
            op,
            location,
            limit: Arc::new(Semaphore::new(opts.connections.max(1))),
            opts,
            conditional,
            guard: CreateGuard::Unknown,
        }
    }

    /// Finds out whether the store enforces conditional creates, by creating a probe
    /// object twice (then deleting it), and records the answer in
    /// [`create_guard`](Backend::create_guard). Credentials that may not write leave it
    /// `Unknown`. Returns the answer.
    pub fn probe(&mut self) -> CreateGuard {
        self.guard = if self.conditional {
            self.probe_store()
        } else {
            CreateGuard::NotEnforced
        };
        tracing::debug!(location = %self.location, create_guard = self.guard.as_str(), "probed the store");
        self.guard
    }

    fn probe_store(&self) -> CreateGuard {
        let mut id = [0u8; 12];
        if getrandom::fill(&mut id).is_err() {
            return CreateGuard::Unknown;
        }
        let name = format!(
            "{PROBE_PREFIX}{}",
            id.iter().map(|b| format!("{b:02x}")).collect::<String>()
        );
        let guard = match self.put(&name, b"chatvault create probe 1") {
            Err(_) => CreateGuard::Unknown,
            Ok(()) => match self.put(&name, b"chatvault create probe 2") {
                Ok(()) => CreateGuard::NotEnforced,
                Err(Error::AlreadyExists { .. }) => CreateGuard::Enforced,
                Err(_) => CreateGuard::Unknown,
            },
        };
        let _ = self.delete(&name);
        guard
    }

    /// Runs one request under the deadline and the connection limit.
    fn call<T, F>(&self, object: &str, bytes: u64, fut: F) -> Result<T>
    where
        F: std::future::Future<Output = opendal::Result<T>> + Send + 'static,
        T: Send + 'static,
    {
        let limit = self.limit.clone();
        let deadline = self.opts.deadline(bytes);
        let out = runtime::run(
            async move {
                let _permit = limit.acquire_owned().await;
                fut.await
            },
            deadline,
        );
        match out {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(classify(object, &e)),
            Err(RunError::TimedOut(d)) => Err(Error::StorageUnavailable {
                object: object.into(),
                attempts: 1,
                reason: format!("no answer within {} s", d.as_secs()),
            }),
            Err(RunError::NoRuntime(reason)) => Err(Error::Backend {
                object: object.into(),
                source: std::io::Error::other(reason),
            }),
            Err(RunError::Lost) => Err(Error::StorageUnavailable {
                object: object.into(),
                attempts: 1,
                reason: "the request was dropped".into(),
            }),
        }
    }
}

/// At most this many characters of a store's message go into an error.
const REASON_MAX: usize = 300;

/// Pack uploads a writer keeps in flight on a remote store (each holds one pack in
/// memory): enough to hide a request's round trip behind the others.
const REMOTE_UPLOADS: usize = 4;

/// Reads a reader keeps in flight on a remote store: a ranged GET from Garage on loopback
/// takes about 40 ms to its first byte, so two (one per core) leave restore waiting on
/// the network; eight keep two cores busy. Each holds at most one sealed blob in memory.
const REMOTE_READS: usize = 8;

/// Maps an OpenDAL error to the core's typed errors (module docs).
fn classify(object: &str, e: &opendal::Error) -> Error {
    let mut reason = match http_status(e) {
        // A HEAD has no body to explain itself: say what the store answered, and what
        // usually makes an S3 store answer that.
        Some(status) if e.message().trim().is_empty() => format!(
            "{}: the store answered HTTP {status} without an explanation{}",
            e.kind(),
            match status {
                301 | 400 =>
                    " (a wrong region is the usual cause: --option region=NAME, or AWS_REGION)",
                _ => "",
            }
        ),
        _ => format!("{}: {}", e.kind(), e.message()),
    };
    if reason.len() > REASON_MAX {
        let mut cut = REASON_MAX;
        while !reason.is_char_boundary(cut) {
            cut -= 1;
        }
        reason.truncate(cut);
        reason.push('…');
    }
    let object = object.into();
    match e.kind() {
        ErrorKind::NotFound => Error::NotFound { object },
        ErrorKind::PermissionDenied => Error::StorageDenied { object, reason },
        ErrorKind::ConditionNotMatch | ErrorKind::AlreadyExists => Error::AlreadyExists { object },
        ErrorKind::RateLimited => Error::StorageUnavailable {
            object,
            attempts: 1,
            reason,
        },
        _ if e.is_temporary() => Error::StorageUnavailable {
            object,
            attempts: 1,
            reason,
        },
        _ if is_credential_failure(e) => Error::StorageDenied {
            object,
            reason: format!("no usable credentials to sign the request with ({reason})"),
        },
        _ => Error::Backend {
            object,
            source: std::io::Error::other(reason),
        },
    }
}

/// The HTTP status of the response an error was made from, if it came from one. OpenDAL
/// keeps the response head only in the error's context, which it shows in `Display`.
fn http_status(e: &opendal::Error) -> Option<u16> {
    let text = e.to_string();
    let at = text.find("status: ")? + "status: ".len();
    text.get(at..at + 3)?.parse().ok()
}

/// Whether an error says no credential could be loaded or signed with (reqsign reports
/// it as a configuration error, not a refusal).
fn is_credential_failure(e: &opendal::Error) -> bool {
    let mut text = e.message().to_ascii_lowercase();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        text.push(' ');
        text.push_str(&c.to_string().to_ascii_lowercase());
        cause = c.source();
    }
    ["credential", "signing", "signature", "access key"]
        .iter()
        .any(|w| text.contains(w))
}

/// The directory a prefix points into (`data/ab` → `data/`), as OpenDAL lists it.
fn list_dir(prefix: &str) -> &str {
    prefix.rfind('/').map_or("", |i| &prefix[..=i])
}

impl Backend for OpendalBackend {
    fn location(&self) -> String {
        self.location.clone()
    }

    fn put(&self, name: &str, bytes: &[u8]) -> Result<()> {
        check_object_name(name)?;
        let (op, path, buf) = (
            self.op.clone(),
            name.to_owned(),
            Buffer::from(bytes.to_vec()),
        );
        let conditional = self.conditional;
        self.call(name, bytes.len() as u64, async move {
            op.write_with(&path, buf)
                .if_not_exists(conditional)
                .await
                .map(|_| ())
        })
    }

    fn replace(&self, name: &str, bytes: &[u8]) -> Result<()> {
        check_object_name(name)?;
        let (op, path, buf) = (
            self.op.clone(),
            name.to_owned(),
            Buffer::from(bytes.to_vec()),
        );
        self.call(name, bytes.len() as u64, async move {
            op.write(&path, buf).await.map(|_| ())
        })
    }

    fn get(&self, name: &str) -> Result<Vec<u8>> {
        check_object_name(name)?;
        let size = self.stat(name)?.size;
        let (op, path) = (self.op.clone(), name.to_owned());
        let bytes = self.call(name, size, async move { op.read(&path).await })?;
        if bytes.len() as u64 != size {
            // Replaced between the stat and the read (config, locks), or cut off: the
            // caller's retry reads both again.
            return Err(Error::StorageUnavailable {
                object: name.into(),
                attempts: 1,
                reason: format!("read {} bytes of a {size}-byte object", bytes.len()),
            });
        }
        Ok(bytes.to_vec())
    }

    fn get_range(&self, name: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        check_object_name(name)?;
        let end = offset
            .checked_add(len)
            .ok_or_else(|| past_end(name, offset, len, None))?;
        if len == 0 {
            self.stat(name)?;
            return Ok(Vec::new());
        }
        let (op, path) = (self.op.clone(), name.to_owned());
        let read = self.call(name, len, async move {
            op.read_with(&path).range(offset..end).await
        });
        let bytes = match read {
            Ok(b) => b,
            Err(Error::Backend { .. }) | Err(Error::StorageUnavailable { .. })
                if self.stat(name).is_ok_and(|o| o.size < end) =>
            {
                return Err(past_end(
                    name,
                    offset,
                    len,
                    self.stat(name).ok().map(|o| o.size),
                ));
            }
            Err(e) => return Err(e),
        };
        if bytes.len() as u64 != len {
            let size = self.stat(name)?.size;
            if size < end {
                return Err(past_end(name, offset, len, Some(size)));
            }
            return Err(Error::StorageUnavailable {
                object: name.into(),
                attempts: 1,
                reason: format!("short read: {} of {len} bytes", bytes.len()),
            });
        }
        Ok(bytes.to_vec())
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        let dir = list_dir(prefix).to_owned();
        let (op, page) = (self.op.clone(), self.opts.list_page);
        let listed = self.call(prefix, 0, async move {
            let mut l = op.list_with(&dir).recursive(true);
            if let Some(page) = page {
                l = l.limit(page);
            }
            l.await
        });
        let entries = match listed {
            Ok(e) => e,
            Err(e) if e.is_not_found() => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        Ok(entries
            .into_iter()
            .filter(|e| e.metadata().is_file())
            .map(|e| ObjectInfo {
                name: e.path().trim_start_matches('/').to_owned(),
                size: e.metadata().content_length(),
            })
            .filter(|o| o.name.starts_with(prefix) && check_object_name(&o.name).is_ok())
            .collect())
    }

    fn delete(&self, name: &str) -> Result<()> {
        check_object_name(name)?;
        let (op, path) = (self.op.clone(), name.to_owned());
        match self.call(name, 0, async move { op.delete(&path).await }) {
            Err(e) if e.is_not_found() => Ok(()),
            r => r,
        }
    }

    fn stat(&self, name: &str) -> Result<ObjectInfo> {
        check_object_name(name)?;
        let (op, path) = (self.op.clone(), name.to_owned());
        let meta = self.call(name, 0, async move { op.stat(&path).await })?;
        if meta.is_dir() {
            return Err(Error::NotFound {
                object: name.into(),
            });
        }
        Ok(ObjectInfo {
            name: name.to_owned(),
            size: meta.content_length(),
        })
    }

    fn create_guard(&self) -> CreateGuard {
        self.guard
    }

    fn uploads_in_flight(&self) -> usize {
        REMOTE_UPLOADS
    }

    fn reads_in_flight(&self) -> usize {
        REMOTE_READS
    }
}

fn past_end(name: &str, offset: u64, len: u64, size: Option<u64>) -> Error {
    let size = size.map_or_else(|| "the".to_owned(), |s| format!("a {s}-byte"));
    Error::corrupt(
        name,
        format!("range {offset}+{len} is past the end of {size} object"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn memory() -> OpendalBackend {
        let op = Operator::new(opendal::services::Memory::default()).unwrap();
        OpendalBackend::new(op, "memory".into(), RemoteOptions::default())
    }

    #[test]
    fn contract_on_opendal_memory() {
        chatvault_core::backend_contract::run(&crate::Retrying::new(
            memory(),
            crate::RetryPolicy::default(),
        ));
    }

    #[test]
    fn listings_skip_directories_and_foreign_names() {
        let b = memory();
        b.put("data/ab/x1", b"1").unwrap();
        let op = b.op.clone();
        crate::runtime::run(
            async move {
                op.write("data/ab/NOT-OURS.txt", vec![1u8]).await.unwrap();
                op.create_dir("data/cd/").await.unwrap();
            },
            Duration::from_secs(5),
        )
        .unwrap();
        let names: Vec<_> = b
            .list("data/")
            .unwrap()
            .into_iter()
            .map(|o| o.name)
            .collect();
        assert_eq!(names, vec!["data/ab/x1".to_string()]);
        assert_eq!(b.list("data/a").unwrap().len(), 1);
        assert!(b.list("data/b").unwrap().is_empty());
        assert!(b.list("nothing/").unwrap().is_empty());
    }

    #[test]
    fn the_probe_finds_a_guard_and_leaves_nothing() {
        let mut b = memory();
        let guard = b.probe();
        // OpenDAL's memory service cannot send a conditional create.
        assert_eq!(
            guard,
            if b.conditional {
                CreateGuard::Enforced
            } else {
                CreateGuard::NotEnforced
            }
        );
        assert!(b.list("").unwrap().is_empty());
    }

    #[test]
    fn deadlines_grow_with_the_bytes_moved() {
        let o = RemoteOptions::default();
        assert_eq!(o.deadline(0), Duration::from_secs(30));
        assert_eq!(o.deadline(16 << 20), Duration::from_secs(30 + 64));
    }

    /// A HEAD answered 400 with no body (Garage, asked with the wrong region) was
    /// reported as "Unexpected: : Unexpected:"; the status and the likely cause now show.
    #[test]
    fn an_unexplained_http_status_is_named_with_its_likely_cause() {
        let e = opendal::Error::new(ErrorKind::Unexpected, "").with_context(
            "response",
            "Parts { status: 400, version: HTTP/1.1, headers: {} }",
        );
        let msg = classify("config", &e).to_string();
        assert!(msg.contains("HTTP 400"), "{msg}");
        assert!(msg.contains("wrong region"), "{msg}");
        let e = opendal::Error::new(ErrorKind::Unexpected, "").with_context(
            "response",
            "Parts { status: 418, version: HTTP/1.1, headers: {} }",
        );
        let msg = classify("config", &e).to_string();
        assert!(msg.contains("HTTP 418") && !msg.contains("region"), "{msg}");
        let e = opendal::Error::new(ErrorKind::Unexpected, "the store's own words");
        let msg = classify("config", &e).to_string();
        assert!(msg.contains("the store's own words"), "{msg}");
    }
}
