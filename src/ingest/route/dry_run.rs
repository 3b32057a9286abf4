//! The dry run: what each record of a request would become, routed exactly as the pipeline
//! routes it, and stored nowhere. `logbook check-record` and `POST /v1/dry-run/logs` (and
//! `/v1/dry-run/traces`) answer with it.

use serde::Serialize;
use serde_json::{Map, Value};

use super::{Origin, Rows, event_name, find_str, findings::Finding};
use crate::ingest::decode::{LogsRequest, TracesRequest};
use crate::schema::{KINDS, LogKind, RowVisitor, Ts, TypedRow};

/// What one log record or span would become.
#[derive(Debug, Serialize)]
pub struct RecordReport {
    /// Its position in the request, from 0 (log records and spans counted apart).
    pub record: u64,
    pub event_name: String,
    /// The tables it would be stored in: `otel_logs` or `otel_traces` always, and a typed one
    /// when it fits its kind.
    pub tables: Vec<TableReport>,
    /// Why it would get no typed row (`logbook.rejected`).
    pub rejected: Vec<String>,
    /// What would be ignored or read under an old name (`logbook.warnings`).
    pub warnings: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct TableReport {
    pub table: &'static str,
    /// For a typed table: the columns the record fills, with their values.
    #[serde(skip_serializing_if = "Map::is_empty")]
    pub columns: Map<String, Value>,
    /// For a typed table: the columns it leaves empty (their type's default).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub empty: Vec<&'static str>,
}

/// The whole answer.
#[derive(Debug, Serialize)]
pub struct Report {
    pub records: Vec<RecordReport>,
    /// Records that would get no typed row.
    pub rejected: usize,
}

/// The dry run of a log request.
pub fn logs(request: &LogsRequest<'_>) -> Report {
    let events: Vec<String> = request
        .resource_logs
        .iter()
        .flat_map(|r| &r.scope_logs)
        .flat_map(|s| &s.log_records)
        .map(|record| event_name(record).to_owned())
        .collect();
    let mut rows = dry_rows();
    super::logs(request, ORIGIN, &mut rows);
    report(rows, events, "otel_logs")
}

/// The dry run of a trace request.
pub fn traces(request: &TracesRequest<'_>) -> Report {
    let events: Vec<String> = request
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| &s.spans)
        .map(|span| find_str(&span.attributes, "event.name").to_owned())
        .collect();
    let mut rows = dry_rows();
    super::traces(request, ORIGIN, &mut rows);
    report(rows, events, "otel_traces")
}

/// Ids as if the request were first in an empty queue.
const ORIGIN: Origin = Origin {
    queue_id: 0,
    position: 0,
};

fn dry_rows() -> Rows {
    Rows {
        made: Some(Vec::new()),
        ..Rows::default()
    }
}

fn report(rows: Rows, events: Vec<String>, base: &'static str) -> Report {
    let mut records: Vec<RecordReport> = events
        .into_iter()
        .enumerate()
        .map(|(i, event_name)| RecordReport {
            record: i as u64,
            event_name,
            tables: vec![TableReport {
                table: base,
                columns: Map::new(),
                empty: Vec::new(),
            }],
            rejected: Vec::new(),
            warnings: Vec::new(),
        })
        .collect();
    let mut cursors: Vec<&[u8]> = rows.typed.iter().map(|t| t.bytes.as_slice()).collect();
    for &(record, kind) in rows.made.iter().flatten() {
        let row = TypedRow::read(kind, &mut cursors[kind]).expect("a made row reads back");
        let mut table = TableReport {
            table: KINDS[kind].name,
            columns: Map::new(),
            empty: Vec::new(),
        };
        row.visit(&mut Columns(&mut table));
        records[record as usize].tables.push(table);
    }
    for Finding {
        record, problem, ..
    } in &rows.findings
    {
        let record = &mut records[*record as usize];
        let list = if problem.rejects() {
            &mut record.rejected
        } else {
            &mut record.warnings
        };
        list.push(problem.to_string());
    }
    let rejected = records.iter().filter(|r| !r.rejected.is_empty()).count();
    Report { records, rejected }
}

/// Sorts a typed row's columns into filled and empty ones.
struct Columns<'a>(&'a mut TableReport);

impl RowVisitor for Columns<'_> {
    fn visit<T: LogKind>(&mut self, row: &T) {
        let Ok(Value::Object(values)) = serde_json::to_value(row) else {
            return;
        };
        for column in T::TABLE.all_columns() {
            let value = values.get(column.name).cloned().unwrap_or(Value::Null);
            let empty = match &value {
                Value::String(s) => s.is_empty(),
                Value::Number(n) => n.as_f64() == Some(0.0),
                Value::Bool(b) => !b,
                Value::Array(items) => items.is_empty(),
                _ => true,
            };
            if empty {
                self.0.empty.push(column.name);
                continue;
            }
            let value = match (column.type_name().starts_with("DateTime64"), &value) {
                (true, Value::Number(n)) => n.as_i64().map_or(value.clone(), |n| iso(Ts(n))),
                _ => value,
            };
            self.0.columns.insert(column.name.to_owned(), value);
        }
    }
}

fn iso(ts: Ts) -> Value {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ts.0))
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .map_or(Value::Null, Value::String)
}
