//! The log kinds, defined once.
//!
//! Every table is a [`TableDef`]. A log kind (API call, sync run, mail, …) is written once with
//! `log_kind!` in `kinds.rs`: that single definition yields the row struct, its RowBinary
//! encoding, the attribute names the router reads (`encode_record`) and the emitter writes,
//! the filterable and searchable columns the API offers, the `errors` mapping, and what the
//! server derives from it (DDL, data dictionary, dashboards).

pub mod hex;
mod kinds;
pub mod labels;
pub mod row_binary;
mod severity;
pub mod value;

pub use kinds::*;
pub use labels::{LabelValue, MetricLabel};
pub use severity::{ERROR, INFO, WARN, severity_name, severity_number, severity_text};
pub use value::{COERCIONS, FieldValue, Raw, RecordView, RowId, Source, Ts, attr};

use std::time::Duration;

/// Whether a router must find a column's value for the row to be accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    Required,
    Optional,
}

/// What the API and dashboards may do with a column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Equality (and for numbers, range) filter; such columns lead the sort key.
    Filter,
    /// Keyword search, backed by a token bloom-filter skip index.
    Search,
    /// Shown, not filtered.
    Plain,
}

#[derive(Debug, Clone, Copy)]
pub struct ColumnDef {
    pub name: &'static str,
    /// ClickHouse type, with its codec or default expression when it has one.
    pub ch_type: &'static str,
    pub doc: &'static str,
    /// Where the router finds the value; `None` for tables logbook does not route into.
    pub source: Option<Source>,
    pub presence: Presence,
    pub role: Role,
    /// The only values accepted, when the column is an enumeration.
    pub one_of: &'static [&'static str],
    /// Attribute names the column was read from before (still read, counted as deprecated).
    pub renamed_from: &'static [&'static str],
    /// Old spellings of `one_of` values, with the value each now stands for (still accepted,
    /// counted as deprecated).
    pub old_values: &'static [(&'static str, &'static str)],
}

impl ColumnDef {
    /// The type alone, without codec or default: what `DESCRIBE TABLE` reports.
    pub fn type_name(&self) -> &'static str {
        let end = [" CODEC(", " DEFAULT ", " MATERIALIZED ", " ALIAS "]
            .iter()
            .filter_map(|marker| self.ch_type.find(marker))
            .min()
            .unwrap_or(self.ch_type.len());
        &self.ch_type[..end]
    }
}

#[derive(Debug, Clone, Copy)]
pub struct IndexDef {
    pub name: &'static str,
    pub expr: &'static str,
    pub kind: &'static str,
    pub granularity: u32,
}

/// How a kind's error rows become rows of the `errors` table (SQL over the kind's columns).
#[derive(Debug, Clone, Copy)]
pub struct ErrorMapping {
    pub when: &'static str,
    pub source: &'static str,
    pub code: &'static str,
    pub message: &'static str,
    pub severity: &'static str,
}

#[derive(Debug)]
pub struct TableDef {
    pub name: &'static str,
    pub doc: &'static str,
    /// The reference document and screen this table replaces.
    pub reference: &'static str,
    /// For log kinds: the `event.name` that routes a record here.
    pub event_name: Option<&'static str>,
    /// Whether the columns every log kind shares ([`COMMON_COLUMNS`]) come first.
    pub common_columns: bool,
    pub columns: &'static [ColumnDef],
    pub indexes: &'static [IndexDef],
    pub engine: &'static str,
    pub partition_by: &'static str,
    pub primary_key: Option<&'static str>,
    pub order_by: &'static str,
    /// A `DateTime` expression the TTL counts from.
    pub ttl_from: &'static str,
    /// Default time to live; `None` for tables kept by size (server logs) or not at all.
    pub default_ttl: Option<Duration>,
    pub settings: &'static [(&'static str, &'static str)],
    pub errors: Option<ErrorMapping>,
    /// For log kinds: the columns that label the kind's `logbook_<table>_total` counter.
    pub metric_labels: &'static [MetricLabel],
}

impl TableDef {
    /// Whether a span can make a row of this kind: not when a required column comes from a
    /// log record's body, which spans do not have.
    pub fn from_spans(&self) -> bool {
        !self
            .all_columns()
            .any(|c| c.presence == Presence::Required && c.source == Some(Source::Body))
    }

    /// Every attribute name the kind reads, current and deprecated.
    pub fn attribute_names(&self) -> impl Iterator<Item = &'static str> + use<> {
        self.all_columns().flat_map(|c| {
            let current = match c.source {
                Some(Source::Attr(name)) => Some(name),
                _ => None,
            };
            current.into_iter().chain(c.renamed_from.iter().copied())
        })
    }

    pub fn all_columns(&self) -> impl Iterator<Item = &'static ColumnDef> + use<> {
        let common: &'static [ColumnDef] = if self.common_columns {
            COMMON_COLUMNS
        } else {
            &[]
        };
        common.iter().chain(self.columns.iter())
    }

    pub fn column(&self, name: &str) -> Option<&'static ColumnDef> {
        self.all_columns().find(|c| c.name == name)
    }
}

/// A retention of `n` days.
pub const fn days(n: u64) -> Option<Duration> {
    Some(Duration::from_secs(n * 86_400))
}

/// Settings of every table logbook inserts into. `index_granularity`: granules of 2,048 rows
/// (a quarter of ClickHouse's default), because these tables are read a page of newest rows or
/// one trace at a time, and a page reads at least a granule from every part its time window
/// touches; on 10 M rows in 50 parts a list page read 2.3 to 5 times fewer rows and took 20-30 %
/// less engine time, a filtered search 34 % less, at 4 times the marks (docs/benchmarks.md,
/// "Schema version 7"). ClickHouse cannot change it for an existing table, so tables created
/// before keep theirs. `ttl_only_drop_parts`: retention is by whole days and tables are
/// partitioned by day, so expired data leaves as whole parts instead of being rewritten row by
/// row. `non_replicated_deduplication_window`: a retried insert with the same deduplication
/// token is stored once.
pub const INSERTED_TABLE_SETTINGS: &[(&str, &str)] = &[
    ("index_granularity", "2048"),
    ("ttl_only_drop_parts", "1"),
    ("non_replicated_deduplication_window", "1000"),
];

/// Columns every log kind's table starts with, for correlation and multi-tenancy.
pub const COMMON_COLUMNS: &[ColumnDef] = &[
    common(
        "id",
        "UUID",
        "Unique row id (UUIDv7: sorts by creation time). The sender may set it as `logbook.id`; otherwise it is derived from the record's place in logbook's durable queue, so a replayed record keeps its id.",
        Source::RowId,
        Role::Plain,
    ),
    common(
        "time",
        "DateTime64(9, 'UTC') CODEC(Delta(8), ZSTD(1))",
        "When it happened (the record's timestamp, UTC, nanoseconds).",
        Source::Time,
        Role::Filter,
    ),
    common(
        "tenant",
        "LowCardinality(String)",
        "Customer tenant the record belongs to (`logbook.tenant`, on the record or its resource); empty for platform-wide records.",
        Source::Attr("logbook.tenant"),
        Role::Filter,
    ),
    common(
        "service",
        "LowCardinality(String)",
        "Emitting service (`service.name` resource attribute).",
        Source::ServiceName,
        Role::Filter,
    ),
    common(
        "environment",
        "LowCardinality(String)",
        "Deployment environment (`deployment.environment.name` resource attribute).",
        Source::Environment,
        Role::Filter,
    ),
    common(
        "trace_id",
        "String CODEC(ZSTD(1))",
        "Trace id (hex) for joining with `otel_traces.TraceId`; empty when the record had none.",
        Source::TraceId,
        Role::Filter,
    ),
    common(
        "span_id",
        "String CODEC(ZSTD(1))",
        "Span id (hex) for joining with `otel_traces.SpanId`.",
        Source::SpanId,
        Role::Plain,
    ),
];

const fn common(
    name: &'static str,
    ch_type: &'static str,
    doc: &'static str,
    source: Source,
    role: Role,
) -> ColumnDef {
    ColumnDef {
        name,
        ch_type,
        doc,
        source: Some(source),
        presence: Presence::Optional,
        role,
        one_of: &[],
        renamed_from: &[],
        old_values: &[],
    }
}

/// Why a record that names a log kind could not become a row of that kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{table}.{column}: {reason}")]
pub struct Rejection {
    pub table: &'static str,
    pub column: &'static str,
    pub reason: String,
}

/// A deprecated attribute name or value a record used (see [`ColumnDef::renamed_from`] and
/// [`ColumnDef::old_values`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deprecated {
    pub table: &'static str,
    pub column: &'static str,
    pub used: &'static str,
    pub instead: &'static str,
}

/// A log kind: one typed table, its row struct, and the row's RowBinary encoding.
pub trait LogKind: serde::Serialize + serde::de::DeserializeOwned + Send + Sync + Sized {
    const TABLE: &'static TableDef;

    /// One line a person reads in a log viewer, e.g. `POST https://… → 502 (billing-bot)`.
    fn summary(&self) -> String;

    /// The OpenTelemetry severity number (1–24) the row's outcome deserves.
    fn severity(&self) -> u8;

    /// Appends the RowBinary row a record makes, or names the first column that is missing
    /// or malformed (and appends nothing).
    fn encode_record(record: &dyn RecordView, out: &mut Vec<u8>) -> Result<(), Rejection>;

    /// Appends this row as RowBinary.
    fn write_row(&self, out: &mut Vec<u8>);

    /// Takes one RowBinary row off the front of `input`; `None` if it ends too early.
    fn read_row(input: &mut &[u8]) -> Option<Self>;

    /// The row a record makes, as a struct.
    fn from_record(record: &dyn RecordView) -> Result<Self, Rejection> {
        let mut bytes = Vec::new();
        Self::encode_record(record, &mut bytes)?;
        Ok(Self::read_row(&mut bytes.as_slice()).expect("an encoded row reads back"))
    }
}

/// Writes one column's value from a record, applying its presence and `one_of` rules.
pub fn encode<T: FieldValue>(
    record: &dyn RecordView,
    table: &'static TableDef,
    column: &'static ColumnDef,
    out: &mut Vec<u8>,
) -> Result<(), Rejection> {
    let reject = |reason: String| Rejection {
        table: table.name,
        column: column.name,
        reason,
    };
    let source = column.source.expect("routed columns have a source");
    let mut raw = record.get(source);
    if raw.is_none() {
        for &old in column.renamed_from {
            if let Some(value) = record.get(Source::Attr(old)) {
                let Source::Attr(instead) = source else {
                    unreachable!("only attributes are renamed")
                };
                record.deprecated(Deprecated {
                    table: table.name,
                    column: column.name,
                    used: old,
                    instead,
                });
                raw = Some(value);
                break;
            }
        }
    }
    let Some(mut raw) = raw else {
        return match column.presence {
            Presence::Required => Err(reject(format!("missing {}", describe(source)))),
            Presence::Optional => {
                T::default().write(out);
                Ok(())
            }
        };
    };
    if let Raw::Str(s) = &raw
        && !column.one_of.is_empty()
        && !column.one_of.contains(&s.as_ref())
    {
        let Some(&(used, instead)) = column.old_values.iter().find(|(old, _)| *old == s.as_ref())
        else {
            return Err(reject(format!(
                "{s:?} is not one of {}",
                column.one_of.join(", ")
            )));
        };
        record.deprecated(Deprecated {
            table: table.name,
            column: column.name,
            used,
            instead,
        });
        raw = Raw::Str(instead.into());
    }
    T::write_raw(raw, out).map_err(|e| reject(format!("{}: {e}", describe(source))))
}

fn describe(source: Source) -> String {
    match source {
        Source::Attr(name) => format!("attribute {name}"),
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_name_strips_codec_and_default() {
        let c = COMMON_COLUMNS.iter().find(|c| c.name == "time").unwrap();
        assert_eq!(c.type_name(), "DateTime64(9, 'UTC')");
    }

    #[test]
    fn every_kind_sorts_by_filter_columns_then_time() {
        for kind in KINDS {
            let keys: Vec<_> = kind
                .order_by
                .trim_matches(|c| c == '(' || c == ')')
                .split(", ")
                .collect();
            assert_eq!(keys.last(), Some(&"time"), "{}", kind.name);
            for key in &keys {
                let column = kind
                    .column(key)
                    .unwrap_or_else(|| panic!("{}: {key}", kind.name));
                assert_eq!(
                    column.role,
                    Role::Filter,
                    "{}.{key} leads the sort key",
                    kind.name
                );
            }
        }
    }

    #[test]
    fn every_kind_has_documented_columns_with_sources() {
        for kind in KINDS {
            assert!(kind.event_name.is_some());
            for column in kind.all_columns() {
                assert!(!column.doc.is_empty(), "{}.{}", kind.name, column.name);
                assert!(column.source.is_some(), "{}.{}", kind.name, column.name);
            }
        }
    }
}
