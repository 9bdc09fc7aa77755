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
  14  the key's role does not allow the command";

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
#[derive(Debug, Args)]
pub struct Global {
    /// Repository location (a directory).
    #[arg(short = 'r', long, env = "CHATVAULT_REPO", global = true)]
    pub repo: Option<PathBuf>,
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
    /// Seconds to wait for another process's lock before giving up with exit code 12: a
    /// backup waits for a prune that is deleting (default 600), a prune for running
    /// backups and for another prune (default 60).
    #[arg(long, env = "CHATVAULT_LOCK_WAIT", global = true, value_name = "SECS")]
    pub lock_wait: Option<u64>,
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
    /// Print a shell completion script.
    Completions(CompletionsArgs),
    /// Write man pages.
    Man(ManArgs),
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
}

#[derive(Debug, Args)]
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
    /// Compare against this snapshot instead of the latest of the same paths and host.
    #[arg(long, conflicts_with = "no_parent")]
    pub parent: Option<String>,
    /// Compare against no snapshot (reads every file).
    #[arg(long)]
    pub no_parent: bool,
    /// Host name to record.
    #[arg(long)]
    pub host: Option<String>,
    /// Tag to record (repeatable).
    #[arg(long = "tag")]
    pub tags: Vec<String>,
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
    /// Remove a key slot (needs an admin key).
    Remove {
        /// The slot id (or unique prefix) from `key list`.
        slot: String,
    },
    /// Change the passphrase of the slot that opened the repository.
    Passwd(NewSecret),
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
    /// Limit the key to snapshots of this host (default: any host).
    #[arg(long)]
    pub scope: Option<String>,
    #[command(flatten)]
    pub secret: NewSecret,
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

#[derive(Debug, Args)]
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

#[derive(Debug, Args)]
pub struct ForgetArgs {
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
#[derive(Debug, Args)]
pub struct PruneFlags {
    /// Repack packs with more than this share unused (percent).
    #[arg(long, default_value_t = 10.0, value_name = "PERCENT")]
    pub max_unused: f64,
    /// Repack at most this many bytes of packs (K, M, G, T suffixes: powers of 1024).
    #[arg(long, value_name = "BYTES", value_parser = parse_size)]
    pub max_repack: Option<u64>,
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
    let (digits, shift) = match s.chars().last() {
        Some('K' | 'k') => (&s[..s.len() - 1], 10),
        Some('M' | 'm') => (&s[..s.len() - 1], 20),
        Some('G' | 'g') => (&s[..s.len() - 1], 30),
        Some('T' | 't') => (&s[..s.len() - 1], 40),
        _ => (s, 0),
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(1 << shift))
        .ok_or_else(|| format!("{s:?}: expected a size like 500M or 2G"))
}
