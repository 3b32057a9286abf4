//! Routing: a decoded OTLP request becomes rows, written as RowBinary straight from the
//! request's bytes (no row structs: building, copying and freeing them cost more than the
//! rest of the pipeline). Every log record becomes an `otel_logs` row and every span an
//! `otel_traces` row; a log record whose event name is a log kind's also becomes a row of
//! that kind (the kind's own `encode_record` reads it through [`RecordView`]), or, when it
//! does not fit, a [`Rejection`] for the caller to count. So does a span whose
//! `event.name` attribute names a kind: what a span says by itself (its duration, an error
//! status, an `exception` event) stands in for the attributes it does not carry.
//!
//! Row ids are derived from the request's queue position and the record's index in it, so
//! replaying the queue after a crash produces the very same rows.

pub mod dry_run;
pub mod findings;
mod values;

use std::borrow::Cow;
use std::cell::RefCell;

use uuid::Uuid;

use crate::ingest::decode::{
    AnyValue, KeyValue, LogRecord, LogsRequest, Scope, Span, TracesRequest,
};
use crate::ingest::kind_metrics::Tally;
use crate::schema::hex::HexId;
use crate::schema::row_binary::{put_hex_id, put_str, put_varint};
use crate::schema::{
    Deprecated, KINDS, OTEL_LOGS, OTEL_TRACES, Presence, Raw, RecordView, Rejection, Source,
    TableDef, Ts, TypedRow, severity_name, severity_number,
};
use findings::{Finding, Problem};
use values::{any_to_raw, any_to_text, put_attributes, put_attributes_and, put_text};

/// One table's rows of a batch, as RowBinary.
#[derive(Debug, Default)]
pub struct TableRows {
    pub bytes: Vec<u8>,
    pub rows: usize,
}

/// The rows one or more requests produce.
#[derive(Debug)]
pub struct Rows {
    pub logs: TableRows,
    pub spans: TableRows,
    /// One per log kind, in the order of [`KINDS`].
    pub typed: Vec<TableRows>,
    /// What was found wrong with records: rejections, unknown names, deprecated spellings.
    pub findings: Vec<Finding>,
    /// For a dry run: the (record index, kind) of every typed row, in the order made.
    pub made: Option<Vec<(u64, usize)>>,
    /// The typed rows' label values, for the kinds' counters once the rows are stored.
    pub tally: Tally,
}

impl Default for Rows {
    fn default() -> Rows {
        Rows {
            logs: TableRows::default(),
            spans: TableRows::default(),
            typed: KINDS.iter().map(|_| TableRows::default()).collect(),
            findings: Vec::new(),
            made: None,
            tally: Tally::default(),
        }
    }
}

impl Rows {
    pub fn len(&self) -> usize {
        self.logs.rows + self.spans.rows + self.typed.iter().map(|t| t.rows).sum::<usize>()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The rejections among the findings.
    pub fn rejections(&self) -> Vec<&Rejection> {
        self.findings
            .iter()
            .filter_map(|f| match &f.problem {
                Problem::Rejected(rejection) => Some(rejection),
                _ => None,
            })
            .collect()
    }

    /// Appends a row made elsewhere than from a record (logbook's own monitoring events).
    pub fn push_typed(&mut self, row: &TypedRow) {
        let kind = kind_index(row.table()).expect("every kind is in KINDS");
        let table = &mut self.typed[kind];
        let start = table.bytes.len();
        row.write(&mut table.bytes);
        table.rows += 1;
        self.tally.add(kind, &table.bytes[start..]);
    }

    /// The rows of `table`, if it is one of the tables the router writes.
    pub fn table(&self, table: &TableDef) -> Option<&TableRows> {
        match table.name {
            name if name == OTEL_LOGS.name => Some(&self.logs),
            name if name == OTEL_TRACES.name => Some(&self.spans),
            _ => Some(&self.typed[kind_index(table)?]),
        }
    }

    /// Empties every table, keeping the buffers' memory.
    pub fn clear(&mut self) {
        for (_, rows) in self.tables_mut() {
            rows.bytes.clear();
            rows.rows = 0;
        }
        self.findings.clear();
        self.tally.clear();
    }

    /// Every table the router writes, with its rows (empty or not), always in the same order.
    pub fn tables_mut(&mut self) -> impl Iterator<Item = (&'static TableDef, &mut TableRows)> {
        [
            (&OTEL_LOGS, &mut self.logs),
            (&OTEL_TRACES, &mut self.spans),
        ]
        .into_iter()
        .chain(KINDS.iter().copied().zip(self.typed.iter_mut()))
    }
}

/// A kind's position in [`KINDS`]. By name: a `const` table's address is not unique.
fn kind_index(table: &TableDef) -> Option<usize> {
    KINDS.iter().position(|t| t.name == table.name)
}

/// Where a request sits in the durable queue: the seed of its rows' ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin {
    pub queue_id: u64,
    pub position: u64,
}

impl Origin {
    /// A UUIDv7 whose time is the record's and whose other 74 bits are a hash of the origin
    /// and the record's index: unique, time-ordered, and the same on every replay.
    pub fn row_id(&self, index: u64, time: Ts) -> Uuid {
        let request = mix(self.queue_id ^ mix(self.position));
        // `mix` is a bijection, so within a request (where records usually share the
        // millisecond) `record` differs for every index; 62 of its bits survive the UUID's
        // variant field, the other 12 random bits come from the request.
        let record = mix(request ^ index.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let mut bits = [0u8; 10];
        bits[..2].copy_from_slice(&request.to_le_bytes()[..2]);
        bits[2..].copy_from_slice(&record.to_le_bytes());
        let millis = u64::try_from(time.0 / 1_000_000).unwrap_or(0);
        uuid::Builder::from_unix_timestamp_millis(millis, &bits).into_uuid()
    }
}

/// splitmix64's finalizer: a cheap, well-spread 64-bit hash step.
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Appends the rows of a log request to `rows`.
pub fn logs(request: &LogsRequest<'_>, origin: Origin, rows: &mut Rows) {
    let mut index = 0u64;
    for resource_logs in &request.resource_logs {
        let resource = ResourceParts::new(&resource_logs.resource);
        for scope_logs in &resource_logs.scope_logs {
            let scope = &scope_logs.scope;
            let mut scope_map = Vec::new();
            put_attributes(&mut scope_map, &scope.attributes);
            for record in &scope_logs.log_records {
                let time = record_time(record);
                let id = origin.row_id(index, time);
                let found = rows.findings.len();
                let event = event_name(record);
                let at = At {
                    service: &resource.service,
                    time,
                    record: index,
                };
                index += 1;
                if let Some(kind) = TypedRow::kind_of(event) {
                    let view = LogView {
                        context: Context::new(
                            &record.attributes,
                            &resource,
                            (record.trace_id, record.span_id),
                            id,
                            KINDS[kind],
                        ),
                        record,
                        time,
                    };
                    route_typed(kind, &view, &view.context, at, rows);
                } else if let Some(problem) = findings::unknown_event(event) {
                    rows.findings.push(at.finding(problem));
                }
                let notes = findings::attributes(&rows.findings[found..]);
                let out = &mut rows.logs.bytes;
                out.extend_from_slice(&time.0.to_le_bytes());
                put_hex_id(out, record.trace_id);
                put_hex_id(out, record.span_id);
                out.push((record.flags & 0xff) as u8);
                put_str(out, record.severity_text);
                out.push(u8::try_from(record.severity_number).unwrap_or(0));
                put_str(out, &resource.service);
                put_text(out, &record.body);
                put_str(out, resource_logs.schema_url);
                out.extend_from_slice(&resource.map);
                put_str(out, scope_logs.schema_url);
                put_str(out, scope.name);
                put_str(out, scope.version);
                out.extend_from_slice(&scope_map);
                put_attributes_and(out, &record.attributes, &notes);
                put_str(out, event);
                rows.logs.rows += 1;
            }
        }
    }
}

/// Appends the rows of a trace request to `rows`.
pub fn traces(request: &TracesRequest<'_>, origin: Origin, rows: &mut Rows) {
    let mut index = 0u64;
    for resource_spans in &request.resource_spans {
        let resource = ResourceParts::new(&resource_spans.resource);
        for scope_spans in &resource_spans.scope_spans {
            for span in &scope_spans.spans {
                let time = nanos(span.start_time_unix_nano);
                let id = origin.row_id(index, time);
                let found = rows.findings.len();
                let event = find_str(&span.attributes, "event.name");
                let at = At {
                    service: &resource.service,
                    time,
                    record: index,
                };
                index += 1;
                if let Some(kind) = TypedRow::kind_of(event) {
                    let view = SpanView {
                        context: Context::new(
                            &span.attributes,
                            &resource,
                            (span.trace_id, span.span_id),
                            id,
                            KINDS[kind],
                        ),
                        span,
                    };
                    if KINDS[kind].from_spans() {
                        route_typed(kind, &view, &view.context, at, rows);
                    } else {
                        rows.findings
                            .push(at.finding(Problem::Rejected(not_from_spans(KINDS[kind]))));
                    }
                } else if let Some(problem) = findings::unknown_event(event) {
                    rows.findings.push(at.finding(problem));
                }
                let notes = findings::attributes(&rows.findings[found..]);
                span_row(
                    &mut rows.spans.bytes,
                    span,
                    &resource,
                    &scope_spans.scope,
                    &notes,
                );
                rows.spans.rows += 1;
            }
        }
    }
}

/// What every row of one resource shares: its attributes (for typed rows to read), its
/// service name, and its attribute map encoded once.
struct ResourceParts<'a> {
    attributes: &'a [KeyValue<'a>],
    service: Cow<'a, str>,
    map: Vec<u8>,
}

impl<'a> ResourceParts<'a> {
    fn new(attributes: &'a [KeyValue<'a>]) -> ResourceParts<'a> {
        let service = find(attributes, "service.name")
            .map(any_to_text)
            .unwrap_or(Cow::Borrowed("unknown_service"));
        let mut map = Vec::new();
        put_attributes(&mut map, attributes);
        ResourceParts {
            attributes,
            service,
            map,
        }
    }
}

/// Which record a finding is about.
#[derive(Clone, Copy)]
struct At<'a> {
    service: &'a str,
    time: Ts,
    record: u64,
}

impl At<'_> {
    fn finding(self, problem: Problem) -> Finding {
        Finding {
            service: self.service.to_owned(),
            time: self.time,
            record: self.record,
            problem,
        }
    }
}

/// Adds the row of kind `kind` built from `view`, or its rejection, and what else was found.
fn route_typed(
    kind: usize,
    view: &dyn RecordView,
    context: &Context<'_>,
    at: At<'_>,
    rows: &mut Rows,
) {
    let table = &mut rows.typed[kind];
    let start = table.bytes.len();
    match TypedRow::encode(kind, view, &mut table.bytes) {
        Ok(()) => {
            table.rows += 1;
            rows.tally.add(kind, &table.bytes[start..]);
            if let Some(made) = &mut rows.made {
                made.push((at.record, kind));
            }
        }
        Err(rejection) => rows.findings.push(at.finding(Problem::Rejected(rejection))),
    }
    let deprecated = context
        .deprecated
        .take()
        .into_iter()
        .map(Problem::Deprecated);
    let unknown = findings::unknown_attributes(KINDS[kind], context.attributes);
    for problem in deprecated.chain(unknown) {
        rows.findings.push(at.finding(problem));
    }
}

/// Why a span cannot make a row of `table` (see [`TableDef::from_spans`]).
fn not_from_spans(table: &'static TableDef) -> Rejection {
    let column = table
        .all_columns()
        .find(|c| c.presence == Presence::Required && c.source == Some(Source::Body))
        .map_or("", |c| c.name);
    Rejection {
        table: table.name,
        column,
        reason: "a span cannot make this kind's rows: the column is a log record's body; send a log record".into(),
    }
}

/// Writes the `otel_traces` row of a span, with `notes` among its attributes.
fn span_row(
    out: &mut Vec<u8>,
    span: &Span<'_>,
    resource: &ResourceParts<'_>,
    scope: &Scope<'_>,
    notes: &[(&str, String)],
) {
    const SPAN_KINDS: [&str; 6] = [
        "Unspecified",
        "Internal",
        "Server",
        "Client",
        "Producer",
        "Consumer",
    ];
    const STATUS_CODES: [&str; 3] = ["Unset", "Ok", "Error"];
    let kind = usize::try_from(span.kind)
        .ok()
        .and_then(|k| SPAN_KINDS.get(k))
        .unwrap_or(&SPAN_KINDS[0]);
    let status_code = usize::try_from(span.status.code)
        .ok()
        .and_then(|c| STATUS_CODES.get(c))
        .unwrap_or(&STATUS_CODES[0]);
    out.extend_from_slice(&nanos(span.start_time_unix_nano).0.to_le_bytes());
    put_hex_id(out, span.trace_id);
    put_hex_id(out, span.span_id);
    put_hex_id(out, span.parent_span_id);
    put_str(out, span.trace_state);
    put_str(out, span.name);
    put_str(out, kind);
    put_str(out, &resource.service);
    out.extend_from_slice(&resource.map);
    put_str(out, scope.name);
    put_str(out, scope.version);
    put_attributes_and(out, &span.attributes, notes);
    let duration = span
        .end_time_unix_nano
        .saturating_sub(span.start_time_unix_nano);
    out.extend_from_slice(&duration.to_le_bytes());
    put_str(out, status_code);
    put_str(out, span.status.message);
    // Events and Links are Nested: one array per sub-column.
    let events = &span.events;
    put_array(out, events, |out, e| {
        out.extend_from_slice(&nanos(e.time_unix_nano).0.to_le_bytes())
    });
    put_array(out, events, |out, e| put_str(out, e.name));
    put_array(out, events, |out, e| put_attributes(out, &e.attributes));
    let links = &span.links;
    put_array(out, links, |out, l| put_hex_id(out, l.trace_id));
    put_array(out, links, |out, l| put_hex_id(out, l.span_id));
    put_array(out, links, |out, l| put_str(out, l.trace_state));
    put_array(out, links, |out, l| put_attributes(out, &l.attributes));
}

/// An `Array` of one value per item.
fn put_array<T>(out: &mut Vec<u8>, items: &[T], mut put: impl FnMut(&mut Vec<u8>, &T)) {
    put_varint(out, items.len() as u64);
    for item in items {
        put(out, item);
    }
}

fn nanos(unix_nanos: u64) -> Ts {
    Ts(i64::try_from(unix_nanos).unwrap_or(i64::MAX))
}

/// The record's time; its observed time when unset (receivers stamp the observed time of
/// records that have neither, before they are queued).
fn record_time(record: &LogRecord<'_>) -> Ts {
    nanos(if record.time_unix_nano != 0 {
        record.time_unix_nano
    } else {
        record.observed_time_unix_nano
    })
}

/// `LogRecord.event_name`, or the older `event.name` attribute.
pub fn event_name<'a>(record: &LogRecord<'a>) -> &'a str {
    if !record.event_name.is_empty() {
        return record.event_name;
    }
    find_str(&record.attributes, "event.name")
}

/// A string attribute's value; empty when absent or not a string.
fn find_str<'a>(attributes: &[KeyValue<'a>], key: &str) -> &'a str {
    match find(attributes, key) {
        Some(AnyValue::String(s)) => s,
        _ => "",
    }
}

fn find<'v, 'a>(attributes: &'v [KeyValue<'a>], key: &str) -> Option<&'v AnyValue<'a>> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .map(|kv| &kv.value)
        .filter(|v| !matches!(v, AnyValue::Empty))
}

/// What a log record and a span both offer a kind's `encode_record`.
struct Context<'a> {
    /// The record's or span's own attributes.
    attributes: &'a [KeyValue<'a>],
    resource: &'a ResourceParts<'a>,
    trace_id: HexId,
    span_id: HexId,
    id: Uuid,
    table: &'static TableDef,
    /// Deprecated names and values the kind's encoder met.
    deprecated: RefCell<Vec<Deprecated>>,
}

impl<'a> Context<'a> {
    fn new(
        attributes: &'a [KeyValue<'a>],
        resource: &'a ResourceParts<'a>,
        ids: (&'a [u8], &'a [u8]),
        id: Uuid,
        table: &'static TableDef,
    ) -> Context<'a> {
        Context {
            attributes,
            resource,
            trace_id: HexId::new(ids.0),
            span_id: HexId::new(ids.1),
            id,
            table,
            deprecated: RefCell::new(Vec::new()),
        }
    }

    /// An attribute of the record, falling back to the resource's.
    fn attr(&self, name: &str) -> Option<Raw<'a>> {
        find(self.attributes, name)
            .or_else(|| find(self.resource.attributes, name))
            .and_then(any_to_raw)
    }

    /// The sources that do not depend on what the record is; `None` for the others.
    fn get(&self, source: Source) -> Option<Raw<'_>> {
        match source {
            Source::Attr(name) => self.attr(name),
            Source::ServiceName => Some(Raw::Str(Cow::Borrowed(&self.resource.service))),
            Source::Environment => environment(self.resource.attributes),
            Source::TraceId => Some(Raw::Str(self.trace_id.as_str().into())),
            Source::SpanId => Some(Raw::Str(self.span_id.as_str().into())),
            Source::RowId => find(self.attributes, "logbook.id")
                .and_then(any_to_raw)
                .or(Some(Raw::Id(self.id))),
            Source::OtherAttributes => Some(other_attributes(self.table, self.attributes)),
            Source::Body | Source::SeverityText | Source::SeverityNumber | Source::Time => None,
        }
    }
}

/// A log record with its resource, as a kind's `from_record` sees it.
struct LogView<'a> {
    context: Context<'a>,
    record: &'a LogRecord<'a>,
    time: Ts,
}

impl RecordView for LogView<'_> {
    fn get(&self, source: Source) -> Option<Raw<'_>> {
        match source {
            Source::Body => any_to_raw(&self.record.body),
            Source::SeverityText => {
                severity_name(self.record.severity_number, self.record.severity_text)
                    .map(|s| Raw::Str(s.into()))
            }
            Source::SeverityNumber => {
                severity_number(self.record.severity_number, self.record.severity_text)
                    .map(|n| Raw::Int(n.into()))
            }
            Source::Time => Some(Raw::Nanos(self.time.0)),
            _ => self.context.get(source),
        }
    }

    fn deprecated(&self, used: Deprecated) {
        self.context.deprecated.borrow_mut().push(used);
    }
}

/// A span with its resource, as a kind's `from_record` sees it.
struct SpanView<'a> {
    context: Context<'a>,
    span: &'a Span<'a>,
}

impl SpanView<'_> {
    fn failed(&self) -> bool {
        // OpenTelemetry's STATUS_CODE_ERROR.
        self.span.status.code == 2
    }

    /// The span's own say on a column, ahead of its attributes: an Error status is the
    /// kind's failure (`error`, the failure value of every kind) whatever an attribute says.
    fn overriding(&self, name: &str) -> Option<Raw<'_>> {
        (self.failed() && matches!(name, "logbook.outcome" | "logbook.status"))
            .then(|| Raw::Str("error".into()))
    }

    /// What the span itself says in place of an attribute it does not carry.
    fn derived(&self, name: &str) -> Option<Raw<'_>> {
        let at = |n: u64| Some(Raw::Nanos(nanos(n).0));
        match name {
            "logbook.duration_ms" => {
                let nanos =
                    (self.span.end_time_unix_nano).saturating_sub(self.span.start_time_unix_nano);
                Some(Raw::Int(
                    i64::try_from(nanos / 1_000_000).unwrap_or(i64::MAX),
                ))
            }
            "logbook.outcome" => Some(Raw::Str("success".into())),
            // A span that ended without error: the kind's success value, when it has one.
            "logbook.status" => {
                let status = self.context.table.column("status")?;
                ["success", "completed", "created"]
                    .into_iter()
                    .find(|v| status.one_of.contains(v))
                    .map(|v| Raw::Str(v.into()))
            }
            name if name.ends_with(".started_at") => at(self.span.start_time_unix_nano),
            name if name.ends_with(".ended_at") => at(self.span.end_time_unix_nano),
            // OpenTelemetry records an exception as a span event named `exception`.
            "exception.message" | "exception.type" => self
                .span
                .events
                .iter()
                .find(|e| e.name == "exception")
                .and_then(|e| find(&e.attributes, name))
                .and_then(any_to_raw)
                .or_else(|| {
                    let message = self.span.status.message;
                    (name == "exception.message" && self.failed() && !message.is_empty())
                        .then(|| Raw::Str(message.into()))
                }),
            _ => None,
        }
    }
}

impl RecordView for SpanView<'_> {
    fn get(&self, source: Source) -> Option<Raw<'_>> {
        match source {
            Source::Attr(name) => self
                .overriding(name)
                .or_else(|| self.context.attr(name))
                .or_else(|| self.derived(name)),
            Source::Body => None,
            Source::SeverityText => Some(Raw::Str(
                if self.failed() { "error" } else { "info" }.into(),
            )),
            Source::SeverityNumber => Some(Raw::Int(if self.failed() { 17 } else { 9 })),
            Source::Time => Some(Raw::Nanos(nanos(self.span.start_time_unix_nano).0)),
            _ => self.context.get(source),
        }
    }

    fn deprecated(&self, used: Deprecated) {
        self.context.deprecated.borrow_mut().push(used);
    }
}

fn environment<'a>(resource: &[KeyValue<'a>]) -> Option<Raw<'a>> {
    find(resource, "deployment.environment.name")
        .or_else(|| find(resource, "deployment.environment"))
        .and_then(any_to_raw)
}

/// The attributes no column of `table` takes, for its `attributes` column.
fn other_attributes<'a>(table: &TableDef, attributes: &[KeyValue<'a>]) -> Raw<'a> {
    let mapped: Vec<&str> = table.attribute_names().collect();
    let pairs = attributes
        .iter()
        // `event.name` chose the kind and `logbook.id` is the row's id: neither is a field.
        .filter(|kv| !mapped.contains(&kv.key) && kv.key != "event.name" && kv.key != "logbook.id")
        .filter_map(|kv| Some((Cow::Borrowed(kv.key), any_to_raw(&kv.value)?)))
        .collect();
    Raw::Pairs(pairs)
}

#[cfg(test)]
mod contract_tests;
#[cfg(test)]
mod emit_tests;
#[cfg(test)]
mod tests;
