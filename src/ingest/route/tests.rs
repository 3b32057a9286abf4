use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::Span;

use super::*;
use crate::schema::{
    ApiCall, LogKind, OtelLogRow, OtelSpanRow, ServerLog, severity_name, severity_number,
};

pub(super) fn kv(key: &str, value: Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

pub(super) fn s(text: &str) -> Value {
    Value::StringValue(text.into())
}

pub(super) fn request(records: Vec<LogRecord>) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![
                    kv("service.name", s("bots")),
                    kv("deployment.environment.name", s("prod")),
                    kv("logbook.tenant", s("acme")),
                ],
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                log_records: records,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

pub(super) fn api_call(bot: &str) -> LogRecord {
    LogRecord {
        time_unix_nano: 1_763_700_000_000_000_000,
        event_name: "logbook.api_call".into(),
        trace_id: vec![0xab; 16],
        span_id: vec![0xcd; 8],
        attributes: vec![
            kv("logbook.bot.name", s(bot)),
            kv("http.request.method", s("POST")),
            kv("url.full", s("https://api.example.com/v1")),
            kv("http.response.status_code", Value::IntValue(201)),
            kv("logbook.outcome", s("success")),
        ],
        ..Default::default()
    }
}

const ORIGIN: Origin = Origin {
    queue_id: 7,
    position: 4096,
};

/// Routes a log request as the pipeline does: from its protobuf bytes.
pub(super) fn route_logs(request: ExportLogsServiceRequest, rows: &mut Rows) {
    let bytes = prost::Message::encode_to_vec(&request);
    logs(&LogsRequest::decode(&bytes).unwrap(), ORIGIN, rows);
}

pub(super) fn route_traces(request: ExportTraceServiceRequest, rows: &mut Rows) {
    let bytes = prost::Message::encode_to_vec(&request);
    traces(&TracesRequest::decode(&bytes).unwrap(), ORIGIN, rows);
}

/// The first typed row of kind `K`, if the router made one.
pub(super) fn first_typed<K: LogKind>(rows: &Rows) -> Option<K> {
    let table = rows.table(K::TABLE)?;
    K::read_row(&mut table.bytes.as_slice())
}

pub(super) fn typed_rows(rows: &Rows) -> usize {
    rows.typed.iter().map(|t| t.rows).sum()
}

/// Every `otel_logs` row, read back; the bytes hold exactly those rows.
pub(super) fn log_rows(rows: &Rows) -> Vec<OtelLogRow> {
    let mut input = rows.logs.bytes.as_slice();
    let read: Vec<_> = (0..rows.logs.rows)
        .map(|_| OtelLogRow::read_row(&mut input).unwrap())
        .collect();
    assert!(input.is_empty());
    read
}

pub(super) fn span_rows(rows: &Rows) -> Vec<OtelSpanRow> {
    let mut input = rows.spans.bytes.as_slice();
    let read: Vec<_> = (0..rows.spans.rows)
        .map(|_| OtelSpanRow::read_row(&mut input).unwrap())
        .collect();
    assert!(input.is_empty());
    read
}

/// A trace request of one span from the `bots` service.
pub(super) fn trace_request(span: Span) -> ExportTraceServiceRequest {
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans};
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    kv("service.name", s("bots")),
                    kv("logbook.tenant", s("acme")),
                ],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans: vec![span],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// An HTTP client span of a bot's call, named as an API call, that failed with an exception.
pub(super) fn api_call_span() -> Span {
    use opentelemetry_proto::tonic::trace::v1::{Status, span::Event};
    Span {
        trace_id: vec![0xab; 16],
        span_id: vec![0xcd; 8],
        name: "POST".into(),
        kind: 3,
        start_time_unix_nano: 1_763_700_000_000_000_000,
        end_time_unix_nano: 1_763_700_000_250_000_000,
        attributes: vec![
            kv("event.name", s("logbook.api_call")),
            kv("logbook.bot.name", s("helpdesk")),
            kv("http.request.method", s("POST")),
            kv("url.full", s("https://api.example.com/v1")),
            kv("http.response.status_code", Value::IntValue(502)),
            kv("server.address", s("api.example.com")),
        ],
        status: Some(Status {
            code: 2,
            message: "bad gateway".into(),
        }),
        events: vec![Event {
            name: "exception".into(),
            attributes: vec![kv("exception.message", s("upstream closed the connection"))],
            ..Default::default()
        }],
        ..Default::default()
    }
}

#[test]
fn a_span_naming_a_kind_becomes_its_row_with_what_the_span_says() {
    let mut rows = Rows::default();
    route_traces(trace_request(api_call_span()), &mut rows);
    assert_eq!(rows.spans.rows, 1, "the span itself is kept");
    assert!(rows.findings.is_empty(), "{:?}", rows.findings);
    let call: ApiCall = first_typed(&rows).expect("an api_calls row");
    assert_eq!(
        (call.bot.as_str(), call.method.as_str()),
        ("helpdesk", "POST")
    );
    assert_eq!(call.status_code, 502);
    // Not among the span's attributes: taken from its status, duration and exception event.
    assert_eq!(call.outcome, "error");
    assert_eq!(call.duration_ms, 250);
    assert_eq!(call.error_message, "upstream closed the connection");
    assert_eq!(
        (call.tenant.as_str(), call.service.as_str()),
        ("acme", "bots")
    );
    assert_eq!(call.trace_id, "ab".repeat(16));
    assert_eq!(call.time, Ts(1_763_700_000_000_000_000));
    assert_eq!(call.id.0, ORIGIN.row_id(0, call.time));
}

#[test]
fn a_span_carries_its_own_values_over_derived_ones() {
    let mut span = api_call_span();
    span.status = None;
    span.events.clear();
    span.attributes.extend([
        kv("logbook.outcome", s("error")),
        kv("logbook.duration_ms", Value::IntValue(7)),
    ]);
    let mut rows = Rows::default();
    route_traces(trace_request(span), &mut rows);
    let call: ApiCall = first_typed(&rows).expect("an api_calls row");
    assert_eq!((call.outcome.as_str(), call.duration_ms), ("error", 7));
    assert_eq!(call.error_message, "");
    // Without an error status, an unmarked span is a success.
    let mut span = api_call_span();
    span.status = None;
    let mut rows = Rows::default();
    route_traces(trace_request(span), &mut rows);
    let call: ApiCall = first_typed(&rows).expect("an api_calls row");
    assert_eq!(call.outcome, "success");
}

#[test]
fn a_span_naming_a_kind_without_its_required_attributes_is_rejected_but_kept() {
    let mut span = api_call_span();
    span.attributes.retain(|kv| kv.key != "url.full");
    let mut rows = Rows::default();
    route_traces(trace_request(span), &mut rows);
    assert_eq!(rows.spans.rows, 1);
    assert_eq!(typed_rows(&rows), 0);
    assert_eq!(rows.rejections().len(), 1);
    assert_eq!(rows.rejections()[0].column, "url");
    // A span that names no kind is only a span.
    let mut span = api_call_span();
    span.attributes.retain(|kv| kv.key != "event.name");
    let mut rows = Rows::default();
    route_traces(trace_request(span), &mut rows);
    assert_eq!(
        (rows.spans.rows, typed_rows(&rows), rows.rejections().len()),
        (1, 0, 0)
    );
}

#[test]
fn a_kind_record_becomes_an_otel_row_and_a_typed_row() {
    let mut rows = Rows::default();
    route_logs(request(vec![api_call("helpdesk")]), &mut rows);
    assert_eq!(rows.logs.rows, 1);
    assert_eq!(typed_rows(&rows), 1);
    assert!(rows.rejections().is_empty());
    let log = &log_rows(&rows)[0];
    assert_eq!(log.service_name, "bots");
    assert_eq!(log.event_name, "logbook.api_call");
    assert_eq!(log.trace_id, "ab".repeat(16));
    assert!(
        log.log_attributes
            .contains(&("http.response.status_code".into(), "201".into()))
    );
}

#[test]
fn typed_row_takes_resource_attributes_and_record_context() {
    let mut rows = Rows::default();
    route_logs(request(vec![api_call("helpdesk")]), &mut rows);
    let call: ApiCall = first_typed(&rows).expect("an api_calls row");
    assert_eq!(call.tenant, "acme");
    assert_eq!(call.environment, "prod");
    assert_eq!(call.service, "bots");
    assert_eq!(call.status_code, 201);
    assert_eq!(call.span_id, "cd".repeat(8));
    assert_eq!(call.time, Ts(1_763_700_000_000_000_000));
}

#[test]
fn ids_are_deterministic_per_origin_and_index() {
    let time = Ts(1_763_700_000_000_000_000);
    assert_eq!(ORIGIN.row_id(3, time), ORIGIN.row_id(3, time));
    assert_ne!(ORIGIN.row_id(3, time), ORIGIN.row_id(4, time));
    let other = Origin {
        position: 4097,
        ..ORIGIN
    };
    assert_ne!(ORIGIN.row_id(3, time), other.row_id(3, time));
    let id = ORIGIN.row_id(3, time);
    assert_eq!(id.get_version_num(), 7);
    let (secs, _) = id.get_timestamp().unwrap().to_unix();
    assert_eq!(secs, 1_763_700_000);
}

/// Records of one request usually share a millisecond (receivers stamp them together), so
/// the id's 74 non-time bits alone must keep them apart: across 2,000 requests of 2,000
/// records, 4 million ids in the same millisecond, no two are equal.
#[test]
fn ids_of_records_in_the_same_millisecond_do_not_collide() {
    let time = Ts(1_763_700_000_000_000_000);
    let mut seen = std::collections::HashSet::new();
    for position in 0..2_000 {
        let origin = Origin { position, ..ORIGIN };
        for index in 0..2_000 {
            assert!(
                seen.insert(origin.row_id(index, time)),
                "id of position {position}, index {index} collides"
            );
        }
    }
}

#[test]
fn a_record_missing_a_required_attribute_is_rejected_but_kept_in_otel_logs() {
    let mut record = api_call("x");
    record.attributes.retain(|kv| kv.key != "logbook.bot.name");
    let mut rows = Rows::default();
    route_logs(request(vec![record]), &mut rows);
    assert_eq!(rows.logs.rows, 1);
    assert_eq!(typed_rows(&rows), 0);
    assert_eq!(rows.rejections().len(), 1);
    assert_eq!(rows.rejections()[0].column, "bot");
}

#[test]
fn event_name_attribute_is_honoured() {
    let mut record = api_call("x");
    record.event_name.clear();
    record
        .attributes
        .push(kv("event.name", s("logbook.api_call")));
    let mut rows = Rows::default();
    route_logs(request(vec![record]), &mut rows);
    assert_eq!(typed_rows(&rows), 1);
}

#[test]
fn server_log_fields_hold_the_unmapped_attributes_and_severity_is_named() {
    let record = LogRecord {
        time_unix_nano: 1,
        event_name: "logbook.server_log".into(),
        severity_number: 13,
        severity_text: "WARN".into(),
        body: Some(AnyValue {
            value: Some(s("disk almost full")),
        }),
        attributes: vec![
            kv("logbook.server_log.category", s("database")),
            kv("db.name", s("tickets")),
            kv("free_bytes", Value::IntValue(1024)),
        ],
        ..Default::default()
    };
    let mut rows = Rows::default();
    route_logs(request(vec![record]), &mut rows);
    assert!(rows.findings.is_empty(), "{:?}", rows.findings);
    let line: ServerLog = first_typed(&rows).expect("a server_logs row");
    assert_eq!(line.level, "warning");
    assert_eq!(line.severity_number, 13);
    assert_eq!(line.message, "disk almost full");
    assert_eq!(
        line.fields,
        vec![
            ("db.name".into(), "tickets".into()),
            ("free_bytes".into(), "1024".into())
        ]
    );
}

#[test]
fn spans_keep_nested_events_and_links() {
    use opentelemetry_proto::tonic::trace::v1::span::{Event, Link};
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Status};
    let request = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv("service.name", s("integrator"))],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans: vec![Span {
                    trace_id: vec![1; 16],
                    span_id: vec![2; 8],
                    name: "sync".into(),
                    kind: 3,
                    start_time_unix_nano: 1_000,
                    end_time_unix_nano: 4_000,
                    status: Some(Status {
                        code: 2,
                        message: "boom".into(),
                    }),
                    events: vec![Event {
                        time_unix_nano: 2_000,
                        name: "exception".into(),
                        attributes: vec![kv("exception.message", s("boom"))],
                        ..Default::default()
                    }],
                    links: vec![
                        Link {
                            trace_id: vec![3; 16],
                            span_id: vec![4; 8],
                            trace_state: "k=v".into(),
                            attributes: vec![kv("why", s("retry"))],
                            ..Default::default()
                        },
                        Link::default(),
                    ],
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let mut rows = Rows::default();
    route_traces(request, &mut rows);
    let span = &span_rows(&rows)[0];
    assert_eq!(span.service_name, "integrator");
    assert_eq!(
        (span.span_kind.as_str(), span.status_code.as_str()),
        ("Client", "Error")
    );
    assert_eq!(span.duration, 3_000);
    assert_eq!(span.events_name, vec!["exception".to_owned()]);
    assert_eq!(
        span.events_attributes[0],
        vec![("exception.message".into(), "boom".into())]
    );
    assert_eq!(span.events_timestamp, vec![Ts(2_000)]);
    assert_eq!(span.links_trace_id, vec!["03".repeat(16), String::new()]);
    assert_eq!(span.links_span_id, vec!["04".repeat(8), String::new()]);
    assert_eq!(
        span.links_trace_state,
        vec!["k=v".to_owned(), String::new()]
    );
    assert_eq!(
        span.links_attributes,
        vec![vec![("why".into(), "retry".into())], vec![]]
    );
    assert_eq!(span.parent_span_id, "");
}

#[test]
fn severity_from_text_when_number_is_missing() {
    assert_eq!(severity_name(0, "Warning"), Some("warning"));
    assert_eq!(severity_number(0, "FATAL"), Some(21));
    assert_eq!(severity_name(0, "verbose"), None);
    assert_eq!(severity_name(18, ""), Some("error"));
}

#[test]
fn otel_logs_keep_every_value_type_as_the_collector_writes_it() {
    use opentelemetry_proto::tonic::common::v1::{ArrayValue, KeyValueList};
    let mut record = api_call("helpdesk");
    record.severity_text = "WARN".into();
    record.severity_number = 13;
    record.flags = 0x101;
    record.body = Some(AnyValue {
        value: Some(Value::KvlistValue(KeyValueList {
            values: vec![kv("a", Value::IntValue(1))],
        })),
    });
    record.attributes.extend([
        kv("yes", Value::BoolValue(true)),
        kv("ratio", Value::DoubleValue(0.5)),
        kv("raw", Value::BytesValue(vec![0xde, 0xad])),
        kv(
            "list",
            Value::ArrayValue(ArrayValue {
                values: vec![AnyValue {
                    value: Some(s("x")),
                }],
            }),
        ),
    ]);
    let mut rows = Rows::default();
    route_logs(request(vec![record]), &mut rows);
    let log = &log_rows(&rows)[0];
    assert_eq!(log.body, r#"{"a":1}"#);
    assert_eq!(
        (log.severity_text.as_str(), log.severity_number),
        ("WARN", 13)
    );
    assert_eq!(log.trace_flags, 1);
    assert_eq!(log.timestamp, Ts(1_763_700_000_000_000_000));
    assert_eq!(log.span_id, "cd".repeat(8));
    let attributes: std::collections::HashMap<_, _> = log.log_attributes.iter().cloned().collect();
    assert_eq!(attributes["yes"], "true");
    assert_eq!(attributes["ratio"], "0.5");
    assert_eq!(attributes["raw"], "dead");
    assert_eq!(attributes["list"], r#"["x"]"#);
    assert_eq!(attributes["logbook.bot.name"], "helpdesk");
    assert_eq!(
        log.resource_attributes[0],
        ("service.name".into(), "bots".into())
    );
}

/// What the router writes for a kind is exactly its struct's RowBinary: the direct encoding
/// and the struct's agree column by column, over several rows in a row.
#[test]
fn typed_rows_written_from_records_are_their_structs_rowbinary() {
    let mut rows = Rows::default();
    route_logs(
        request(vec![api_call("one"), api_call("two"), api_call("three")]),
        &mut rows,
    );
    let table = rows.table(ApiCall::TABLE).unwrap();
    assert_eq!(table.rows, 3);
    let mut input = table.bytes.as_slice();
    let mut rewritten = Vec::new();
    let mut bots = Vec::new();
    while !input.is_empty() {
        let call = ApiCall::read_row(&mut input).unwrap();
        call.write_row(&mut rewritten);
        bots.push(call.bot);
    }
    assert_eq!(bots, ["one", "two", "three"]);
    assert_eq!(rewritten, table.bytes);
}

#[test]
fn a_rejected_record_leaves_no_partial_row_behind() {
    let mut bad = api_call("bad");
    bad.attributes.retain(|kv| kv.key != "url.full");
    let mut rows = Rows::default();
    route_logs(
        request(vec![api_call("good"), bad, api_call("after")]),
        &mut rows,
    );
    assert_eq!(rows.rejections().len(), 1);
    let table = rows.table(ApiCall::TABLE).unwrap();
    let mut input = table.bytes.as_slice();
    let bots: Vec<_> = (0..table.rows)
        .map(|_| ApiCall::read_row(&mut input).unwrap().bot)
        .collect();
    assert!(input.is_empty());
    assert_eq!(bots, ["good", "after"]);
}
