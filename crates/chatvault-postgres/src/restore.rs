//! Loading a backup set's records back into a PostgreSQL table: one channel's week into a
//! scratch table of the running server's database, or a whole table into a scratch
//! database.
//!
//! Two shapes of target:
//! - **an existing, empty table** (`CREATE TABLE restored (LIKE posts)`): each selected
//!   message's row as the set holds it (its last version at the backup time; with
//!   [`View::Applied`], deleted messages are left out, with [`View::Latest`] they are
//!   kept as the table had them), matched to the table's columns by name
//!   (`json_populate_recordset`). Records without a `row` (JSONL logs) are matched as
//!   they are;
//! - **a table that does not exist**: created with one row per selected record:
//!   `(tenant text, conversation text, seq bigint, ts_ms bigint, record jsonb)`, the raw
//!   history or any view.
//!
//! Invariants: everything is loaded in one transaction, committed only when every row
//! went in; an existing table must be empty (nothing in it is overwritten or mixed); the
//! table name is quoted as an identifier.

use chatvault_msglog::{Record, Selection, SetReader, View};

use crate::connect::PgConnect;
use crate::error::{Error, Result};
use crate::mapping::qualified;

/// Rows per INSERT.
const BATCH: usize = 500;

/// What a table restore loaded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TableRestoreReport {
    /// Rows inserted.
    pub rows: u64,
    /// Whether the table was created (one row per record) rather than filled.
    pub created: bool,
    /// Records read from the set.
    pub records: u64,
    /// Segments fetched from the repository.
    pub segments_read: u64,
}

/// Loads the selected records of `set` into `table` (see the module documentation).
pub fn restore_to_table(
    set: &SetReader<'_>,
    sel: &Selection,
    view: View,
    connect: &PgConnect,
    table: &str,
) -> Result<TableRestoreReport> {
    let mut client = connect.connect()?;
    let mut tx = client
        .transaction()
        .map_err(Error::query("starting the transaction"))?;
    let exists: bool = tx
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&qualified(table)])
        .map_err(Error::query("looking the table up"))?
        .get(0);
    let name = qualified(table);
    let mut report = TableRestoreReport {
        created: !exists,
        ..TableRestoreReport::default()
    };
    if exists {
        let any = tx
            .query_opt(&format!("SELECT 1 FROM {name} LIMIT 1"), &[])
            .map_err(Error::query("checking the table is empty"))?;
        if any.is_some() {
            return Err(Error::Target {
                table: table.to_owned(),
                reason: "the table is not empty: restore into an empty one".into(),
            });
        }
    } else {
        tx.batch_execute(&format!(
            "CREATE TABLE {name} (tenant text NOT NULL, conversation text NOT NULL, \
             seq bigint, ts_ms bigint, record jsonb NOT NULL)"
        ))
        .map_err(Error::query("creating the table"))?;
    }
    let insert = if exists {
        format!(
            "INSERT INTO {name} SELECT * FROM json_populate_recordset(NULL::{name}, $1::text::json)"
        )
    } else {
        format!(
            "INSERT INTO {name} (tenant, conversation, seq, ts_ms, record) \
             SELECT r->>'tenant', r->>'conversation', (r->>'seq')::bigint, \
                    (r->>'ts')::bigint, r->'record' \
             FROM json_array_elements($1::text::json) AS r"
        )
    };
    let statement = tx
        .prepare(&insert)
        .map_err(Error::query("preparing the insert"))?;
    let mut batch: Vec<serde_json::Value> = Vec::with_capacity(BATCH);
    let flush =
        |tx: &mut postgres::Transaction<'_>, batch: &mut Vec<serde_json::Value>| -> Result<u64> {
            if batch.is_empty() {
                return Ok(0);
            }
            let text = serde_json::Value::Array(std::mem::take(batch)).to_string();
            tx.execute(&statement, &[&text])
                .map_err(Error::query("inserting rows"))
        };
    let mut failed: Option<Error> = None;
    let stats = set.for_each_record(sel, view, &mut |tenant, conversation, r: &Record| {
        let value: serde_json::Value =
            serde_json::from_slice(&r.data).unwrap_or(serde_json::Value::Null);
        let row = if exists {
            match value.get("row") {
                Some(row) if row.is_object() => row.clone(),
                _ if value.is_object() => value,
                _ => return Ok(()), // not a JSON object: nothing to match to columns
            }
        } else {
            serde_json::json!({
                "tenant": tenant,
                "conversation": conversation,
                "seq": r.seq,
                "ts": r.ts,
                "record": if value.is_null() {
                    serde_json::Value::String(String::from_utf8_lossy(&r.data).into_owned())
                } else {
                    value
                },
            })
        };
        batch.push(row);
        if batch.len() >= BATCH {
            match flush(&mut tx, &mut batch) {
                Ok(n) => report.rows += n,
                Err(e) => {
                    failed = Some(e);
                    return Err(chatvault_msglog::Error::InvalidArgument {
                        what: "restore".into(),
                        reason: "the insert failed".into(),
                    });
                }
            }
        }
        Ok(())
    });
    if let Some(e) = failed {
        return Err(e);
    }
    let stats = stats?;
    report.rows += flush(&mut tx, &mut batch)?;
    report.records = stats.records;
    report.segments_read = stats.segments_read;
    tx.commit().map_err(Error::query("committing"))?;
    Ok(report)
}
