//! The mapping from a message table to streams: which relation, which columns are the
//! key, conversation, tenant, creation time, order, update time and delete marker; the
//! two presets; and the SQL built from them.
//!
//! Presets (schemas as published by the projects; see docs/OPERATIONS.md for the
//! sources):
//! - **Mattermost**: `posts` (`server/channels/db/migrations/postgres/000020_create_posts.up.sql`
//!   in mattermost/mattermost): key `id`, conversation `channelid`, creation `createat`,
//!   update `updateat` (set on every edit, pin and soft delete), delete marker `deleteat`;
//!   all times in ms.
//! - **Matrix Synapse**: `events` joined with `event_json` (the event's JSON) and with its
//!   first `redactions` row (`synapse/storage/schema/main/full_schemas` in
//!   element-hq/synapse): key `event_id`, conversation `room_id`, creation the local
//!   `received_ts` (else `origin_server_ts`), order `stream_ordering`; a redaction is a
//!   deletion, at the redaction's `received_ts`. Outliers (events not in a room's
//!   timeline) are left out.
//!
//! Invariants: every identifier from a mapping is quoted (`"…"`, quotes doubled), so a
//! column name is never SQL; a free query is the operator's own SQL, run read-only; the
//! [`Mapping::fingerprint`] changes whenever the SQL a stream's cursor depends on changes.

use crate::error::{Error, Result};

/// Where the messages are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Relation {
    /// A table or view, optionally schema-qualified (`public.posts`).
    Table(String),
    /// A SELECT whose result is the messages.
    Query(String),
}

/// Which columns of the relation mean what. Times are integers of milliseconds since the
/// epoch, or `timestamp`/`timestamptz` columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    /// The relation.
    pub relation: Relation,
    /// A message's unique key (primary key).
    pub key: String,
    /// The conversation (a stream each).
    pub conversation: String,
    /// The tenant, if the relation has one. By default, none.
    pub tenant: Option<String>,
    /// The creation time.
    pub created: String,
    /// The order of messages in a conversation. By default, the creation time.
    pub order: Option<String>,
    /// The last update time, set by every edit and deletion. By default, none (rows
    /// never change once written).
    pub updated: Option<String>,
    /// The delete marker: a row is deleted when it is not NULL, 0 or false. By default,
    /// none.
    pub deleted: Option<String>,
}

/// A known chat server's schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    /// Mattermost's `posts`.
    Mattermost,
    /// Matrix Synapse's `events` + `event_json` + `redactions`.
    Synapse,
}

impl Preset {
    /// The preset a name (`mattermost`, `synapse`) stands for.
    pub fn from_name(name: &str) -> Result<Preset> {
        match name {
            "mattermost" => Ok(Preset::Mattermost),
            "synapse" | "matrix-synapse" => Ok(Preset::Synapse),
            other => Err(Error::Mapping(format!(
                "unknown preset {other:?}: use mattermost or synapse"
            ))),
        }
    }

    /// The mapping.
    pub fn mapping(self) -> Mapping {
        match self {
            Preset::Mattermost => Mapping {
                relation: Relation::Table("posts".into()),
                key: "id".into(),
                conversation: "channelid".into(),
                tenant: None,
                created: "createat".into(),
                order: None,
                updated: Some("updateat".into()),
                deleted: Some("deleteat".into()),
            },
            Preset::Synapse => Mapping {
                relation: Relation::Query(SYNAPSE_QUERY.into()),
                key: "event_id".into(),
                conversation: "room_id".into(),
                tenant: None,
                created: "received_at".into(),
                order: Some("stream_ordering".into()),
                updated: Some("changed_at".into()),
                deleted: Some("redacted_by".into()),
            },
        }
    }
}

/// Synapse's events with their JSON and their first redaction.
const SYNAPSE_QUERY: &str = "\
SELECT e.event_id, e.room_id, e.type, e.sender, e.state_key, e.origin_server_ts, \
       COALESCE(e.received_ts, e.origin_server_ts) AS received_at, \
       e.stream_ordering, e.topological_ordering, ej.format_version, \
       ej.internal_metadata, ej.json, rd.redacted_by, rd.redacted_at, \
       GREATEST(COALESCE(e.received_ts, e.origin_server_ts), rd.redacted_at) AS changed_at \
FROM events e \
JOIN event_json ej ON ej.event_id = e.event_id \
LEFT JOIN LATERAL ( \
    SELECT r.event_id AS redacted_by, \
           COALESCE(r.received_ts, e.received_ts, e.origin_server_ts) AS redacted_at \
    FROM redactions r WHERE r.redacts = e.event_id \
    ORDER BY r.received_ts NULLS LAST, r.event_id LIMIT 1) rd ON true \
WHERE NOT e.outlier";

/// An identifier, quoted.
pub(crate) fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A possibly schema-qualified name, each part quoted.
pub(crate) fn qualified(name: &str) -> String {
    name.split('.').map(ident).collect::<Vec<_>>().join(".")
}

/// How a time column is turned into ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TimeKind {
    Integer,
    Timestamp,
}

/// The SQL of a mapping, with the time columns' kinds probed from the database.
#[derive(Debug, Clone)]
pub(crate) struct Sql {
    /// `FROM (…) AS s`.
    pub from: String,
    /// Selected: key, conversation, tenant (or NULL), created ms, order, changed ms,
    /// deleted, the row as JSON.
    pub columns: String,
    pub conversation: String,
    pub tenant: Option<String>,
    /// The creation and update time expressions, for conditions and maxima that can use
    /// an index on each (`updated > $1 OR created > $1`).
    pub times: Vec<String>,
    pub order: String,
    pub key: String,
}

impl Mapping {
    /// Checks the names are non-empty.
    pub fn check(&self) -> Result<()> {
        let names = [
            ("key", Some(&self.key)),
            ("conversation", Some(&self.conversation)),
            ("created", Some(&self.created)),
            ("tenant", self.tenant.as_ref()),
            ("order", self.order.as_ref()),
            ("updated", self.updated.as_ref()),
            ("deleted", self.deleted.as_ref()),
        ];
        for (what, n) in names {
            if n.is_some_and(|n| n.trim().is_empty()) {
                return Err(Error::Mapping(format!("the {what} column has no name")));
            }
        }
        match &self.relation {
            Relation::Table(t) if t.trim().is_empty() => {
                Err(Error::Mapping("no table named".into()))
            }
            Relation::Query(q) if q.trim().is_empty() => {
                Err(Error::Mapping("an empty query".into()))
            }
            _ => Ok(()),
        }
    }

    pub(crate) fn relation_sql(&self) -> String {
        match &self.relation {
            Relation::Table(t) => format!("(SELECT * FROM {}) AS s", qualified(t)),
            Relation::Query(q) => format!("({q}) AS s"),
        }
    }

    /// BLAKE3 of everything the cursors depend on: a stream taken with another mapping
    /// cannot continue from its cursor.
    pub fn fingerprint(&self) -> [u8; 32] {
        let text = format!(
            "chatvault-postgres mapping v1\n{:?}\n{}\n{}\n{:?}\n{}\n{:?}\n{:?}\n{:?}",
            self.relation,
            self.key,
            self.conversation,
            self.tenant,
            self.created,
            self.order,
            self.updated,
            self.deleted
        );
        *blake3::hash(text.as_bytes()).as_bytes()
    }

    /// Builds the SQL, asking the database for the time columns' types.
    pub(crate) fn sql(&self, client: &mut postgres::Client) -> Result<Sql> {
        self.check()?;
        let from = self.relation_sql();
        let col = |n: &str| format!("s.{}", ident(n));
        let mut time = |n: &str| -> Result<String> {
            let probe = format!("SELECT {} FROM {from} LIMIT 0", col(n));
            let st = client.prepare(&probe).map_err(|e| {
                Error::Mapping(format!(
                    "column {n:?} of the relation: {}",
                    e.as_db_error()
                        .map_or_else(|| e.to_string(), |d| d.message().to_owned())
                ))
            })?;
            let ty = st.columns()[0].type_();
            let kind = match ty.name() {
                "int2" | "int4" | "int8" | "numeric" => TimeKind::Integer,
                "timestamp" | "timestamptz" => TimeKind::Timestamp,
                other => {
                    return Err(Error::Mapping(format!(
                        "column {n:?} is {other}: a time must be an integer of ms or a timestamp"
                    )));
                }
            };
            Ok(match kind {
                TimeKind::Integer => format!("({})::bigint", col(n)),
                TimeKind::Timestamp => {
                    format!("(floor(extract(epoch from {}) * 1000))::bigint", col(n))
                }
            })
        };
        let created = time(&self.created)?;
        let order = match &self.order {
            Some(o) => time(o)?,
            None => created.clone(),
        };
        let (changed, times) = match &self.updated {
            Some(u) => {
                let u = time(u)?;
                (
                    format!("GREATEST({u}, {created})"),
                    vec![u, created.clone()],
                )
            }
            None => (created.clone(), vec![created.clone()]),
        };
        let deleted = match &self.deleted {
            Some(d) => format!(
                "({c} IS NOT NULL AND {c}::text NOT IN ('0', 'false'))",
                c = col(d)
            ),
            None => "false".into(),
        };
        let conversation = format!("{}::text", col(&self.conversation));
        let tenant = self.tenant.as_ref().map(|t| format!("{}::text", col(t)));
        let key = format!("{}::text", col(&self.key));
        let columns = format!(
            "{key}, {conversation}, {}, {created}, {order}, {changed}, {deleted}, \
             row_to_json(s)::text",
            tenant.as_deref().unwrap_or("NULL::text")
        );
        let sql = Sql {
            from,
            columns,
            conversation,
            tenant,
            times,
            order,
            key,
        };
        // Every column must exist: one query that selects them all, and no row.
        let probe = format!("SELECT {} FROM {} LIMIT 0", sql.columns, sql.from);
        client.prepare(&probe).map_err(|e| {
            Error::Mapping(
                e.as_db_error()
                    .map_or_else(|| e.to_string(), |d| d.message().to_owned()),
            )
        })?;
        Ok(sql)
    }
}

impl Sql {
    /// `changed > $n`, written so an index on each time column can serve it.
    fn changed_after(&self, param: &str) -> String {
        let parts: Vec<String> = self
            .times
            .iter()
            .map(|t| format!("{t} > {param}"))
            .collect();
        format!("({})", parts.join(" OR "))
    }

    /// The rows of one conversation changed after `$2` (ms), in order.
    pub fn changes(&self) -> String {
        let tenant = match &self.tenant {
            Some(t) => format!(" AND {t} = $3"),
            None => String::new(),
        };
        format!(
            "SELECT {} FROM {} WHERE {} = $1 AND {}{tenant} ORDER BY {}, {}",
            self.columns,
            self.from,
            self.conversation,
            self.changed_after("$2"),
            self.order,
            self.key
        )
    }

    /// The conversations (and tenants) with a row changed after `$1`.
    pub fn conversations(&self) -> String {
        format!(
            "SELECT DISTINCT {}, {} FROM {} WHERE {}",
            self.conversation,
            self.tenant.as_deref().unwrap_or("NULL::text"),
            self.from,
            self.changed_after("$1")
        )
    }

    /// The latest change time in the relation (NULL when it is empty).
    pub fn latest_change(&self) -> String {
        let maxima: Vec<String> = self
            .times
            .iter()
            .map(|t| format!("(SELECT max({t}) FROM {})", self.from))
            .collect();
        format!("GREATEST({})", maxima.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(ident("createat"), "\"createat\"");
        assert_eq!(
            ident("a\"; DROP TABLE x; --"),
            "\"a\"\"; DROP TABLE x; --\""
        );
        assert_eq!(qualified("public.posts"), "\"public\".\"posts\"");
    }

    #[test]
    fn presets_and_fingerprints() {
        assert_eq!(Preset::from_name("mattermost").unwrap(), Preset::Mattermost);
        assert_eq!(Preset::from_name("synapse").unwrap(), Preset::Synapse);
        assert!(Preset::from_name("slack").is_err());
        let m = Preset::Mattermost.mapping();
        m.check().unwrap();
        assert_eq!(m.relation_sql(), "(SELECT * FROM \"posts\") AS s");
        let mut other = m.clone();
        other.updated = None;
        assert_ne!(m.fingerprint(), other.fingerprint());
        assert_eq!(m.fingerprint(), Preset::Mattermost.mapping().fingerprint());
        let mut bad = m;
        bad.key = " ".into();
        assert!(bad.check().is_err());
    }
}
