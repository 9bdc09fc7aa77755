//! Building an OpenDAL operator for each remote scheme, with credentials from each
//! service's standard environment variables and files, and our own HTTP client.
//!
//! Credentials (docs/OPERATIONS.md, "Credentials"):
//! - s3: `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` / `AWS_SESSION_TOKEN`,
//!   `AWS_PROFILE` with `~/.aws/credentials` and `~/.aws/config`, web identity and
//!   container credentials; the EC2 instance metadata service only with
//!   `--option ec2_metadata=on` (it lives on a link-local address that an on-premises
//!   machine should never be sending requests to).
//! - azblob: `AZURE_STORAGE_ACCOUNT_KEY`, `AZURE_STORAGE_SAS_TOKEN` and Azure's other
//!   standard variables.
//! - gcs: `GOOGLE_APPLICATION_CREDENTIALS` (a service-account file) and the gcloud
//!   well-known file; the VM metadata server only with `--option vm_metadata=on`.
//! - sftp: the system `ssh`: keys, agent and `~/.ssh/config`, known hosts checked strictly.
//! - webdav: `CHATVAULT_WEBDAV_USERNAME` + `CHATVAULT_WEBDAV_PASSWORD`, or
//!   `CHATVAULT_WEBDAV_TOKEN` (a bearer token).
//!
//! Invariant: no credential is put in a [`Location`] or a message; the ones read here go
//! only into the builder, whose `Debug` OpenDAL redacts.

use std::time::Duration;

use opendal::{HttpTransporter, OperationContext, Operator};
use opendal_http_transport_reqwest::ReqwestTransport;

use crate::error::{Error, Result};
use crate::location::{Location, StoreOptions};
use crate::remote::RemoteOptions;
use crate::retry::RetryPolicy;

/// Everything `--option` sets that is not a service setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tuning {
    pub(crate) remote: RemoteOptions,
    pub(crate) retry: RetryPolicy,
}

impl Tuning {
    pub(crate) fn from_options(opts: &StoreOptions) -> Result<Tuning> {
        let defaults = RemoteOptions::default();
        let remote = RemoteOptions {
            request_timeout: Duration::from_secs(
                opts.number("timeout", defaults.request_timeout.as_secs())?,
            ),
            connections: opts.number("connections", defaults.connections)?,
            list_page: match opts.get("list_page") {
                None => None,
                Some(_) => Some(opts.number("list_page", 1000usize)?),
            },
            ..defaults
        };
        if remote.connections == 0 || remote.request_timeout.is_zero() {
            return Err(Error::InvalidOption {
                key: "connections/timeout".into(),
                reason: "must be at least 1".into(),
            });
        }
        let retry = RetryPolicy {
            attempts: opts
                .number("retries", RetryPolicy::default().attempts)?
                .max(1),
            ..RetryPolicy::default()
        };
        Ok(Tuning { remote, retry })
    }
}

/// An S3 access key given by the program rather than the environment (an embedding
/// server that keeps it in its own secret store). `Debug` shows the key id only; the
/// secret is wiped when dropped.
pub struct S3Credentials {
    access_key_id: String,
    secret_access_key: zeroize::Zeroizing<String>,
}

impl S3Credentials {
    /// A key id and its secret.
    pub fn new(access_key_id: impl Into<String>, secret_access_key: impl Into<String>) -> Self {
        Self {
            access_key_id: access_key_id.into(),
            secret_access_key: zeroize::Zeroizing::new(secret_access_key.into()),
        }
    }
}

impl std::fmt::Debug for S3Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Credentials")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

/// Builds the operator for a remote location (not `Local`).
pub(crate) fn operator(
    location: &Location,
    opts: &StoreOptions,
    tuning: &Tuning,
    creds: Option<&S3Credentials>,
) -> Result<Operator> {
    if creds.is_some() && !matches!(location, Location::S3 { .. }) {
        return Err(Error::InvalidOption {
            key: "credentials".into(),
            reason: "static credentials are for s3 locations only".into(),
        });
    }
    let op = match location {
        Location::Local(_) => {
            return Err(Error::location(
                "a local directory needs no store connection",
            ));
        }
        Location::S3 {
            endpoint,
            bucket,
            prefix,
        } => s3(endpoint, bucket, prefix, opts, creds)?,
        Location::Azblob {
            endpoint,
            container,
            prefix,
        } => azblob(endpoint, container, prefix, opts)?,
        Location::Gcs { bucket, prefix } => gcs(bucket, prefix, opts)?,
        Location::Sftp {
            user,
            host,
            port,
            path,
        } => sftp(user.as_deref(), host, *port, path, opts)?,
        Location::Webdav { endpoint, path } => webdav(endpoint, path, opts)?,
    };
    let transport = http_transport(&tuning.remote)?;
    Ok(op.with_context(OperationContext::new().with_http_transport(transport)))
}

fn build_error(e: opendal::Error) -> Error {
    Error::InvalidOption {
        key: "location".into(),
        reason: format!("{}: {}", e.kind(), e.message()),
    }
}

fn root(prefix: &str) -> String {
    format!("/{prefix}")
}

fn s3(
    endpoint: &str,
    bucket: &str,
    prefix: &str,
    opts: &StoreOptions,
    creds: Option<&S3Credentials>,
) -> Result<Operator> {
    opts.check_keys(
        "s3",
        &[
            "region",
            "endpoint_style",
            "storage_class",
            "ec2_metadata",
            "profile",
        ],
    )?;
    let region = opts
        .get("region")
        .map(str::to_owned)
        .or_else(|| std::env::var("AWS_REGION").ok())
        .or_else(|| std::env::var("AWS_DEFAULT_REGION").ok())
        .unwrap_or_else(|| "us-east-1".to_owned());
    let mut b = opendal::services::S3::default()
        .endpoint(endpoint)
        .bucket(bucket)
        .root(&root(prefix))
        .region(&region);
    if !opts.switch("ec2_metadata", false)? {
        b = b.disable_ec2_metadata();
    }
    match opts.get("endpoint_style") {
        None | Some("path") => {}
        Some("virtual") => b = b.enable_virtual_host_style(),
        Some(_) => {
            return Err(Error::InvalidOption {
                key: "endpoint_style".into(),
                reason: "path or virtual".into(),
            });
        }
    }
    if let Some(class) = opts.get("storage_class") {
        b = b.default_storage_class(class);
    }
    if let Some(profile) = opts.get("profile") {
        b = b.profile(profile);
    }
    if let Some(c) = creds {
        b = b
            .access_key_id(&c.access_key_id)
            .secret_access_key(&c.secret_access_key)
            .disable_config_load();
    }
    Operator::new(b).map_err(build_error)
}

fn azblob(endpoint: &str, container: &str, prefix: &str, opts: &StoreOptions) -> Result<Operator> {
    opts.check_keys("azblob", &[])?;
    let mut b = opendal::services::Azblob::default()
        .endpoint(endpoint)
        .container(container)
        .root(&root(prefix));
    // The account is the host's first label (ACCOUNT.blob.core.windows.net) or, path-style,
    // the endpoint's last segment.
    let after_scheme = endpoint.split("://").nth(1).unwrap_or_default();
    let account = match after_scheme.split_once('/') {
        Some((_, account)) => account,
        None => after_scheme.split('.').next().unwrap_or_default(),
    };
    if !account.is_empty() {
        b = b.account_name(account);
    }
    Operator::new(b).map_err(build_error)
}

fn gcs(bucket: &str, prefix: &str, opts: &StoreOptions) -> Result<Operator> {
    opts.check_keys("gcs", &["storage_class", "vm_metadata", "endpoint"])?;
    let mut b = opendal::services::Gcs::default()
        .bucket(bucket)
        .root(&root(prefix));
    if !opts.switch("vm_metadata", false)? {
        b = b.disable_vm_metadata();
    }
    if let Some(class) = opts.get("storage_class") {
        b = b.default_storage_class(class);
    }
    if let Some(endpoint) = opts.get("endpoint") {
        b = b.endpoint(endpoint);
    }
    Operator::new(b).map_err(build_error)
}

fn sftp(
    user: Option<&str>,
    host: &str,
    port: Option<u16>,
    path: &str,
    opts: &StoreOptions,
) -> Result<Operator> {
    opts.check_keys("sftp", &["known_hosts", "key"])?;
    let endpoint = match port {
        Some(p) => format!("ssh://{host}:{p}"),
        None => format!("ssh://{host}"),
    };
    let strategy = opts.get("known_hosts").unwrap_or("strict");
    if !matches!(strategy, "strict" | "accept" | "add") {
        return Err(Error::InvalidOption {
            key: "known_hosts".into(),
            reason: "strict, accept or add".into(),
        });
    }
    let mut b = opendal::services::Sftp::default()
        .endpoint(&endpoint)
        .root(path)
        .known_hosts_strategy(strategy);
    if let Some(user) = user {
        b = b.user(user);
    }
    if let Some(key) = opts.get("key") {
        b = b.key(key);
    }
    Operator::new(b).map_err(build_error)
}

fn webdav(endpoint: &str, path: &str, opts: &StoreOptions) -> Result<Operator> {
    opts.check_keys("webdav", &[])?;
    let mut b = opendal::services::Webdav::default()
        .endpoint(endpoint)
        .root(&root(path));
    if let Ok(user) = std::env::var("CHATVAULT_WEBDAV_USERNAME") {
        b = b.username(&user);
        if let Ok(pw) = std::env::var("CHATVAULT_WEBDAV_PASSWORD") {
            b = b.password(&pw);
        }
    }
    if let Ok(token) = std::env::var("CHATVAULT_WEBDAV_TOKEN") {
        b = b.token(&token);
    }
    Operator::new(b).map_err(build_error)
}

/// Our reqwest client: rustls over ring, connect and read timeouts, a pool sized to the
/// connection limit.
fn http_transport(remote: &RemoteOptions) -> Result<HttpTransporter> {
    crate::runtime::install_tls_provider();
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .read_timeout(remote.request_timeout)
        .pool_max_idle_per_host(remote.connections)
        .pool_idle_timeout(Duration::from_secs(60))
        .tcp_keepalive(Duration::from_secs(30))
        .build()
        .map_err(|e| Error::InvalidOption {
            key: "http client".into(),
            reason: e.to_string(),
        })?;
    Ok(HttpTransporter::new(ReqwestTransport::new(client)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(location: &str, options: &[&str]) -> Result<Operator> {
        let location: Location = location.parse()?;
        let options = StoreOptions::parse(options)?;
        let tuning = Tuning::from_options(&options)?;
        operator(&location, &options, &tuning, None)
    }

    // Only S3 has a server in the tests; the other services are checked to configure
    // (no request is sent: OpenDAL connects on first use) with their options.
    #[test]
    fn every_scheme_configures_without_a_request() {
        let cases: [(&str, &[&str], &str); 5] = [
            (
                "s3:https://s3.eu-west-1.amazonaws.com/b/p",
                &[
                    "region=eu-west-1",
                    "endpoint_style=virtual",
                    "storage_class=STANDARD_IA",
                ],
                "s3",
            ),
            (
                "azblob:https://acct.blob.core.windows.net/c/p",
                &[],
                "azblob",
            ),
            ("gcs:bucket/p", &["storage_class=NEARLINE"], "gcs"),
            (
                "sftp:backup@vault.example:/srv/chatvault",
                &["known_hosts=accept"],
                "sftp",
            ),
            ("webdav:https://dav.example/remote.php/dav", &[], "webdav"),
        ];
        for (location, options, scheme) in cases {
            let op = build(location, options).unwrap_or_else(|e| panic!("{location}: {e}"));
            assert_eq!(op.info().scheme(), scheme, "{location}");
        }
    }

    #[test]
    fn options_are_checked_per_scheme() {
        assert!(build("gcs:bucket", &["region=eu"]).is_err());
        assert!(build("s3:https://h/b", &["endpoint_style=sideways"]).is_err());
        assert!(build("sftp:h:/p", &["known_hosts=maybe"]).is_err());
        assert!(build("s3:https://h/b", &["connections=0"]).is_err());
        assert!(
            build(
                "s3:https://h/b",
                &["retries=4", "timeout=5", "list_page=100"]
            )
            .is_ok()
        );
        let location: Location = "gcs:bucket".parse().unwrap();
        let creds = S3Credentials::new("id", "secret");
        let tuning = Tuning::from_options(&StoreOptions::default()).unwrap();
        assert!(operator(&location, &StoreOptions::default(), &tuning, Some(&creds)).is_err());
    }
}
