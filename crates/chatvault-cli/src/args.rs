//! The command line, as clap parses it. Nothing here touches a repository.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Exit codes, documented in `--help` and README.md.
pub const EXIT_CODES: &str = "\
Exit codes:
  0   success
  1   error
  2   usage error
  3   partial: the command finished but some entries could not be read or restored
  10  no repository at the given location
  11  wrong passphrase or key file
  12  repository locked by another process
  13  repository data is corrupt or missing
  14  the key's role does not allow the command
  15  the storage refused the credentials
  16  the storage kept failing until the retries ran out; re-run later
  17  the snapshot is under a legal hold (release it first)
  18  a hardware token refused the PIN (wrong, locked or expired)";

/// Back up and restore a chat server's data into a deduplicating, encrypted repository.
#[derive(Debug, Parser)]
#[command(name = "chatvault", version, after_help = EXIT_CODES)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(Debug, Default, Clone, Args)]
pub struct Global {
    /// Repository location: a directory, or s3:https://HOST/BUCKET/PREFIX,
    /// azblob:https://ACCOUNT.blob.core.windows.net/CONTAINER/PREFIX, gcs:BUCKET/PREFIX,
    /// sftp:USER@HOST:/PATH, webdav:https://HOST/PATH. Credentials come from the store's
    /// environment variables and files, never from the location.
    #[arg(short = 'r', long, env = "CHATVAULT_REPO", global = true)]
    pub repo: Option<String>,
    /// A setting of the repository's store, KEY=VALUE (repeatable): region,
    /// endpoint_style=path|virtual, storage_class, connections, retries, timeout (seconds),
    /// ec2_metadata=on, … (docs/OPERATIONS.md, "Repository locations").
    #[arg(long = "option", value_name = "KEY=VALUE", global = true)]
    pub options: Vec<String>,
    /// Pack uploads in flight at once while backing up (each holds one 16 MiB pack in
    /// memory). Default: 1 for a local directory, 4 for a remote store.
    #[arg(long, env = "CHATVAULT_UPLOADS", global = true)]
    pub uploads: Option<std::num::NonZeroUsize>,
    /// Read the passphrase from this file (first line).
    #[arg(long, env = "CHATVAULT_PASSWORD_FILE", global = true)]
    pub password_file: Option<PathBuf>,
    /// Run this shell command and use its first output line as the passphrase (a KMS or
    /// secrets-manager client).
    #[arg(long, env = "CHATVAULT_PASSWORD_COMMAND", global = true)]
    pub password_command: Option<String>,
    /// Use a raw key file instead of a passphrase (64 hex digits).
    #[arg(long, env = "CHATVAULT_KEY_FILE", global = true)]
    pub key_file: Option<PathBuf>,
    /// Open a `command` key slot: this shell command reads the slot's wrapped seed on
    /// its standard input and prints the seed in base64 (a KMS client: Vault transit
    /// decrypt, a cloud KMS CLI).
    #[arg(long, env = "CHATVAULT_KEY_COMMAND", global = true)]
    pub key_command: Option<String>,
    /// The PKCS#11 module (shared library) of a hardware token, e.g. Debian's SoftHSM2
    /// /usr/lib/softhsm/libsofthsm2.so. With it, the repository is opened with a
    /// `pkcs11` key slot (the slot names its token and key), and `key add --kind pkcs11`
    /// and `key token-keygen` use this module.
    #[arg(long, env = "CHATVAULT_PKCS11_MODULE", global = true)]
    pub pkcs11_module: Option<PathBuf>,
    /// Read the token's user PIN from this file (first line). Without a PIN option the PIN
    /// comes from CHATVAULT_PIN, or a prompt on a terminal.
    #[arg(long, env = "CHATVAULT_PIN_FILE", global = true)]
    pub pin_file: Option<PathBuf>,
    /// Run this shell command and use its first output line as the token's user PIN.
    #[arg(long, env = "CHATVAULT_PIN_COMMAND", global = true)]
    pub pin_command: Option<String>,
    /// Local cache directory (index cache, pins). Default: the user's cache directory.
    #[arg(long, env = "CHATVAULT_CACHE_DIR", global = true)]
    pub cache_dir: Option<PathBuf>,
    /// Print machine-readable JSON on stdout (one document per command).
    #[arg(long, global = true)]
    pub json: bool,
    /// More log output (-v, -vv).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Only errors on stderr; no progress.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// No progress bars even on a terminal.
    #[arg(long, global = true)]
    pub no_progress: bool,
    /// Write Prometheus metrics (text format, for node_exporter's textfile collector) to
    /// this file, replacing only this command's samples; or, if it is a directory, to
    /// `chatvault-<command>.prom` in it. Written atomically.
    #[arg(long, env = "CHATVAULT_METRICS_FILE", global = true)]
    pub metrics_file: Option<PathBuf>,
    /// Run this shell command when the command succeeds: the report is in CHATVAULT_*
    /// variables and, as JSON, on its standard input. Its failure is reported but does not
    /// change the exit code.
    #[arg(long, env = "CHATVAULT_ON_SUCCESS", global = true)]
    pub on_success: Option<String>,
    /// Run this shell command when the command fails (any non-zero exit code), as for
    /// --on-success.
    #[arg(long, env = "CHATVAULT_ON_FAILURE", global = true)]
    pub on_failure: Option<String>,
    /// Seconds to wait for another process's lock before giving up with exit code 12: a
    /// backup waits for a prune that is deleting (default 600), a prune for running
    /// backups and for another prune (default 60).
    #[arg(long, env = "CHATVAULT_LOCK_WAIT", global = true, value_name = "SECS")]
    pub lock_wait: Option<u64>,
    /// Read without a lock (restore, check, drill, ls, …), for storage this process may
    /// not write to. A prune that deletes meanwhile can then make the command fail.
    #[arg(long, global = true)]
    pub no_lock: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a repository; the passphrase (or key file) opens its first, admin, key slot.
    Init(InitArgs),
    /// Back up paths (or standard input) into a new snapshot.
    Backup(BackupArgs),
    /// List snapshots.
    Snapshots(SnapshotsArgs),
    /// List the entries of a snapshot.
    Ls(LsArgs),
    /// Find entries whose name or path matches a pattern, in every snapshot.
    Find(FindArgs),
    /// Show what changed between two snapshots.
    Diff(DiffArgs),
    /// Restore a snapshot (or part of it) to a directory.
    Restore(RestoreArgs),
    /// Write one file of a snapshot to standard output.
    #[command(alias = "dump")]
    Cat(CatArgs),
    /// Manage key slots: list, add, remove, change passphrase.
    Key(KeyArgs),
    /// Repository size, deduplication, and what each snapshot added.
    Stats(StatsArgs),
    /// Verify snapshots, trees, the index against pack headers, and (--read-data) every blob.
    Check(CheckArgs),
    /// Remove snapshots a retention policy does not keep (their data stays until a prune,
    /// or use --prune).
    Forget(ForgetArgs),
    /// Delete data no snapshot needs and repack mostly-unused packs.
    Prune(PruneArgs),
    /// Put a snapshot on hold (legal hold): forget and prune keep it until released.
    Hold(HoldArgs),
    /// Release every hold on a snapshot.
    Release(ReleaseArgs),
    /// Remove stale locks (left by killed processes); with --all, every lock.
    Unlock(UnlockArgs),
    /// Verify that every pack, index segment and snapshot hashes to its name (no key needed).
    Scrub(ScrubArgs),
    /// Make DST an exact copy of the repository in SRC, without any key (an off-site
    /// copy a storage administrator can run): what DST lacks is copied, verified against
    /// its name, in dependency order; with --delete, what SRC has been without for a
    /// grace period is removed.
    Mirror(MirrorArgs),
    /// Copy snapshots from SRC (--from) into the repository --repo names (or --to), which
    /// has its own keys: what it has no copy of is read, re-sealed with its keys and saved
    /// with its origin, so a second run copies nothing twice.
    Copy(CopyArgs),
    /// Repair a damaged repository: rebuild the index, or save snapshots without what is lost.
    Repair(RepairArgs),
    /// Restore drill: restore (or verify) the latest snapshot of each group, measure the
    /// time it takes and the age of the data, and report.
    Drill(DrillArgs),
    /// Run a backup plan (backup, forget, check, drill) from a TOML file.
    Run(RunArgs),
    /// Message logs: back up a chat server's data directory, list, export and restore
    /// conversations by tenant, seq or time range.
    Msglog(MsglogArgs),
    /// Show what chatvault does, on generated chat-server data in a temporary directory:
    /// a full backup, daily incrementals, a conversation's time range and the whole
    /// server restored and compared byte for byte.
    Demo(DemoArgs),
    /// Print a shell completion script.
    Completions(CompletionsArgs),
    /// Write man pages.
    Man(ManArgs),
}

impl Command {
    /// The subcommand's name, as the `command` label of metrics and `CHATVAULT_COMMAND`.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Init(_) => "init",
            Command::Backup(_) => "backup",
            Command::Snapshots(_) => "snapshots",
            Command::Ls(_) => "ls",
            Command::Find(_) => "find",
            Command::Diff(_) => "diff",
            Command::Restore(_) => "restore",
            Command::Cat(_) => "cat",
            Command::Key(_) => "key",
            Command::Stats(_) => "stats",
            Command::Check(_) => "check",
            Command::Forget(_) => "forget",
            Command::Prune(_) => "prune",
            Command::Hold(_) => "hold",
            Command::Release(_) => "release",
            Command::Unlock(_) => "unlock",
            Command::Scrub(_) => "scrub",
            Command::Mirror(_) => "mirror",
            Command::Copy(_) => "copy",
            Command::Repair(_) => "repair",
            Command::Drill(_) => "drill",
            Command::Run(_) => "run",
            Command::Msglog(m) => match m.command {
                MsglogCommand::Backup(_) => "msglog-backup",
                MsglogCommand::Ls(_) => "msglog-ls",
                MsglogCommand::Export(_) => "msglog-export",
                MsglogCommand::Restore(_) => "msglog-restore",
            },
            Command::Demo(_) => "demo",
            Command::Completions(_) => "completions",
            Command::Man(_) => "man",
        }
    }
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// zstd compression level (0 stores data uncompressed).
    #[arg(long, default_value_t = 3)]
    pub compression_level: i32,
    /// Label of the admin key slot.
    #[arg(long, default_value = "admin")]
    pub label: String,
    /// Create a new random key file at this path and use it for the admin slot instead
    /// of a passphrase.
    #[arg(long, conflicts_with = "key_file")]
    pub new_key_file: Option<PathBuf>,
    /// Chunk like the repository at this location (opened with the --from-* key options,
    /// a full or admin key): the new repository gets its secret chunker key and chunk
    /// sizes, not its id key, so `copy` from it deduplicates against this repository's own
    /// backups. This shares chunk boundaries (someone who sees both repositories' stored
    /// sizes can tell they hold the same data), not contents.
    #[arg(long, value_name = "SRC")]
    pub chunker_from: Option<String>,
    /// Keep the admin slot on a PKCS#11 token instead (with --pkcs11-module and the PIN
    /// options): the token's label. Add a second admin slot soon: without the token and
    /// its key the repository cannot be opened.
    #[arg(long, requires = "key_label", conflicts_with = "new_key_file")]
    pub token_label: Option<String>,
    /// The AES-256 key on the token that wraps the admin slot (its label).
    #[arg(long, requires = "token_label")]
    pub key_label: Option<String>,
    #[command(flatten)]
    pub from: FromArgs,
}

/// How to open a second repository, the source of `copy` and `init --chunker-from`.
#[derive(Debug, Clone, Default, Args)]
pub struct FromArgs {
    /// A setting of the source's store, KEY=VALUE (repeatable), as --option is for --repo.
    #[arg(long = "from-option", value_name = "KEY=VALUE")]
    pub from_options: Vec<String>,
    /// Read the source's passphrase from this file (first line).
    #[arg(long, env = "CHATVAULT_FROM_PASSWORD_FILE")]
    pub from_password_file: Option<PathBuf>,
    /// Run this shell command for the source's passphrase (first output line).
    #[arg(long, env = "CHATVAULT_FROM_PASSWORD_COMMAND")]
    pub from_password_command: Option<String>,
    /// The source's raw key file (64 hex digits) instead of a passphrase.
    #[arg(long, env = "CHATVAULT_FROM_KEY_FILE")]
    pub from_key_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, Args)]
pub struct BackupArgs {
    /// Files and directories to back up.
    #[arg(required_unless_present = "stdin")]
    pub paths: Vec<PathBuf>,
    /// Leave out entries matching this glob (repeatable). Without `/` it matches names,
    /// with `/` whole absolute paths.
    #[arg(short = 'e', long = "exclude")]
    pub exclude: Vec<String>,
    /// Read exclude patterns from this file, one per line (repeatable).
    #[arg(long = "exclude-file")]
    pub exclude_file: Vec<PathBuf>,
    /// Leave out directories holding a CACHEDIR.TAG.
    #[arg(long)]
    pub exclude_caches: bool,
    /// Do not cross filesystem boundaries.
    #[arg(short = 'x', long)]
    pub one_file_system: bool,
    /// Read every file again instead of reusing unchanged ones from the parent.
    #[arg(long)]
    pub full: bool,
    #[command(flatten)]
    pub parent: ParentArgs,
    #[command(flatten)]
    pub record: RecordArgs,
    /// Fail, saving no snapshot, if any file cannot be read.
    #[arg(long)]
    pub fail_on_error: bool,
    /// Back up standard input as one file (`pg_dump | chatvault backup --stdin`).
    #[arg(long, conflicts_with = "paths")]
    pub stdin: bool,
    /// The file name standard input is stored under.
    #[arg(long, default_value = "stdin", requires = "stdin")]
    pub stdin_name: String,
}

/// Which snapshot a backup builds on.
#[derive(Debug, Clone, Default, Args)]
pub struct ParentArgs {
    /// Build on this snapshot instead of the latest of the same source and host.
    #[arg(long, conflicts_with = "no_parent")]
    pub parent: Option<String>,
    /// Build on no snapshot: read everything.
    #[arg(long)]
    pub no_parent: bool,
}

/// What a backup records beside its data.
#[derive(Debug, Clone, Default, Args)]
pub struct RecordArgs {
    /// Host name to record (default: this machine's).
    #[arg(long)]
    pub host: Option<String>,
    /// Tag to record (repeatable).
    #[arg(long = "tag")]
    pub tags: Vec<String>,
}

#[derive(Debug, Args)]
pub struct SnapshotsArgs {
    /// Only snapshots from this host.
    #[arg(long)]
    pub host: Option<String>,
    /// Only snapshots with this tag.
    #[arg(long)]
    pub tag: Option<String>,
}

#[derive(Debug, Args)]
pub struct LsArgs {
    /// Snapshot id, unique prefix, or `latest`.
    pub snapshot: String,
    /// Path inside the snapshot.
    #[arg(default_value = "/")]
    pub path: String,
    /// Long listing: mode, owner, size, modification time.
    #[arg(short, long)]
    pub long: bool,
    /// Only the entries directly below the path.
    #[arg(long)]
    pub no_recursive: bool,
}

#[derive(Debug, Args)]
pub struct FindArgs {
    /// Glob patterns (as for --exclude).
    #[arg(required = true)]
    pub patterns: Vec<String>,
    /// Only this snapshot (repeatable; default: all).
    #[arg(long = "snapshot")]
    pub snapshots: Vec<String>,
}

#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The older snapshot.
    pub first: String,
    /// The newer snapshot.
    pub second: String,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// Snapshot id, unique prefix, or `latest`.
    pub snapshot: String,
    /// Directory to restore into.
    #[arg(short, long)]
    pub target: PathBuf,
    /// Restore only this path of the snapshot; a directory's contents go into the target.
    #[arg(long)]
    pub path: Option<String>,
    /// Restore only entries matching this glob (repeatable).
    #[arg(short = 'i', long = "include")]
    pub include: Vec<String>,
    /// Leave out entries matching this glob (repeatable).
    #[arg(short = 'e', long = "exclude")]
    pub exclude: Vec<String>,
    /// Restore into a non-empty target, replacing entries with the same paths.
    #[arg(long)]
    pub overwrite: bool,
    /// Restore links that point outside the target (absolute or `..` links).
    #[arg(long)]
    pub allow_outward_links: bool,
    /// Do not restore owners even when running as root.
    #[arg(long)]
    pub no_owners: bool,
}

#[derive(Debug, Args)]
pub struct CatArgs {
    /// Snapshot id, unique prefix, or `latest`.
    pub snapshot: String,
    /// The file's path inside the snapshot.
    pub path: String,
}

#[derive(Debug, Args)]
pub struct KeyArgs {
    #[command(subcommand)]
    pub command: KeyCommand,
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// List key slots.
    List,
    /// Add a key slot (needs an admin key).
    Add(KeyAddArgs),
    /// Remove a key slot and revoke its writer key (needs an admin key): what it signed
    /// so far stays trusted, nothing it signs later is accepted.
    Remove {
        /// The slot id (or unique prefix) from `key list`.
        slot: String,
    },
    /// Revoke a writer key that may be compromised (needs an admin key): readers accept
    /// only the snapshots and index segments it signed up to --trusted-until, as they
    /// exist now, and nothing it signs later.
    Revoke(KeyRevokeArgs),
    /// Change the passphrase of the slot that opened the repository.
    Passwd(NewSecret),
    /// Create a non-extractable AES-256 key on a PKCS#11 token for `key add --kind
    /// pkcs11` (with --pkcs11-module and the token's PIN; needs no repository).
    TokenKeygen(TokenKeygenArgs),
    /// Rotate the keys (needs an admin key): a new generation of data key pair, auth key
    /// and index key seals everything written from now on; every writer the config does
    /// not revoke receives it. (`key revoke` and `key remove` rotate too.)
    Rotate,
}

#[derive(Debug, Args)]
pub struct KeyAddArgs {
    /// What the new key may do: `backup` writes but can never read, `full` reads and
    /// writes, `admin` also manages keys.
    #[arg(long, value_enum)]
    pub role: RoleArg,
    /// A label for the slot (host or person).
    #[arg(long, default_value = "")]
    pub label: String,
    /// The host whose snapshots the key may write (`*`: any host). Default: the label
    /// for backup and full keys, any host for admin keys.
    #[arg(long)]
    pub scope: Option<String>,
    /// Let other writers deduplicate against what this key stores (default: yes for full
    /// and admin keys, no for backup keys). Only for backup keys of nodes that trust each
    /// other: a compromised one could make the others skip storing data.
    #[arg(long)]
    pub dedup_source: bool,
    /// How the new slot's key is kept: `passphrase` (Argon2id), `key-file` (a new random
    /// key file, --new-key-file), `pkcs11` (a non-extractable AES key on a hardware token:
    /// --token-label, --key-label, with the global --pkcs11-module and PIN options) or
    /// `command` (a KMS: --wrap-command, --unwrap-command). Default: `key-file` with
    /// --new-key-file, else `passphrase`.
    #[arg(long, value_enum)]
    pub kind: Option<SlotKindArg>,
    /// The token whose key wraps a `pkcs11` slot (its label).
    #[arg(long, required_if_eq("kind", "pkcs11"))]
    pub token_label: Option<String>,
    /// The AES-256 key on the token that wraps a `pkcs11` slot (its label, CKA_LABEL).
    #[arg(long, required_if_eq("kind", "pkcs11"))]
    pub key_label: Option<String>,
    /// The shell command that wraps a `command` slot's seed: it reads the seed (base64)
    /// on its standard input and prints the wrapped seed.
    #[arg(long, required_if_eq("kind", "command"))]
    pub wrap_command: Option<String>,
    /// The shell command that unwraps a `command` slot's seed (run once now, to check
    /// that the slot opens; give the same command as --key-command to open with it).
    #[arg(long, required_if_eq("kind", "command"))]
    pub unwrap_command: Option<String>,
    #[command(flatten)]
    pub secret: NewSecret,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SlotKindArg {
    Passphrase,
    KeyFile,
    Pkcs11,
    Command,
}

#[derive(Debug, Args)]
pub struct TokenKeygenArgs {
    /// The token to create the key on (its label).
    #[arg(long)]
    pub token_label: String,
    /// The new key's label (CKA_LABEL); refused if the token has a secret key with it.
    #[arg(long)]
    pub key_label: String,
}

#[derive(Debug, Args)]
pub struct KeyRevokeArgs {
    /// The key to revoke: its label, its writer key (hex, or a unique prefix), or its
    /// slot id prefix, as `key list` shows them.
    pub key: String,
    /// Trust its objects with a writer sequence up to this one (`snapshots --json` shows
    /// each snapshot's `writer_seq`); `all` keeps everything it signed so far, `none`
    /// nothing.
    #[arg(long, default_value = "none")]
    pub trusted_until: String,
}

/// Where a new passphrase or key comes from.
#[derive(Debug, Args)]
pub struct NewSecret {
    /// Read the new passphrase from this file.
    #[arg(long, conflicts_with = "new_key_file")]
    pub new_password_file: Option<PathBuf>,
    /// Create a new random key file at this path and use it.
    #[arg(long)]
    pub new_key_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum RoleArg {
    Backup,
    Full,
    Admin,
}

#[derive(Debug, Clone, Default, Args)]
pub struct CheckArgs {
    /// Also read every pack in full and authenticate every blob (reads the whole repository).
    #[arg(long)]
    pub read_data: bool,
    /// Read only part of the packs: `n/m` (part n of m), `P%` or a size like `20G`. A
    /// percentage or size continues where the previous partial run stopped, so a weekly
    /// job reads everything over successive runs.
    #[arg(long, conflicts_with = "read_data")]
    pub read_data_subset: Option<chatvault_core::DataSubset>,
}

#[derive(Debug, Args)]
pub struct ScrubArgs {}

#[derive(Debug, Args)]
pub struct MirrorArgs {
    /// Where the repository is: a location as for --repo.
    pub src: String,
    /// Where its copy goes: a location as for --repo (a local directory is created).
    pub dst: String,
    /// A setting of SRC's store, KEY=VALUE (repeatable), as --option is for --repo.
    #[arg(long = "src-option", value_name = "KEY=VALUE")]
    pub src_options: Vec<String>,
    /// A setting of DST's store, KEY=VALUE (repeatable).
    #[arg(long = "dst-option", value_name = "KEY=VALUE")]
    pub dst_options: Vec<String>,
    /// Objects copied at once; each holds one object (at most a pack) in memory.
    #[arg(long, default_value_t = std::num::NonZeroUsize::new(4).unwrap_or(std::num::NonZeroUsize::MIN))]
    pub transfers: std::num::NonZeroUsize,
    /// Delete from DST what SRC has been without for the --delete-after grace period, as
    /// this mirror observed it (never while SRC holds a prune lock). By default, nothing
    /// is deleted.
    #[arg(long)]
    pub delete: bool,
    /// The grace period of --delete: a number and a unit, s, m, h or d (30m, 24h, 7d).
    #[arg(
        long,
        default_value = "24h",
        value_name = "DURATION",
        requires = "delete"
    )]
    pub delete_after: String,
    /// The repository's admin public key (64 hex digits, `chatvault key list --json`):
    /// both configs must be signed by it. By default, DST's config's admin key, or on a
    /// first copy SRC's.
    #[arg(long, value_name = "HEX")]
    pub admin_key: Option<String>,
}

#[derive(Debug, Args)]
pub struct CopyArgs {
    /// The source repository: a location as for --repo. Its key (full or admin) comes from
    /// the --from-* options or CHATVAULT_FROM_PASSWORD.
    #[arg(long, value_name = "SRC")]
    pub from: String,
    /// The destination repository, instead of --repo / CHATVAULT_REPO; opened with the
    /// usual key options (a backup key will do). Its store's settings are --option's.
    #[arg(long, value_name = "DST")]
    pub to: Option<String>,
    #[command(flatten)]
    pub source: FromArgs,
    /// Only snapshots from this host.
    #[arg(long)]
    pub host: Option<String>,
    /// Only snapshots with this tag (repeatable: every one).
    #[arg(long = "tag")]
    pub tags: Vec<String>,
    /// Only snapshots of this source kind (fs, msglog, stdin, …).
    #[arg(long)]
    pub source_kind: Option<String>,
    /// Only snapshots with exactly these paths (repeatable, in order; a message-log
    /// backup set's only path is its name).
    #[arg(long = "path")]
    pub paths: Vec<String>,
    /// Show what would be copied, and copy nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct RepairArgs {
    #[command(subcommand)]
    pub command: RepairCommand,
}

#[derive(Debug, Subcommand)]
pub enum RepairCommand {
    /// Rebuild the index segments from the pack headers; retire unreadable and replaced
    /// segments.
    Index,
    /// Save a new snapshot for each damaged one, leaving out the files and directories
    /// whose data is lost, and list exactly what was lost.
    Snapshots(RepairSnapshotsArgs),
    /// Find packs whose bytes changed (or take those named), copy every blob that still
    /// verifies into new packs, delete the damaged packs and rebuild the index. Reads the
    /// whole repository unless packs are named.
    Packs(RepairPacksArgs),
}

#[derive(Debug, Args)]
pub struct RepairPacksArgs {
    /// Packs to repair: pack ids or object names (`data/ab/ab12…`), as `check` prints
    /// them (default: every pack, read in full).
    pub packs: Vec<String>,
    /// Report the damaged packs and what would be salvaged; copy and delete nothing.
    #[arg(long, short = 'n')]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct RepairSnapshotsArgs {
    /// Snapshots to repair (id, unique prefix or `latest`; default: all).
    pub snapshots: Vec<String>,
    /// Also read every referenced data blob to find corrupt ones (not only missing ones).
    #[arg(long)]
    pub read_data: bool,
    /// Keep a damaged file with its readable chunks (its content is cut) instead of
    /// leaving it out.
    #[arg(long)]
    pub keep_readable: bool,
    /// Delete each original once its repaired snapshot is saved (and each whose root
    /// tree is lost: it restores nothing).
    #[arg(long)]
    pub forget: bool,
    /// Report what would be lost; write nothing.
    #[arg(long, short = 'n')]
    pub dry_run: bool,
}

#[derive(Debug, Clone, Default, Args)]
pub struct DrillArgs {
    /// Snapshots to drill (id, unique prefix or `latest`; default: the latest of every
    /// group of source kind, host and paths).
    pub snapshots: Vec<String>,
    /// Read and verify everything (every chunk, every file digest) but write nothing.
    #[arg(long, conflicts_with = "target")]
    pub verify_only: bool,
    /// Scratch directory to restore into (one subdirectory per snapshot; must not exist
    /// or be empty). Default: a new directory under the system's temporary directory.
    #[arg(long)]
    pub target: Option<PathBuf>,
    /// Keep the restored files instead of removing them after the drill.
    #[arg(long)]
    pub keep: bool,
    /// Also write the JSON report to this file.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Only snapshots from this host.
    #[arg(long)]
    pub host: Option<String>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The plan file (TOML; see docs/OPERATIONS.md).
    pub plan: PathBuf,
    /// Show what the plan would do now (which steps are due) without doing it.
    #[arg(long, short = 'n')]
    pub dry_run: bool,
    /// Run only this step of the plan (repeatable), e.g. `--only backup` to store again,
    /// now, what the sources hold. By default, every step.
    #[arg(long, value_enum)]
    pub only: Vec<PlanStep>,
}

/// A step of a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PlanStep {
    Backup,
    Forget,
    Prune,
    Check,
    Drill,
}

#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Also size every snapshot's tree (walks trees; shared subtrees are sized once).
    #[arg(long)]
    pub per_snapshot: bool,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// Directory to write `chatvault.1` and one page per subcommand into.
    #[arg(long, default_value = ".")]
    pub out: PathBuf,
}

#[derive(Debug, Clone, Default, Args)]
pub struct ForgetArgs {
    /// Forget exactly these snapshots (id, unique prefix, or `latest`) instead of applying
    /// a policy. A record that no longer loads (damaged, or of an unknown format) can be
    /// named too; held snapshots are refused.
    #[arg(value_name = "SNAPSHOT")]
    pub snapshots: Vec<String>,
    /// Keep the newest N snapshots of each group.
    #[arg(long, default_value_t = 0)]
    pub keep_last: u32,
    /// Keep the newest snapshot of each of the N most recent hours.
    #[arg(long, default_value_t = 0)]
    pub keep_hourly: u32,
    /// … days.
    #[arg(long, default_value_t = 0)]
    pub keep_daily: u32,
    /// … ISO weeks.
    #[arg(long, default_value_t = 0)]
    pub keep_weekly: u32,
    /// … months.
    #[arg(long, default_value_t = 0)]
    pub keep_monthly: u32,
    /// … years.
    #[arg(long, default_value_t = 0)]
    pub keep_yearly: u32,
    /// Keep everything taken within this period before the group's newest snapshot
    /// (`30d`, `1y6m`, `36h`).
    #[arg(long)]
    pub keep_within: Option<chatvault_core::Period>,
    /// Keep the newest of each hour within this period.
    #[arg(long)]
    pub keep_within_hourly: Option<chatvault_core::Period>,
    /// Keep the newest of each day within this period.
    #[arg(long)]
    pub keep_within_daily: Option<chatvault_core::Period>,
    /// Keep the newest of each ISO week within this period.
    #[arg(long)]
    pub keep_within_weekly: Option<chatvault_core::Period>,
    /// Keep the newest of each month within this period.
    #[arg(long)]
    pub keep_within_monthly: Option<chatvault_core::Period>,
    /// Keep the newest of each year within this period.
    #[arg(long)]
    pub keep_within_yearly: Option<chatvault_core::Period>,
    /// Keep every snapshot with this tag (repeatable).
    #[arg(long = "keep-tag")]
    pub keep_tags: Vec<String>,
    /// IANA time zone for days, weeks, months and years (default UTC).
    #[arg(long)]
    pub time_zone: Option<String>,
    /// Show what would be kept and removed, and why, without removing anything.
    #[arg(long, short = 'n')]
    pub dry_run: bool,
    /// Prune right after forgetting (with --dry-run, show what the prune would free).
    #[arg(long)]
    pub prune: bool,
    #[command(flatten)]
    pub prune_flags: PruneFlags,
}

/// The prune knobs `prune` and `forget --prune` share.
#[derive(Debug, Clone, Args)]
pub struct PruneFlags {
    /// Repack packs with more than this share unused (percent).
    #[arg(long, default_value_t = 10.0, value_name = "PERCENT")]
    pub max_unused: f64,
    /// Repack at most this many bytes of packs (K, M, G, T suffixes: powers of 1024).
    #[arg(long, value_name = "BYTES", value_parser = parse_size)]
    pub max_repack: Option<u64>,
}

impl Default for PruneFlags {
    fn default() -> Self {
        PruneFlags {
            max_unused: 10.0,
            max_repack: None,
        }
    }
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    #[command(flatten)]
    pub flags: PruneFlags,
    /// Show what would be deleted and repacked, and the bytes freed, without changing
    /// anything.
    #[arg(long, short = 'n')]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct HoldArgs {
    /// The snapshot (id, unique prefix, or `latest`).
    pub snapshot: String,
    /// Why: a case or ticket reference. Stored unencrypted: no secrets.
    #[arg(long, default_value = "")]
    pub reason: String,
}

#[derive(Debug, Args)]
pub struct ReleaseArgs {
    /// The snapshot (id, unique prefix, or `latest`).
    pub snapshot: String,
}

#[derive(Debug, Args)]
pub struct UnlockArgs {
    /// Also watch other hosts' locks for this many seconds and remove those whose refresh
    /// counter does not move.
    #[arg(long, value_name = "SECS")]
    pub watch: Option<u64>,
    /// Remove every lock. Only when no chatvault process uses the repository.
    #[arg(long, conflicts_with = "watch")]
    pub all: bool,
}

/// A byte count with an optional K, M, G or T suffix (powers of 1024).
pub fn parse_size(s: &str) -> Result<u64, String> {
    chatvault_core::parse_size(s).ok_or_else(|| format!("{s:?}: expected a size like 500M or 2G"))
}

#[derive(Debug, Args)]
pub struct MsglogArgs {
    #[command(subcommand)]
    pub command: MsglogCommand,
}

#[derive(Debug, Subcommand)]
pub enum MsglogCommand {
    /// Back up a chat server's data directory as one backup set: `DIR/logs` as message
    /// logs (appended records only, in segments), the rest of DIR (media store,
    /// configuration) as files, and optional database dumps.
    Backup(Box<MsglogBackupArgs>),
    /// List the conversations' streams of a backup set: records, segments, seq and time
    /// ranges.
    Ls(MsglogSelectArgs),
    /// Write the selected records to standard output as JSONL.
    Export(MsglogExportArgs),
    /// Restore a whole backup set (files, logs, dumps), or the selected logs, to a
    /// directory.
    Restore(MsglogRestoreArgs),
}

#[derive(Debug, Clone, Args)]
pub struct MsglogBackupArgs {
    /// The server's data directory (optional with --postgres: then the set holds the
    /// database's messages only).
    #[arg(required_unless_present = "postgres")]
    pub dir: Option<PathBuf>,
    /// The backup set's name (parent selection and retention group by host and name).
    /// Default: the data directory's absolute path.
    #[arg(long)]
    pub name: Option<String>,
    /// Re-read every log and verify it against the stored segments (stores nothing twice).
    #[arg(long)]
    pub full: bool,
    #[command(flatten)]
    pub parent: ParentArgs,
    #[command(flatten)]
    pub record: RecordArgs,
    /// Add a database dump as `db/NAME`, read from FILE (`-` for standard input):
    /// `--dump chat.sql=-` with `pg_dump chat |` in front (repeatable).
    #[arg(long = "dump", value_name = "NAME=FILE")]
    pub dumps: Vec<String>,
    /// Leave out of the files part entries matching this glob (repeatable).
    #[arg(short = 'e', long = "exclude")]
    pub exclude: Vec<String>,
    #[command(flatten)]
    pub layout: LayoutArgs,
    #[command(flatten)]
    pub postgres: PostgresArgs,
}

/// Where in DIR the message logs are and what their records hold (any of these replaces
/// the default `logs/{tenant}/{conversation}/**` with seq and ts in ms).
#[derive(Debug, Clone, Default, Args)]
pub struct LayoutArgs {
    /// Path pattern of the logs, relative to DIR, with {tenant} and {conversation}
    /// captures and globs (repeatable, first match wins): `logs/{tenant}/{conversation}/*.jsonl`.
    /// Files that match no pattern go to the files part.
    #[arg(long = "layout", value_name = "PATTERN")]
    pub patterns: Vec<String>,
    /// JSON pointer to a record's seq (default /seq).
    #[arg(long, value_name = "POINTER")]
    pub seq_pointer: Option<String>,
    /// JSON pointer to a record's timestamp (default /ts).
    #[arg(long, value_name = "POINTER")]
    pub ts_pointer: Option<String>,
    /// How timestamps are written: s, ms (default), us, ns, rfc3339, decimal-seconds.
    #[arg(long, value_name = "FORMAT")]
    pub ts_format: Option<String>,
    /// JSON pointer to the conversation, when the path does not name it.
    #[arg(long, value_name = "POINTER")]
    pub conversation_pointer: Option<String>,
    /// JSON pointer to the tenant, when the path does not name it.
    #[arg(long, value_name = "POINTER")]
    pub tenant_pointer: Option<String>,
    /// Tenant of streams whose layout names none (default `default`).
    #[arg(long, value_name = "NAME")]
    pub default_tenant: Option<String>,
    /// Fail (and store no set) when validation warns about a stream: pointers that do
    /// not resolve, timestamps going backwards, records of another conversation.
    #[arg(long)]
    pub strict: bool,
}

impl LayoutArgs {
    /// Whether any layout option was given (otherwise: the default layout, as before).
    pub fn is_set(&self) -> bool {
        !self.patterns.is_empty()
            || self.seq_pointer.is_some()
            || self.ts_pointer.is_some()
            || self.ts_format.is_some()
            || self.conversation_pointer.is_some()
            || self.tenant_pointer.is_some()
            || self.default_tenant.is_some()
    }
}

/// A PostgreSQL message table as a source (`msglog backup --postgres URL`).
#[derive(Debug, Clone, Default, Args)]
pub struct PostgresArgs {
    /// Read the messages from this PostgreSQL database (`postgresql://USER@HOST/DB`, or
    /// `host=… dbname=…`); the password from --postgres-password-file, PGPASSWORD or
    /// the URL (never printed).
    #[arg(long, value_name = "URL")]
    pub postgres: Option<Secret>,
    /// The database user's password, from this file (first line).
    #[arg(long, value_name = "FILE", requires = "postgres")]
    pub postgres_password_file: Option<PathBuf>,
    /// A preset mapping: `mattermost` (the posts table) or `synapse` (events with
    /// event_json and redactions).
    #[arg(long, value_name = "NAME", requires = "postgres")]
    pub pg_preset: Option<String>,
    /// The table (or view) holding the messages (instead of a preset).
    #[arg(
        long,
        value_name = "TABLE",
        requires = "postgres",
        conflicts_with = "pg_query"
    )]
    pub pg_table: Option<String>,
    /// A SELECT giving the messages (instead of a table or preset).
    #[arg(long, value_name = "SQL", requires = "postgres")]
    pub pg_query: Option<String>,
    /// Column: a message's unique key.
    #[arg(long, value_name = "COLUMN", requires = "postgres")]
    pub pg_key: Option<String>,
    /// Column: the conversation (one stream each).
    #[arg(long, value_name = "COLUMN", requires = "postgres")]
    pub pg_conversation: Option<String>,
    /// Column: the tenant (optional; without it the tenant is --pg-tenant-name).
    #[arg(long, value_name = "COLUMN", requires = "postgres")]
    pub pg_tenant: Option<String>,
    /// Tenant name when no tenant column is mapped (default: the database's name).
    #[arg(long, value_name = "NAME", requires = "postgres")]
    pub pg_tenant_name: Option<String>,
    /// Column: creation time (ms since the epoch, or a timestamp).
    #[arg(long, value_name = "COLUMN", requires = "postgres")]
    pub pg_created: Option<String>,
    /// Column: order within a conversation (a seq; default: the creation time).
    #[arg(long, value_name = "COLUMN", requires = "postgres")]
    pub pg_order: Option<String>,
    /// Column: last update time (edits and deletions set it; default: rows never change).
    #[arg(long, value_name = "COLUMN", requires = "postgres")]
    pub pg_updated: Option<String>,
    /// Column: delete marker (a row is deleted when it is not NULL, 0 or false).
    #[arg(long, value_name = "COLUMN", requires = "postgres")]
    pub pg_deleted: Option<String>,
    /// Seconds a change may take to commit after its update time (and the clock skew
    /// between the chat server and the database): changes this recent are read again by
    /// the next run, and never recorded twice (default 600).
    #[arg(long, value_name = "SECS", requires = "postgres")]
    pub pg_settle_secs: Option<u64>,
    /// The set's clock: `database` (now(), for a live server; the default) or `table`
    /// (the latest change in the table: history loaded after the fact, a replay).
    #[arg(long, value_name = "CLOCK", requires = "postgres")]
    pub pg_clock: Option<String>,
}

/// A value that is never printed: a database URL may hold a password.
#[derive(Clone, Default)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(…)")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret(s.to_owned()))
    }
}

/// Which backup set, and which records of it.
#[derive(Debug, Args)]
pub struct MsglogSelectArgs {
    /// Snapshot id, unique prefix, or `latest` (the newest backup set).
    #[arg(default_value = "latest")]
    pub snapshot: String,
    /// Instead of a snapshot: the newest set taken at or before this time (RFC 3339,
    /// `YYYY-MM-DD` for midnight UTC, or Unix milliseconds): the state at that point.
    #[arg(long, conflicts_with = "snapshot")]
    pub at: Option<String>,
    /// Only sets of this name (with `latest` or `--at`).
    #[arg(long)]
    pub name: Option<String>,
    /// Only sets from this host (with `latest` or `--at`).
    #[arg(long)]
    pub host: Option<String>,
    /// Only this tenant.
    #[arg(long)]
    pub tenant: Option<String>,
    /// Only this conversation (needs --tenant).
    #[arg(long, requires = "tenant")]
    pub conversation: Option<String>,
    /// Only records with a seq in this inclusive range: `FIRST-LAST`, `FIRST-` or `-LAST`.
    #[arg(long)]
    pub seq: Option<String>,
    /// Only records at or after this time (as for --at).
    #[arg(long)]
    pub since: Option<String>,
    /// Only records at or before this time (as for --at).
    #[arg(long)]
    pub until: Option<String>,
    /// Only records within this period before the selection's newest record (`7d`, `36h`).
    #[arg(long, conflicts_with_all = ["since", "until"])]
    pub last: Option<String>,
}

#[derive(Debug, Args)]
pub struct MsglogExportArgs {
    #[command(flatten)]
    pub select: MsglogSelectArgs,
    /// Apply edits and deletions (show conversations as their members see them) instead of
    /// printing every record as stored.
    #[arg(long)]
    pub applied: bool,
}

#[derive(Debug, Args)]
pub struct MsglogRestoreArgs {
    #[command(flatten)]
    pub select: MsglogSelectArgs,
    /// Directory to restore into (must not exist or be empty).
    #[arg(short, long, required_unless_present = "postgres")]
    pub target: Option<PathBuf>,
    /// Instead of a directory: load the selected records into a table of this
    /// PostgreSQL database (with --table).
    #[arg(
        long,
        value_name = "URL",
        requires = "table",
        conflicts_with = "target"
    )]
    pub postgres: Option<Secret>,
    /// The database user's password, from this file (first line).
    #[arg(long, value_name = "FILE", requires = "postgres")]
    pub postgres_password_file: Option<PathBuf>,
    /// The table to load into: an existing empty one (rows by column name: `CREATE
    /// TABLE t (LIKE posts)`) gets each message's state at the backup time; a missing
    /// one is created with one row per record (tenant, conversation, seq, ts, kind, key,
    /// row as jsonb).
    #[arg(long, value_name = "TABLE", requires = "postgres")]
    pub table: Option<String>,
    /// Apply edits and deletions in the restored logs.
    #[arg(long)]
    pub applied: bool,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Days of chat history before the first backup.
    #[arg(long, default_value_t = 5)]
    pub days: u32,
    /// Daily incremental backups after it.
    #[arg(long, default_value_t = 5)]
    pub incrementals: u32,
    /// Work in this directory (kept) instead of a temporary one (removed).
    #[arg(long)]
    pub dir: Option<PathBuf>,
}
