//! A record nested deeper than logbook keeps is stored with the over-deep part replaced by a
//! marker, counted, and reported in `partial_success`, over every transport; the records around
//! it are stored exactly.

use std::time::Duration;

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValueList};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::{Event, Link};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;

use crate::harness::test_db;
use crate::ingest::{FAST, api_call, kv, now_nanos, request, s, wait_for};
use crate::logbook::{Logbook, Transport};

/// What replaces a value nested deeper than logbook keeps (see docs/operations.md).
const MARKER: &str = "[truncated: nested deeper than 20 levels]";

/// A kvlist `levels` deep: `{"l": {"l": … "bottom"}}`.
fn kvlist(levels: usize) -> Value {
    let mut value = s("bottom");
    for _ in 0..levels {
        value = Value::KvlistValue(KeyValueList {
            values: vec![kv("l", value)],
        });
    }
    value
}

/// The text logbook stores for `kvlist(levels)` once truncated: 20 levels, then the marker.
fn stored_text(levels: usize) -> String {
    let kept = levels.min(20);
    let bottom = if levels > 20 {
        format!("\"{MARKER}\"")
    } else {
        "\"bottom\"".to_owned()
    };
    format!("{}{bottom}{}", "{\"l\":".repeat(kept), "}".repeat(kept))
}

async fn export_logs(
    logbook: &Logbook,
    transport: Transport,
    request: &ExportLogsServiceRequest,
) -> ExportLogsServiceResponse {
    match transport {
        Transport::Grpc => LogsServiceClient::connect(logbook.grpc.clone())
            .await
            .unwrap()
            .export(request.clone())
            .await
            .expect("the request is accepted")
            .into_inner(),
        _ => post(logbook, "/v1/logs", transport, request).await,
    }
}

async fn export_traces(
    logbook: &Logbook,
    transport: Transport,
    request: &ExportTraceServiceRequest,
) -> ExportTraceServiceResponse {
    match transport {
        Transport::Grpc => TraceServiceClient::connect(logbook.grpc.clone())
            .await
            .unwrap()
            .export(request.clone())
            .await
            .expect("the request is accepted")
            .into_inner(),
        _ => post(logbook, "/v1/traces", transport, request).await,
    }
}

/// Posts `request` in the transport's encoding and decodes the 200 answer in the same one.
async fn post<Q, A>(logbook: &Logbook, path: &str, transport: Transport, request: &Q) -> A
where
    Q: Message + serde::Serialize,
    A: Message + Default + serde::de::DeserializeOwned,
{
    let json = matches!(transport, Transport::HttpJson);
    let (content_type, body) = if json {
        ("application/json", serde_json::to_vec(request).unwrap())
    } else {
        ("application/x-protobuf", request.encode_to_vec())
    };
    let response = reqwest::Client::new()
        .post(format!("{}{path}", logbook.http))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body = response.bytes().await.unwrap();
    assert_eq!(
        status,
        200,
        "{transport:?}: {}",
        String::from_utf8_lossy(&body)
    );
    if json {
        serde_json::from_slice(&body).unwrap()
    } else {
        A::decode(body).unwrap()
    }
}

const TRANSPORTS: [Transport; 3] = [
    Transport::HttpProtobuf,
    Transport::HttpJson,
    Transport::Grpc,
];

#[tokio::test]
async fn a_log_record_nested_too_deep_is_stored_truncated_and_reported_on_every_transport() {
    let db = test_db("nesting_logs").await;
    let logbook = Logbook::start(&db, FAST).await;
    for transport in TRANSPORTS {
        let bot = format!("deep-{transport:?}");
        let mut deep = api_call(&bot, "deep");
        deep.body = Some(AnyValue {
            value: Some(kvlist(40)),
        });
        deep.attributes.push(kv("nested.deep", kvlist(40)));
        deep.attributes.push(kv("nested.fine", kvlist(20)));
        let records: Vec<LogRecord> = vec![api_call(&bot, "before"), deep, api_call(&bot, "after")];
        let response = export_logs(&logbook, transport, &request("nesting", records)).await;
        let partial = response
            .partial_success
            .unwrap_or_else(|| panic!("{transport:?}: the truncation is reported"));
        assert_eq!(partial.rejected_log_records, 0, "{transport:?}");
        assert_eq!(
            partial.error_message,
            "1 log record stored with 2 values truncated: arrays and key-value lists nested \
             deeper than 20 levels are replaced by \"[truncated: nested deeper than 20 levels]\"",
            "{transport:?}"
        );

        let condition = format!("bot = '{bot}'");
        assert_eq!(
            wait_for(&db, "api_calls", &condition, 3, Duration::from_secs(15)).await,
            3,
            "{transport:?}"
        );
        let rows: Vec<(String, String, u16, String)> = db
            .client
            .query(
                "SELECT end_user, method, status_code, outcome FROM api_calls WHERE bot = ? \
                 ORDER BY end_user",
            )
            .bind(&bot)
            .fetch_all()
            .await
            .unwrap();
        let row = |user: &str| {
            (
                user.to_owned(),
                "POST".to_owned(),
                200,
                "success".to_owned(),
            )
        };
        assert_eq!(rows, vec![row("after"), row("before"), row("deep")]);

        // Each table of a batch is inserted on its own task: api_calls being stored says
        // nothing yet of otel_logs.
        let condition = format!("LogAttributes['logbook.bot.name'] = '{bot}'");
        assert_eq!(
            wait_for(&db, "otel_logs", &condition, 3, Duration::from_secs(15)).await,
            3,
            "{transport:?}"
        );
        let (body, deep_attr, fine_attr): (String, String, String) = db
            .client
            .query(
                "SELECT Body, LogAttributes['nested.deep'], LogAttributes['nested.fine'] \
                 FROM otel_logs WHERE LogAttributes['logbook.bot.name'] = ? \
                 AND LogAttributes['user.name'] = 'deep'",
            )
            .bind(&bot)
            .fetch_one()
            .await
            .unwrap();
        assert_eq!(body, stored_text(40), "{transport:?}");
        assert_eq!(deep_attr, stored_text(40), "{transport:?}");
        assert_eq!(fine_attr, stored_text(20), "{transport:?}");
        let bodies: Vec<String> = db
            .client
            .query(
                "SELECT Body FROM otel_logs WHERE LogAttributes['logbook.bot.name'] = ? \
                 AND Body != '' AND LogAttributes['user.name'] != 'deep' ORDER BY Body",
            )
            .bind(&bot)
            .fetch_all()
            .await
            .unwrap();
        assert_eq!(bodies, vec!["after", "before"], "{transport:?}");
    }
    let metrics = logbook.metrics().await;
    assert!(
        metrics.contains("logbook_truncated_records_total{reason=\"too_deep\",signal=\"logs\"} 3"),
        "{metrics}"
    );
    assert!(
        metrics.contains("logbook_accepted_records_total{signal=\"logs\"} 9"),
        "{metrics}"
    );
}

fn span(name: &str, id: u8) -> Span {
    let start = now_nanos();
    Span {
        trace_id: vec![0x7d; 16],
        span_id: vec![id; 8],
        name: name.into(),
        kind: 2,
        start_time_unix_nano: start,
        end_time_unix_nano: start + 1_000_000,
        attributes: vec![kv("step", s(name))],
        ..Default::default()
    }
}

#[tokio::test]
async fn a_span_nested_too_deep_is_stored_truncated_and_reported_on_every_transport() {
    let db = test_db("nesting_traces").await;
    let logbook = Logbook::start(&db, FAST).await;
    for (n, transport) in TRANSPORTS.into_iter().enumerate() {
        let service = format!("deep-{transport:?}");
        let base = 3 * n as u8 + 1;
        let mut deep = span("deep", base + 1);
        deep.attributes.push(kv("nested.deep", kvlist(40)));
        deep.events.push(Event {
            time_unix_nano: deep.start_time_unix_nano,
            name: "retry".into(),
            attributes: vec![kv("nested.event", kvlist(40))],
            ..Default::default()
        });
        deep.links.push(Link {
            trace_id: vec![0x7e; 16],
            span_id: vec![0x01; 8],
            attributes: vec![kv("nested.link", kvlist(40))],
            ..Default::default()
        });
        let request = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![kv("service.name", s(&service))],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    spans: vec![span("before", base), deep, span("after", base + 2)],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let response = export_traces(&logbook, transport, &request).await;
        let partial = response
            .partial_success
            .unwrap_or_else(|| panic!("{transport:?}: the truncation is reported"));
        assert_eq!(partial.rejected_spans, 0, "{transport:?}");
        assert_eq!(
            partial.error_message,
            "1 span stored with 3 values truncated: arrays and key-value lists nested deeper \
             than 20 levels are replaced by \"[truncated: nested deeper than 20 levels]\"",
            "{transport:?}"
        );

        let condition = format!("ServiceName = '{service}'");
        assert_eq!(
            wait_for(&db, "otel_traces", &condition, 3, Duration::from_secs(15)).await,
            3,
            "{transport:?}"
        );
        let rows: Vec<(String, String, String)> = db
            .client
            .query(
                "SELECT SpanName, SpanId, SpanAttributes['step'] FROM otel_traces \
                 WHERE ServiceName = ? ORDER BY SpanId",
            )
            .bind(&service)
            .fetch_all()
            .await
            .unwrap();
        let row =
            |name: &str, id: u8| (name.to_owned(), format!("{id:02x}").repeat(8), name.into());
        assert_eq!(
            rows,
            vec![
                row("before", base),
                row("deep", base + 1),
                row("after", base + 2)
            ],
            "{transport:?}"
        );
        let (attr, event, link): (String, String, String) = db
            .client
            .query(
                "SELECT SpanAttributes['nested.deep'], \
                 `Events.Attributes`[1]['nested.event'], \
                 `Links.Attributes`[1]['nested.link'] \
                 FROM otel_traces WHERE ServiceName = ? AND SpanName = 'deep'",
            )
            .bind(&service)
            .fetch_one()
            .await
            .unwrap();
        assert_eq!(attr, stored_text(40), "{transport:?}");
        assert_eq!(event, stored_text(40), "{transport:?}");
        assert_eq!(link, stored_text(40), "{transport:?}");
    }
    let metrics = logbook.metrics().await;
    assert!(
        metrics
            .contains("logbook_truncated_records_total{reason=\"too_deep\",signal=\"traces\"} 3"),
        "{metrics}"
    );
}
