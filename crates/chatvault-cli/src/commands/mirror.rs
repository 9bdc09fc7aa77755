//! `chatvault mirror SRC DST`: the keyless copy of a repository's objects to another store.
//!
//! Invariants: locations are parsed as `--repo` is (never echoed, they may hold a
//! credential); the deletion state lives in the cache directory, one file per pair of
//! locations, replaced atomically, and a damaged one is an error (fail closed), never an
//! empty state.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use chatvault_backend::{Location, Mode, StoreOptions};
use chatvault_core::{
    Backend, ConfigOutcome, DeleteOptions, Deletion, KindReport, MirrorOptions, MirrorReport,
    MirrorState, PublicKey,
};
use serde_json::{Value, json};

use crate::args::{Global, MirrorArgs};
use crate::commands::check::{print_problems, problems_json};
use crate::exit::Outcome;
use crate::output::{self, Output};

pub fn run(g: &Global, out: Output, a: &MirrorArgs) -> Result<Outcome> {
    if !g.options.is_empty() {
        bail!("mirror takes --src-option and --dst-option, not --option");
    }
    let src_location = Location::parse(&a.src)?;
    let dst_location = Location::parse(&a.dst)?;
    let src = connect(&src_location, &a.src_options, Mode::Open).context("the source")?;
    let dst = connect(&dst_location, &a.dst_options, Mode::Create).context("the destination")?;
    let opts = MirrorOptions {
        transfers: a.transfers.get(),
        delete: if a.delete {
            Some(DeleteOptions {
                grace: parse_duration(&a.delete_after)?,
            })
        } else {
            None
        },
        admin_key: a.admin_key.as_deref().map(admin_key).transpose()?,
    };
    let state_file = state_path(g, &src_location, &dst_location)?;
    let mut state = if a.delete {
        load_state(&state_file)?
    } else {
        MirrorState::default()
    };
    let r = chatvault_core::mirror(src.as_ref(), dst.as_ref(), &opts, &mut state)?;
    if a.delete && matches!(r.deletion, Deletion::Ran) {
        save_state(&state_file, &state)?;
    }
    print(&out, &r);
    out.json(&report_json(&src_location, &dst_location, &r));
    Ok(if !r.refused.is_empty() {
        Outcome::Corrupt
    } else if !r.complete {
        Outcome::Partial
    } else {
        Outcome::Complete
    })
}

fn connect(location: &Location, options: &[String], mode: Mode) -> Result<Box<dyn Backend>> {
    let options = StoreOptions::parse(options)?;
    Ok(chatvault_backend::connect(location, &options, mode)?)
}

fn admin_key(text: &str) -> Result<PublicKey> {
    let mut b = [0u8; 32];
    hex::decode_to_slice(text, &mut b).map_err(|_| anyhow!("--admin-key takes 64 hex digits"))?;
    Ok(PublicKey::from_bytes(b))
}

/// `30s`, `15m`, `24h`, `7d`.
fn parse_duration(text: &str) -> Result<Duration> {
    let bad = || anyhow!("{text:?} is not a duration: give a number and s, m, h or d (24h)");
    let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (n, unit) = text.split_at(split);
    let n: u64 = n.parse().map_err(|_| bad())?;
    let secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(bad()),
    };
    Ok(Duration::from_secs(n.checked_mul(secs).ok_or_else(bad)?))
}

/// The deletion state of this pair of locations: `mirror/<hash>.state` in the cache
/// directory. It is local, not in DST, so that a mirror's layout stays the format's own
/// and a lost state only restarts the grace periods (nothing is deleted earlier).
fn state_path(g: &Global, src: &Location, dst: &Location) -> Result<PathBuf> {
    let base = match &g.cache_dir {
        Some(d) => d.clone(),
        None => dirs::cache_dir()
            .ok_or_else(|| anyhow!("no user cache directory is known: give --cache-dir"))?
            .join("chatvault"),
    };
    let pair = format!("{src}\n{dst}");
    let hash = blake3::hash(pair.as_bytes()).to_hex();
    Ok(base.join("mirror").join(format!("{}.state", &hash[..32])))
}

fn load_state(path: &PathBuf) -> Result<MirrorState> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(MirrorState::decode(&bytes, &path.display().to_string())?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(MirrorState::default()),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

fn save_state(path: &PathBuf, state: &MirrorState) -> Result<()> {
    let dir = path.parent().context("the state file has no directory")?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    std::io::Write::write_all(&mut tmp, &state.encode())?;
    tmp.as_file().sync_all()?;
    tmp.persist(path)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

fn kinds(r: &MirrorReport) -> [(&'static str, &KindReport); 5] {
    [
        ("packs", &r.packs),
        ("index segments", &r.segments),
        ("snapshots", &r.snapshots),
        ("holds", &r.holds),
        ("key slots", &r.key_slots),
    ]
}

fn print(out: &Output, r: &MirrorReport) {
    for (name, k) in kinds(r) {
        let mut line = format!(
            "{name:<15} {} copied ({}), {} already there",
            k.copied,
            output::bytes(k.bytes_copied),
            k.present
        );
        if k.repaired > 0 {
            line.push_str(&format!(", {} repaired", k.repaired));
        }
        if k.vanished > 0 {
            line.push_str(&format!(", {} gone from the source meanwhile", k.vanished));
        }
        if k.deleted + k.delete_pending > 0 {
            line.push_str(&format!(
                ", {} deleted, {} waiting for the grace period",
                k.deleted, k.delete_pending
            ));
        }
        out.line(line);
    }
    out.line(match &r.config {
        ConfigOutcome::NotReached => "config          not reached".to_owned(),
        ConfigOutcome::Copied { from: None, to } => format!("config          copied (sequence {to})"),
        ConfigOutcome::Copied { from: Some(f), to } => {
            format!("config          updated (sequence {f} to {to})")
        }
        ConfigOutcome::Unchanged { sequence } => {
            format!("config          unchanged (sequence {sequence})")
        }
        ConfigOutcome::DestinationNewer {
            source,
            destination,
        } => format!(
            "config          kept: the destination's (sequence {destination}) is newer than the source's ({source})"
        ),
        ConfigOutcome::Conflict { sequence } => {
            format!("config          refused: both have sequence {sequence} with different content")
        }
    });
    if let Deletion::Postponed { reason } = &r.deletion {
        out.line(format!("deletion postponed: {}", output::printable(reason)));
    }
    if r.changed_under_us {
        out.line(
            "the source changed during the mirror (a prune or forget): run it again to finish",
        );
    }
    if !r.refused.is_empty() {
        print_problems(*out, &r.refused);
    }
}

fn kind_json(k: &KindReport) -> Value {
    json!({
        "listed": k.listed,
        "copied": k.copied,
        "bytes_copied": k.bytes_copied,
        "present": k.present,
        "repaired": k.repaired,
        "vanished": k.vanished,
        "deleted": k.deleted,
        "bytes_deleted": k.bytes_deleted,
        "delete_pending": k.delete_pending,
    })
}

fn config_json(c: &ConfigOutcome) -> Value {
    match c {
        ConfigOutcome::NotReached => json!({"outcome": "not_reached"}),
        ConfigOutcome::Copied { from, to } => json!({"outcome": "copied", "from": from, "to": to}),
        ConfigOutcome::Unchanged { sequence } => {
            json!({"outcome": "unchanged", "sequence": sequence})
        }
        ConfigOutcome::DestinationNewer {
            source,
            destination,
        } => json!({"outcome": "destination_newer", "source": source, "destination": destination}),
        ConfigOutcome::Conflict { sequence } => {
            json!({"outcome": "conflict", "sequence": sequence})
        }
    }
}

fn report_json(src: &Location, dst: &Location, r: &MirrorReport) -> Value {
    let all = kinds(r);
    json!({
        "source": src.to_string(),
        "destination": dst.to_string(),
        "complete": r.complete,
        "changed_under_us": r.changed_under_us,
        "objects_copied": all.iter().map(|(_, k)| k.copied + k.repaired).sum::<u64>(),
        "bytes_copied": all.iter().map(|(_, k)| k.bytes_copied).sum::<u64>(),
        "objects_deleted": all.iter().map(|(_, k)| k.deleted).sum::<u64>(),
        "packs": kind_json(&r.packs),
        "index_segments": kind_json(&r.segments),
        "snapshots": kind_json(&r.snapshots),
        "holds": kind_json(&r.holds),
        "key_slots": kind_json(&r.key_slots),
        "config": config_json(&r.config),
        "deletion": match &r.deletion {
            Deletion::Off => json!({"state": "off"}),
            Deletion::Ran => json!({"state": "ran"}),
            Deletion::Postponed { reason } => json!({"state": "postponed", "reason": reason}),
        },
        "refused": problems_json(&r.refused),
        "duration_ms": r.duration.as_millis() as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_a_unit_and_nothing_else() {
        assert_eq!(parse_duration("24h").unwrap(), Duration::from_secs(86_400));
        assert_eq!(
            parse_duration("7d").unwrap(),
            Duration::from_secs(7 * 86_400)
        );
        assert_eq!(parse_duration("0s").unwrap(), Duration::ZERO);
        for bad in ["", "24", "h", "1.5h", "-1h", "1w", "99999999999999999999d"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }
}
