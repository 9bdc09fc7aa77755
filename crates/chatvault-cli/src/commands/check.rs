//! `chatvault check` and `chatvault scrub`: verify the repository, print what was found.

use anyhow::Result;
use serde_json::{Value, json};

use chatvault_core::{CheckOptions, CheckProblem};

use crate::args::{CheckArgs, Global};
use crate::exit::Outcome;
use crate::output::{self, Output};
use crate::session;

pub fn check(g: &Global, out: Output, a: &CheckArgs) -> Result<Outcome> {
    let (repo, _lock) = session::open_reading(g)?;
    let r = repo.check(&CheckOptions {
        read_data: a.read_data,
        read_data_subset: a.read_data_subset,
    })?;
    out.line(format!("snapshots:        {}", r.snapshots));
    out.line(format!("trees:            {}", r.trees));
    out.line(format!(
        "packs:            {} ({} read whole; {} read)",
        r.packs,
        r.packs_read,
        output::bytes(r.bytes_read)
    ));
    out.line(format!(
        "blobs:            {} checked against the index, {} read, {} not indexed",
        r.blobs_checked, r.blobs_read, r.unindexed_blobs
    ));
    out.line(format!(
        "duration:         {:.1} s",
        r.duration.as_secs_f64()
    ));
    print_problems(out, &r.problems);
    out.json(&json!({
        "snapshots": r.snapshots,
        "trees": r.trees,
        "packs": r.packs,
        "packs_read": r.packs_read,
        "blobs_checked": r.blobs_checked,
        "blobs_read": r.blobs_read,
        "unindexed_blobs": r.unindexed_blobs,
        "bytes_read": r.bytes_read,
        "duration_ms": r.duration.as_millis() as u64,
        "problems": problems_json(&r.problems),
    }));
    Ok(Outcome::from_problems(r.problems.len()))
}

pub fn scrub(g: &Global, out: Output) -> Result<Outcome> {
    let backend = session::connect(g, chatvault_backend::Mode::Open)?;
    let r = chatvault_core::scrub(backend.as_ref())?;
    out.line(format!(
        "objects:          {} ({} hashed)",
        r.objects,
        output::bytes(r.bytes_read)
    ));
    out.line(format!(
        "duration:         {:.1} s",
        r.duration.as_secs_f64()
    ));
    print_problems(out, &r.problems);
    out.json(&json!({
        "objects": r.objects,
        "bytes_read": r.bytes_read,
        "duration_ms": r.duration.as_millis() as u64,
        "problems": problems_json(&r.problems),
    }));
    Ok(Outcome::from_problems(r.problems.len()))
}

pub(crate) fn print_problems(out: Output, problems: &[CheckProblem]) {
    if problems.is_empty() {
        out.line("no problems found");
        return;
    }
    out.line(format!("{} problems:", problems.len()));
    for p in problems {
        let snaps: Vec<String> = p.snapshots.iter().map(|s| s.short()).collect();
        let affected = if snaps.is_empty() {
            String::new()
        } else {
            format!(" (snapshots {})", snaps.join(", "))
        };
        out.line(format!(
            "{}: {}: {}{affected}",
            kind_name(p),
            output::printable(&p.object),
            output::printable(&p.message)
        ));
    }
}

fn kind_name(p: &CheckProblem) -> String {
    // `ProblemKind` is non-exhaustive; its Debug name in snake case is stable enough.
    let mut s = String::new();
    for (i, c) in format!("{:?}", p.kind).chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            s.push('_');
        }
        s.push(c.to_ascii_lowercase());
    }
    s
}

pub(crate) fn problems_json(problems: &[CheckProblem]) -> Value {
    problems
        .iter()
        .map(|p| {
            json!({
                "kind": kind_name(p),
                "object": p.object,
                "message": p.message,
                "snapshots": p.snapshots.iter().map(|s| s.to_hex()).collect::<Vec<_>>(),
            })
        })
        .collect()
}
