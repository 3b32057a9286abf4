//! Routing: a decoded OTLP request becomes rows. Every log record becomes an `otel_logs` row
//! and every span an `otel_traces` row; a log record whose event name is a log kind's also
//! becomes a row of that kind (the kind's own `from_record` reads it through [`RecordView`]),
//! or, when it does not fit, a [`Rejection`] for the caller to count. So does a span whose
//! `event.name` attribute names a kind: what a span says by itself (its duration, an error
//! status, an `exception` event) stands in for the attributes it does not carry.
//!
//! Row ids are derived from the request's queue position and the record's index in it, so
//! replaying the queue after a crash produces the very same rows.

mod values;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{Span, span, status};
use uuid::Uuid;

use crate::schema::{
    OtelLogRow, OtelSpanRow, Raw, RecordView, Rejection, SharedMap, Source, TableDef, Ts, TypedRow,
    TypedRows,
};
pub use values::{
    any_into_string, any_to_raw, any_to_string, attributes_into_map, attributes_to_map, hex_id,
};

/// The rows one or more requests produce.
#[derive(Debug, Default)]
pub struct Rows {
    pub logs: Vec<OtelLogRow>,
    pub spans: Vec<OtelSpanRow>,
    pub typed: TypedRows,
    /// Records that named a kind but did not fit it, with their time.
    pub rejections: Vec<(Rejection, Ts)>,
}

impl Rows {
    pub fn len(&self) -> usize {
        self.logs.len() + self.spans.len() + self.typed.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
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

/// Appends the rows of a log request to `rows`, moving its strings into them.
pub fn logs(request: ExportLogsServiceRequest, origin: Origin, rows: &mut Rows) {
    let mut index = 0u64;
    for resource_logs in request.resource_logs {
        let (resource_attrs, service, resource_map) = resource_parts(resource_logs.resource);
        for scope_logs in resource_logs.scope_logs {
            let (scope_name, scope_version, scope_map) = match scope_logs.scope {
                Some(scope) => (
                    scope.name,
                    scope.version,
                    attributes_into_map(scope.attributes).into(),
                ),
                None => Default::default(),
            };
            for record in scope_logs.log_records {
                let time = record_time(&record);
                let id = origin.row_id(index, time);
                index += 1;
                let trace_id = hex_id(&record.trace_id);
                let span_id = hex_id(&record.span_id);
                let event = event_name(&record).to_owned();
                if let Some(table) = TypedRow::table_for(&event) {
                    let view = LogView {
                        context: Context {
                            attributes: &record.attributes,
                            resource: &resource_attrs,
                            service: &service,
                            trace_id: &trace_id,
                            span_id: &span_id,
                            id,
                            table,
                        },
                        record: &record,
                        time,
                    };
                    route_typed(&event, &view, time, rows);
                }
                let LogRecord {
                    flags,
                    severity_text,
                    severity_number,
                    body,
                    attributes,
                    ..
                } = record;
                rows.logs.push(OtelLogRow {
                    timestamp: time,
                    trace_id,
                    span_id,
                    trace_flags: (flags & 0xff) as u8,
                    severity_text,
                    severity_number: u8::try_from(severity_number).unwrap_or(0),
                    service_name: service.clone(),
                    body: body.map(any_into_string).unwrap_or_default(),
                    resource_schema_url: resource_logs.schema_url.clone(),
                    resource_attributes: resource_map.clone(),
                    scope_schema_url: scope_logs.schema_url.clone(),
                    scope_name: scope_name.clone(),
                    scope_version: scope_version.clone(),
                    scope_attributes: SharedMap::clone(&scope_map),
                    log_attributes: attributes_into_map(attributes),
                    event_name: event,
                });
            }
        }
    }
}

/// Appends the rows of a trace request to `rows`, moving its strings into them.
pub fn traces(request: ExportTraceServiceRequest, origin: Origin, rows: &mut Rows) {
    let mut index = 0u64;
    for resource_spans in request.resource_spans {
        let (resource_attrs, service, resource_map) = resource_parts(resource_spans.resource);
        for scope_spans in resource_spans.scope_spans {
            let scope = scope_spans
                .scope
                .map(|s| (s.name, s.version))
                .unwrap_or_default();
            for span in scope_spans.spans {
                let time = nanos(span.start_time_unix_nano);
                let id = origin.row_id(index, time);
                index += 1;
                let event = find_str(&span.attributes, "event.name");
                if let Some(table) = TypedRow::table_for(event) {
                    let (trace_id, span_id) = (hex_id(&span.trace_id), hex_id(&span.span_id));
                    let view = SpanView {
                        context: Context {
                            attributes: &span.attributes,
                            resource: &resource_attrs,
                            service: &service,
                            trace_id: &trace_id,
                            span_id: &span_id,
                            id,
                            table,
                        },
                        span: &span,
                    };
                    route_typed(event, &view, time, rows);
                }
                rows.spans
                    .push(span_row(span, &service, &resource_map, &scope));
            }
        }
    }
}

/// A resource's attributes (for typed rows to read), its service name, and its attribute
/// map shared by all its rows.
fn resource_parts(resource: Option<Resource>) -> (Vec<KeyValue>, String, SharedMap) {
    let attributes = resource.map(|r| r.attributes).unwrap_or_default();
    let service = service_name(&attributes);
    let map = attributes_to_map(&attributes).into();
    (attributes, service, map)
}

/// Adds the row of the kind `event` names, built from `view`, or its rejection.
fn route_typed(event: &str, view: &dyn RecordView, time: Ts, rows: &mut Rows) {
    match TypedRow::route(event, view).expect("the caller found the kind") {
        Ok(row) => rows.typed.push(row),
        Err(rejection) => rows.rejections.push((rejection, time)),
    }
}

fn span_row(
    span: Span,
    service: &str,
    resource: &SharedMap,
    (scope_name, scope_version): &(String, String),
) -> OtelSpanRow {
    let kind = match span::SpanKind::try_from(span.kind).unwrap_or(span::SpanKind::Unspecified) {
        span::SpanKind::Unspecified => "Unspecified",
        span::SpanKind::Internal => "Internal",
        span::SpanKind::Server => "Server",
        span::SpanKind::Client => "Client",
        span::SpanKind::Producer => "Producer",
        span::SpanKind::Consumer => "Consumer",
    };
    let status = span.status.unwrap_or_default();
    let status_code =
        match status::StatusCode::try_from(status.code).unwrap_or(status::StatusCode::Unset) {
            status::StatusCode::Unset => "Unset",
            status::StatusCode::Ok => "Ok",
            status::StatusCode::Error => "Error",
        };
    let mut row = OtelSpanRow {
        timestamp: nanos(span.start_time_unix_nano),
        trace_id: hex_id(&span.trace_id),
        span_id: hex_id(&span.span_id),
        parent_span_id: hex_id(&span.parent_span_id),
        trace_state: span.trace_state,
        span_name: span.name,
        span_kind: kind.to_owned(),
        service_name: service.to_owned(),
        resource_attributes: resource.clone(),
        scope_name: scope_name.clone(),
        scope_version: scope_version.clone(),
        span_attributes: attributes_into_map(span.attributes),
        duration: span
            .end_time_unix_nano
            .saturating_sub(span.start_time_unix_nano),
        status_code: status_code.to_owned(),
        status_message: status.message,
        ..OtelSpanRow::default()
    };
    for event in span.events {
        row.events_timestamp.push(nanos(event.time_unix_nano));
        row.events_name.push(event.name);
        row.events_attributes
            .push(attributes_into_map(event.attributes));
    }
    for link in span.links {
        row.links_trace_id.push(hex_id(&link.trace_id));
        row.links_span_id.push(hex_id(&link.span_id));
        row.links_trace_state.push(link.trace_state);
        row.links_attributes
            .push(attributes_into_map(link.attributes));
    }
    row
}

fn nanos(unix_nanos: u64) -> Ts {
    Ts(i64::try_from(unix_nanos).unwrap_or(i64::MAX))
}

/// The record's time; its observed time when unset (receivers stamp the observed time of
/// records that have neither, before they are queued).
fn record_time(record: &LogRecord) -> Ts {
    nanos(if record.time_unix_nano != 0 {
        record.time_unix_nano
    } else {
        record.observed_time_unix_nano
    })
}

/// `LogRecord.event_name`, or the older `event.name` attribute.
pub fn event_name(record: &LogRecord) -> &str {
    if !record.event_name.is_empty() {
        return &record.event_name;
    }
    find_str(&record.attributes, "event.name")
}

/// A string attribute's value; empty when absent or not a string.
fn find_str<'a>(attributes: &'a [KeyValue], key: &str) -> &'a str {
    find(attributes, key)
        .and_then(|v| match &v.value {
            Some(opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(s)) => {
                Some(s.as_str())
            }
            _ => None,
        })
        .unwrap_or_default()
}

fn find<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a AnyValue> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
}

fn service_name(resource: &[KeyValue]) -> String {
    find(resource, "service.name")
        .map(any_to_string)
        .unwrap_or_else(|| "unknown_service".to_owned())
}

/// What a log record and a span both offer a kind's `from_record`.
struct Context<'a> {
    /// The record's or span's own attributes.
    attributes: &'a [KeyValue],
    resource: &'a [KeyValue],
    service: &'a str,
    trace_id: &'a str,
    span_id: &'a str,
    id: Uuid,
    table: &'static TableDef,
}

impl Context<'_> {
    /// An attribute of the record, falling back to the resource's.
    fn attr(&self, name: &str) -> Option<Raw<'_>> {
        find(self.attributes, name)
            .or_else(|| find(self.resource, name))
            .and_then(any_to_raw)
    }

    /// The sources that do not depend on what the record is; `None` for the others.
    fn get(&self, source: Source) -> Option<Raw<'_>> {
        match source {
            Source::Attr(name) => self.attr(name),
            Source::ServiceName => Some(Raw::Str(self.service.into())),
            Source::Environment => environment(self.resource),
            Source::TraceId => Some(Raw::Str(self.trace_id.into())),
            Source::SpanId => Some(Raw::Str(self.span_id.into())),
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
    record: &'a LogRecord,
    time: Ts,
}

impl RecordView for LogView<'_> {
    fn get(&self, source: Source) -> Option<Raw<'_>> {
        match source {
            Source::Body => self.record.body.as_ref().and_then(any_to_raw),
            Source::SeverityText => {
                severity_name(self.record.severity_number, &self.record.severity_text)
                    .map(|s| Raw::Str(s.into()))
            }
            Source::SeverityNumber => {
                severity_number(self.record.severity_number, &self.record.severity_text)
                    .map(|n| Raw::Int(n.into()))
            }
            Source::Time => Some(Raw::Int(self.time.0)),
            _ => self.context.get(source),
        }
    }
}

/// A span with its resource, as a kind's `from_record` sees it.
struct SpanView<'a> {
    context: Context<'a>,
    span: &'a Span,
}

impl SpanView<'_> {
    fn failed(&self) -> bool {
        self.span
            .status
            .as_ref()
            .is_some_and(|s| s.code == status::StatusCode::Error as i32)
    }

    /// What the span itself says in place of an attribute it does not carry.
    fn derived(&self, name: &str) -> Option<Raw<'_>> {
        match name {
            "logbook.duration_ms" => {
                let nanos =
                    (self.span.end_time_unix_nano).saturating_sub(self.span.start_time_unix_nano);
                Some(Raw::Int(
                    i64::try_from(nanos / 1_000_000).unwrap_or(i64::MAX),
                ))
            }
            "logbook.outcome" => Some(Raw::Str(
                if self.failed() { "error" } else { "success" }.into(),
            )),
            // OpenTelemetry records an exception as a span event named `exception`.
            "exception.message" | "exception.type" => self
                .span
                .events
                .iter()
                .find(|e| e.name == "exception")
                .and_then(|e| find(&e.attributes, name))
                .and_then(any_to_raw)
                .or_else(|| {
                    let status = self.span.status.as_ref()?;
                    (name == "exception.message" && self.failed() && !status.message.is_empty())
                        .then(|| Raw::Str(status.message.as_str().into()))
                }),
            _ => None,
        }
    }
}

impl RecordView for SpanView<'_> {
    fn get(&self, source: Source) -> Option<Raw<'_>> {
        match source {
            Source::Attr(name) => self.context.attr(name).or_else(|| self.derived(name)),
            Source::Body => None,
            Source::SeverityText => Some(Raw::Str(
                if self.failed() { "error" } else { "info" }.into(),
            )),
            Source::SeverityNumber => Some(Raw::Int(if self.failed() { 17 } else { 9 })),
            Source::Time => Some(Raw::Int(nanos(self.span.start_time_unix_nano).0)),
            _ => self.context.get(source),
        }
    }
}

fn environment(resource: &[KeyValue]) -> Option<Raw<'_>> {
    find(resource, "deployment.environment.name")
        .or_else(|| find(resource, "deployment.environment"))
        .and_then(any_to_raw)
}

/// The attributes no column of `table` takes, for its `attributes` column.
fn other_attributes<'a>(table: &TableDef, attributes: &'a [KeyValue]) -> Raw<'a> {
    let mapped: Vec<&str> = table
        .all_columns()
        .filter_map(|c| match c.source {
            Some(Source::Attr(name)) => Some(name),
            _ => None,
        })
        .collect();
    let pairs = attributes
        .iter()
        // `event.name` chose the kind and `logbook.id` is the row's id: neither is a field.
        .filter(|kv| {
            !mapped.contains(&kv.key.as_str()) && kv.key != "event.name" && kv.key != "logbook.id"
        })
        .filter_map(|kv| {
            let value = kv.value.as_ref().and_then(any_to_raw)?;
            Some((kv.key.as_str().into(), value))
        })
        .collect();
    Raw::Pairs(pairs)
}

/// logbook's six level names from OpenTelemetry's severity number (or, without one, text).
pub fn severity_name(number: i32, text: &str) -> Option<&'static str> {
    let number = severity_number(number, text)?;
    Some(match number {
        1..=4 => "trace",
        5..=8 => "debug",
        9..=12 => "info",
        13..=16 => "warning",
        17..=20 => "error",
        _ => "critical",
    })
}

/// The severity number, from the record's or (when 0) from common level names.
pub fn severity_number(number: i32, text: &str) -> Option<u8> {
    if (1..=24).contains(&number) {
        return u8::try_from(number).ok();
    }
    Some(match text.to_ascii_lowercase().as_str() {
        "trace" => 1,
        "debug" => 5,
        "info" | "information" | "informational" | "notice" => 9,
        "warn" | "warning" => 13,
        "error" | "err" => 17,
        "fatal" | "critical" | "crit" | "alert" | "emergency" => 21,
        _ => return None,
    })
}

#[cfg(test)]
mod tests;
