//! `chatvault msglog backup` from another layout of JSONL logs (`--layout`, the record
//! pointers) or from a PostgreSQL message table (`--postgres`), and `msglog restore
//! --postgres URL --table T`. The default layout stays in `msglog.rs`.

use std::io::Read;

use anyhow::{Context, Result, anyhow, bail};
use chatvault_msglog::{
    BackupOptions, BackupSession, LayoutOptions, LayoutReport, LogLayout, RecordFields, SetReader,
    TsFormat, View,
};
use chatvault_postgres::{Clock, Mapping, PgConnect, PgSource, PgSourceOptions, Preset, Relation};
use serde_json::json;

use crate::args::{Global, LayoutArgs, MsglogBackupArgs, MsglogRestoreArgs, PostgresArgs};
use crate::exit::Outcome;
use crate::output::{self, Output};
use crate::session;

/// Whether the backup needs this module (a layout or a database); otherwise `msglog.rs`
/// backs up the default layout as it always did.
pub fn wanted(a: &MsglogBackupArgs) -> bool {
    a.layout.is_set() || a.postgres.postgres.is_some()
}

/// The layout the options describe.
pub fn layout(a: &LayoutArgs) -> Result<LogLayout> {
    let mut fields = RecordFields::default();
    if let Some(p) = &a.seq_pointer {
        fields.seq.clone_from(p);
    }
    if let Some(p) = &a.ts_pointer {
        fields.ts.clone_from(p);
    }
    if let Some(f) = &a.ts_format {
        fields.ts_format = TsFormat::from_name(f)?;
    }
    fields.conversation.clone_from(&a.conversation_pointer);
    fields.tenant.clone_from(&a.tenant_pointer);
    Ok(LogLayout::new(&LayoutOptions {
        patterns: a.patterns.clone(),
        fields,
        default_tenant: a.default_tenant.clone(),
    })?)
}

/// The mapping the options describe: a preset, or a table or query with its columns.
pub fn mapping(a: &PostgresArgs) -> Result<Mapping> {
    if let Some(p) = &a.pg_preset {
        let mut m = Preset::from_name(p)?.mapping();
        let custom = [
            &a.pg_table,
            &a.pg_query,
            &a.pg_key,
            &a.pg_conversation,
            &a.pg_created,
        ];
        if custom.iter().any(|o| o.is_some()) {
            bail!(
                "--pg-preset sets the table and its columns: leave out --pg-table, --pg-query, --pg-key, --pg-conversation and --pg-created"
            );
        }
        if a.pg_tenant.is_some() {
            m.tenant.clone_from(&a.pg_tenant);
        }
        return Ok(m);
    }
    let relation = match (&a.pg_table, &a.pg_query) {
        (Some(t), None) => Relation::Table(t.clone()),
        (None, Some(q)) => Relation::Query(q.clone()),
        _ => bail!(
            "--postgres needs --pg-preset (mattermost, synapse), or --pg-table or --pg-query with --pg-key, --pg-conversation and --pg-created"
        ),
    };
    let need = |o: &Option<String>, flag: &str| {
        o.clone()
            .ok_or_else(|| anyhow!("--postgres with a table or query needs {flag}"))
    };
    Ok(Mapping {
        relation,
        key: need(&a.pg_key, "--pg-key")?,
        conversation: need(&a.pg_conversation, "--pg-conversation")?,
        tenant: a.pg_tenant.clone(),
        created: need(&a.pg_created, "--pg-created")?,
        order: a.pg_order.clone(),
        updated: a.pg_updated.clone(),
        deleted: a.pg_deleted.clone(),
    })
}

/// The source options the arguments describe.
pub fn source_options(a: &PostgresArgs) -> Result<PgSourceOptions> {
    let mut opts = PgSourceOptions::new(mapping(a)?);
    opts.tenant.clone_from(&a.pg_tenant_name);
    if let Some(s) = a.pg_settle_secs {
        opts.settle_ms = i64::try_from(s.saturating_mul(1000)).unwrap_or(i64::MAX);
    }
    opts.clock = match a.pg_clock.as_deref() {
        None | Some("database") => Clock::Database,
        Some("table") => Clock::Table,
        Some(other) => bail!("--pg-clock {other:?}: database or table"),
    };
    Ok(opts)
}

fn connect(
    url: &crate::args::Secret,
    password_file: Option<&std::path::Path>,
) -> Result<PgConnect> {
    Ok(PgConnect::new(&url.0, password_file)?)
}

pub fn backup(g: &Global, out: Output, a: &MsglogBackupArgs) -> Result<Outcome> {
    let repo = session::open(g)?;
    let dir = a
        .dir
        .as_ref()
        .map(|d| {
            std::fs::canonicalize(d).with_context(|| format!("data directory {}", d.display()))
        })
        .transpose()?;
    let db = a
        .postgres
        .postgres
        .as_ref()
        .map(|u| connect(u, a.postgres.postgres_password_file.as_deref()))
        .transpose()?;
    let name = match (&a.name, &dir, &db) {
        (Some(n), _, _) => n.clone(),
        (None, _, Some(db)) => db.database(),
        (None, Some(d), None) => d
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "chat".into()),
        (None, None, None) => bail!("give a data directory or --postgres"),
    };
    let opts = BackupOptions {
        name,
        host: a.record.host.clone(),
        tags: a.record.tags.clone(),
        full: a.full,
        parent: session::parent_choice(&repo, &a.parent)?,
        ..BackupOptions::default()
    };
    let mut s = BackupSession::start(&repo, opts)?;
    let mut layout_report: Option<LayoutReport> = None;
    let mut pg_json = serde_json::Value::Null;
    let mut exclude = a.exclude.clone();
    if let Some(db) = &db {
        if a.layout.is_set() {
            bail!("--postgres takes the messages from the database: leave out the layout options");
        }
        let source = PgSource::open(db, source_options(&a.postgres)?)?;
        let snapshot_ms = source.snapshot_time_ms();
        s.backup_changes(&source)?;
        source.finish()?;
        pg_json = json!({"database": db.target(), "snapshot_time_ms": snapshot_ms});
    } else if let Some(dir) = &dir {
        let layout = layout(&a.layout)?;
        let r = s.backup_logs_layout(dir, &layout)?;
        for w in &r.warnings {
            out.warn(format!("{}: {}", w.path, w.message));
        }
        if a.layout.strict && !r.warnings.is_empty() {
            bail!(
                "--strict: {} streams do not fit the layout (see the warnings); no set stored",
                r.warnings.len()
            );
        }
        exclude.extend(r.exclude_patterns());
        layout_report = Some(r);
    }
    // With --postgres the database holds the messages, and all of DIR is files.
    if let Some(dir) = &dir {
        s.backup_files(dir, &exclude)?;
    }
    for spec in &a.dumps {
        let (name, file) = spec
            .split_once('=')
            .ok_or_else(|| anyhow!("--dump {spec:?}: expected NAME=FILE"))?;
        let reader: Box<dyn Read + Send> = if file == "-" {
            Box::new(std::io::stdin())
        } else {
            Box::new(std::fs::File::open(file).with_context(|| format!("dump file {file}"))?)
        };
        s.backup_dump(name, reader, None)?;
    }
    let r = s.commit()?;
    super::msglog::print_backup(if g.json { out.silenced() } else { out }, &r);
    let mut doc = output::take_report().unwrap_or_else(|| json!({}));
    if let Some(l) = &layout_report {
        for p in &l.patterns {
            out.line(format!("layout {}: {} streams", p.pattern, p.streams));
        }
        if !l.warnings.is_empty() {
            out.line(format!(
                "{} streams with warnings (above)",
                l.warnings.len()
            ));
        }
        doc["layout"] = json!({
            "patterns": l.patterns.iter().map(|p| json!({"pattern": p.pattern, "streams": p.streams})).collect::<Vec<_>>(),
            "warnings": l.warnings.iter().map(|w| json!({
                "path": w.path,
                "message": w.message,
                "records": w.records,
                "checked": w.checked,
                "without_seq": w.without_seq,
                "without_ts": w.without_ts,
                "not_json": w.not_json,
                "ts_backwards": w.ts_backwards,
                "other_conversation": w.other_conversation,
            })).collect::<Vec<_>>(),
        });
    }
    if !pg_json.is_null() {
        out.line(format!(
            "postgres {}: {} conversations",
            pg_json["database"].as_str().unwrap_or(""),
            r.logs.streams
        ));
        doc["postgres"] = pg_json;
    }
    out.json(&doc);
    Ok(if r.problems.is_empty() {
        Outcome::Complete
    } else {
        eprintln!(
            "chatvault: backup incomplete: {} entries could not be read",
            r.problems.len()
        );
        Outcome::Partial
    })
}

/// `msglog restore --postgres URL --table T`: the selected records into a table.
pub fn restore(
    g: &Global,
    out: Output,
    a: &MsglogRestoreArgs,
    set: &SetReader<'_>,
    sel: &chatvault_msglog::Selection,
) -> Result<Outcome> {
    let (Some(url), Some(table)) = (&a.postgres, &a.table) else {
        bail!("--postgres needs --table");
    };
    let db = connect(url, a.postgres_password_file.as_deref())?;
    let view = if a.applied {
        View::Applied
    } else {
        View::Latest
    };
    let start = std::time::Instant::now();
    let r = chatvault_postgres::restore_to_table(set, sel, view, &db, table)?;
    let _ = g;
    out.line(format!(
        "restored {} rows of backup set {} into {} at {} ({}) in {} ms; {} segments fetched",
        r.rows,
        set.snapshot().id.short(),
        table,
        db.target(),
        if r.created {
            "created: one row per record"
        } else {
            "existing table: one row per message"
        },
        start.elapsed().as_millis(),
        r.segments_read,
    ));
    out.json(&json!({
        "snapshot": set.snapshot().id.to_hex(),
        "database": db.target(),
        "table": table,
        "created": r.created,
        "rows": r.rows,
        "records": r.records,
        "segments_read": r.segments_read,
        "duration_ms": start.elapsed().as_millis() as u64,
    }));
    Ok(Outcome::Complete)
}
