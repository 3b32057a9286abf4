//! The sender's contract: coercions, times in the wrong unit, unknown and deprecated names,
//! spans as typed rows, and the dry run, as the router sees them.

use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::trace::v1::{Span, Status};

use super::tests::{
    api_call, api_call_span, first_typed, kv, log_rows, request, route_logs, route_traces, s,
    span_rows, trace_request, typed_rows,
};
use super::*;
use crate::schema::{ApiCall, IntegrationSyncRun, MailMessage, ServerLog};

fn attribute<'r>(pairs: &'r [(String, String)], key: &str) -> Option<&'r str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn sync_run(attributes: Vec<opentelemetry_proto::tonic::common::v1::KeyValue>) -> LogRecord {
    let mut all = vec![
        kv("logbook.integration.name", s("xero")),
        kv("logbook.status", s("completed")),
    ];
    all.extend(attributes);
    LogRecord {
        time_unix_nano: 1_763_700_000_000_000_000,
        event_name: "logbook.integration.sync_run".into(),
        attributes: all,
        ..Default::default()
    }
}

#[test]
fn doubles_fill_integer_columns_and_numbers_fill_string_columns() {
    let mut record = api_call("py-bot");
    record.attributes.extend([
        // Python: `duration_ms = (t1 - t0) * 1000`, and a status code as a double.
        kv("logbook.duration_ms", Value::DoubleValue(1234.4)),
        kv("logbook.source", Value::IntValue(7)),
    ]);
    record.attributes[3] = kv("http.response.status_code", Value::DoubleValue(502.0));
    let mut rows = Rows::default();
    route_logs(request(vec![record]), &mut rows);
    assert!(rows.findings.is_empty(), "{:?}", rows.findings);
    let call: ApiCall = first_typed(&rows).expect("an api_calls row");
    assert_eq!((call.duration_ms, call.status_code), (1234, 502));
    assert_eq!(call.source, "7");
}

#[test]
fn a_time_in_seconds_is_rejected_with_its_unit_on_the_otel_logs_row() {
    let mut rows = Rows::default();
    let seconds = sync_run(vec![kv(
        "logbook.sync.started_at",
        Value::IntValue(1_763_700_000),
    )]);
    let iso = sync_run(vec![kv(
        "logbook.sync.started_at",
        s("2025-11-21T04:40:00Z"),
    )]);
    route_logs(request(vec![seconds, iso]), &mut rows);
    assert_eq!(typed_rows(&rows), 1, "only the ISO-8601 one is typed");
    let run: IntegrationSyncRun = first_typed(&rows).unwrap();
    assert_eq!(run.started_at, Ts(1_763_700_000_000_000_000));
    let logs = log_rows(&rows);
    let why = attribute(&logs[0].log_attributes, findings::REJECTED).expect("a reason");
    assert!(
        why.starts_with("integration_sync_runs.started_at: attribute logbook.sync.started_at: 1763700000 looks like Unix seconds"),
        "{why}"
    );
    assert_eq!(attribute(&logs[1].log_attributes, findings::REJECTED), None);
    assert_eq!(rows.findings[0].service, "bots");
}

#[test]
fn unknown_logbook_names_are_reported_with_the_closest_valid_name() {
    let mut wrong_kind = api_call("b");
    wrong_kind.event_name = "logbook.api_calls".into();
    let mut typo = api_call("b");
    typo.attributes
        .push(kv("logbook.duraton_ms", Value::IntValue(5)));
    let mut other = api_call("b");
    other.event_name = "checkout.completed".into();
    let mut rows = Rows::default();
    route_logs(request(vec![wrong_kind, typo, other]), &mut rows);
    assert_eq!(typed_rows(&rows), 1);
    let logs = log_rows(&rows);
    assert_eq!(
        attribute(&logs[0].log_attributes, findings::REJECTED),
        Some("event.name: logbook.api_calls names no log kind (did you mean logbook.api_call?)")
    );
    assert_eq!(
        attribute(&logs[1].log_attributes, findings::WARNINGS),
        Some(
            "api_calls: logbook.duraton_ms is not an attribute of this kind, ignored (did you mean logbook.duration_ms?)"
        )
    );
    // Outside the namespace, a record is only a log record.
    assert_eq!(logs[2].log_attributes.len(), 5);
    assert_eq!(rows.findings.len(), 2);
}

#[test]
fn deprecated_names_and_values_are_accepted_and_reported() {
    let mail = LogRecord {
        time_unix_nano: 1_763_700_000_000_000_000,
        event_name: "logbook.mail".into(),
        attributes: vec![
            kv("logbook.direction", s("outgoing")),
            kv("logbook.mail.mailbox", s("billing@")),
            kv("logbook.status", s("failed")),
            kv("logbook.mail.attempt", Value::IntValue(2)),
        ],
        ..Default::default()
    };
    let line = LogRecord {
        time_unix_nano: 1,
        event_name: "logbook.server_log".into(),
        severity_number: 9,
        body: Some(opentelemetry_proto::tonic::common::v1::AnyValue {
            value: Some(s("started")),
        }),
        attributes: vec![
            kv("logbook.server_log.category", s("application")),
            kv("code.namespace", s("app.Worker")),
        ],
        ..Default::default()
    };
    let mut rows = Rows::default();
    route_logs(request(vec![mail, line]), &mut rows);
    assert_eq!(typed_rows(&rows), 2);
    let mail: MailMessage = first_typed(&rows).unwrap();
    assert_eq!(
        (mail.direction.as_str(), mail.status.as_str(), mail.attempt),
        ("outbound", "error", 2)
    );
    let line: ServerLog = first_typed(&rows).unwrap();
    assert_eq!(line.logger, "app.Worker");
    assert!(line.fields.is_empty(), "{:?}", line.fields);
    let used: Vec<_> = rows
        .findings
        .iter()
        .map(|f| match &f.problem {
            Problem::Deprecated(d) => (d.used, d.instead),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        used,
        [
            ("outgoing", "outbound"),
            ("failed", "error"),
            ("logbook.mail.attempt", "logbook.attempt"),
            ("code.namespace", "code.function.name"),
        ]
    );
    let warnings = attribute(&log_rows(&rows)[0].log_attributes, findings::WARNINGS)
        .unwrap()
        .to_owned();
    assert!(
        warnings.contains("mail_messages.direction: outgoing is deprecated, send outbound"),
        "{warnings}"
    );
}

fn sync_run_span(status: i32) -> Span {
    Span {
        trace_id: vec![0xab; 16],
        span_id: vec![0xcd; 8],
        name: "sync xero".into(),
        start_time_unix_nano: 1_763_700_000_000_000_000,
        end_time_unix_nano: 1_763_700_060_000_000_000,
        attributes: vec![
            kv("event.name", s("logbook.integration.sync_run")),
            kv("logbook.integration.name", s("xero")),
        ],
        status: Some(Status {
            code: status,
            message: "token expired".into(),
        }),
        ..Default::default()
    }
}

#[test]
fn a_span_fills_status_and_times_and_its_error_status_wins() {
    let mut rows = Rows::default();
    route_traces(trace_request(sync_run_span(1)), &mut rows);
    let run: IntegrationSyncRun = first_typed(&rows).expect("a row from an Ok span");
    assert_eq!(run.status, "completed");
    assert_eq!(run.started_at, Ts(1_763_700_000_000_000_000));
    assert_eq!(run.ended_at, Ts(1_763_700_060_000_000_000));
    let mut failed = sync_run_span(2);
    failed.attributes.push(kv("logbook.status", s("completed")));
    let mut rows = Rows::default();
    route_traces(trace_request(failed), &mut rows);
    let run: IntegrationSyncRun = first_typed(&rows).expect("a row from an Error span");
    assert_eq!(
        (run.status.as_str(), run.error_message.as_str()),
        ("error", "token expired")
    );
    // The api_calls outcome too, whatever the attribute says.
    let mut call = api_call_span();
    call.attributes.push(kv("logbook.outcome", s("success")));
    let mut rows = Rows::default();
    route_traces(trace_request(call), &mut rows);
    assert_eq!(first_typed::<ApiCall>(&rows).unwrap().outcome, "error");
}

#[test]
fn a_span_cannot_make_a_kind_whose_message_is_a_body() {
    let mut span = sync_run_span(1);
    span.attributes = vec![
        kv("event.name", s("logbook.server_log")),
        kv("logbook.server_log.category", s("application")),
    ];
    let mut rows = Rows::default();
    route_traces(trace_request(span), &mut rows);
    assert_eq!(typed_rows(&rows), 0);
    let rejections = rows.rejections();
    assert_eq!(rejections[0].column, "message");
    assert!(rejections[0].reason.contains("send a log record"));
    let spans = span_rows(&rows);
    assert!(
        attribute(&spans[0].span_attributes, findings::REJECTED)
            .unwrap()
            .starts_with("server_logs.message: a span cannot")
    );
}

#[test]
fn the_dry_run_reports_each_record_and_stores_nothing() {
    let mut missing = api_call("b");
    missing.attributes.retain(|kv| kv.key != "url.full");
    let bytes = prost::Message::encode_to_vec(&request(vec![api_call("good-bot"), missing]));
    let report = dry_run::logs(&LogsRequest::decode(&bytes).unwrap());
    assert_eq!(report.rejected, 1);
    let good = &report.records[0];
    let tables: Vec<_> = good.tables.iter().map(|t| t.table).collect();
    assert_eq!(tables, ["otel_logs", "api_calls"]);
    let columns = &good.tables[1].columns;
    assert_eq!(columns["bot"], "good-bot");
    assert_eq!(columns["status_code"], 201);
    assert_eq!(columns["time"], "2025-11-21T04:40:00Z");
    assert!(good.tables[1].empty.contains(&"duration_ms"));
    assert!(good.rejected.is_empty());
    let bad = &report.records[1];
    assert_eq!(bad.tables.len(), 1);
    assert_eq!(bad.rejected, ["api_calls.url: missing attribute url.full"]);
}
