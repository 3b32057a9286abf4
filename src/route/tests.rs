use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;

use super::*;

fn kv(key: &str, value: Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn s(text: &str) -> Value {
    Value::StringValue(text.into())
}

fn request(records: Vec<LogRecord>) -> ExportLogsServiceRequest {
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

fn api_call(bot: &str) -> LogRecord {
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

#[test]
fn a_kind_record_becomes_an_otel_row_and_a_typed_row() {
    let mut rows = Rows::default();
    logs(request(vec![api_call("helpdesk")]), ORIGIN, &mut rows);
    assert_eq!(rows.logs.len(), 1);
    assert_eq!(rows.typed.len(), 1);
    assert!(rows.rejections.is_empty());
    let log = &rows.logs[0];
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
    logs(request(vec![api_call("helpdesk")]), ORIGIN, &mut rows);
    let mut found = None;
    struct Grab<'x>(&'x mut Option<crate::schema::ApiCall>);
    impl<'a> crate::schema::KindVisitor<'a> for Grab<'_> {
        fn visit<T: crate::schema::LogKind>(&mut self, rows: &'a [T]) {
            let any: &dyn std::any::Any = &rows[0];
            *self.0 = any.downcast_ref::<crate::schema::ApiCall>().cloned();
        }
    }
    rows.typed.visit(&mut Grab(&mut found));
    let call = found.expect("an api_calls row");
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
    logs(request(vec![record]), ORIGIN, &mut rows);
    assert_eq!(rows.logs.len(), 1);
    assert!(rows.typed.is_empty());
    assert_eq!(rows.rejections.len(), 1);
    assert_eq!(rows.rejections[0].0.column, "bot");
}

#[test]
fn event_name_attribute_is_honoured() {
    let mut record = api_call("x");
    record.event_name.clear();
    record
        .attributes
        .push(kv("event.name", s("logbook.api_call")));
    let mut rows = Rows::default();
    logs(request(vec![record]), ORIGIN, &mut rows);
    assert_eq!(rows.typed.len(), 1);
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
    logs(request(vec![record]), ORIGIN, &mut rows);
    assert!(rows.rejections.is_empty(), "{:?}", rows.rejections);
    let mut found = None;
    struct Grab<'x>(&'x mut Option<crate::schema::ServerLog>);
    impl<'a> crate::schema::KindVisitor<'a> for Grab<'_> {
        fn visit<T: crate::schema::LogKind>(&mut self, rows: &'a [T]) {
            let any: &dyn std::any::Any = &rows[0];
            *self.0 = any.downcast_ref::<crate::schema::ServerLog>().cloned();
        }
    }
    rows.typed.visit(&mut Grab(&mut found));
    let line = found.unwrap();
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
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Status, span::Event};
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
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let mut rows = Rows::default();
    traces(request, &mut rows);
    let span = &rows.spans[0];
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
}

#[test]
fn severity_from_text_when_number_is_missing() {
    assert_eq!(severity_name(0, "Warning"), Some("warning"));
    assert_eq!(severity_number(0, "FATAL"), Some(21));
    assert_eq!(severity_name(0, "verbose"), None);
    assert_eq!(severity_name(18, ""), Some("error"));
}
