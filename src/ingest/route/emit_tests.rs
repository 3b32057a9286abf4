use std::fmt::Debug;
use std::sync::{Arc, Mutex};

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
use opentelemetry_proto::transform::logs::tonic::group_logs_by_resource_and_scope;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::logs::{LogBatch, LogExporter};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use std::time::Duration;

use opentelemetry::trace::{TraceContextExt, TracerProvider};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::logs::SdkLoggerProvider;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;

use crate::ingest::route::{self, Origin, Rows};
use crate::schema::*;
use crate::telemetry::{Telemetry, TelemetryConfig, resource};

/// Encodes each exported batch as the OTLP exporters do, and keeps the requests.
#[derive(Debug, Clone, Default)]
struct Capture {
    resource: Option<Resource>,
    requests: Arc<Mutex<Vec<ExportLogsServiceRequest>>>,
}

impl LogExporter for Capture {
    async fn export(&self, batch: LogBatch<'_>) -> OTelSdkResult {
        let resource = self
            .resource
            .as_ref()
            .map(ResourceAttributesWithSchema::from)
            .unwrap_or_default();
        let resource_logs = group_logs_by_resource_and_scope(&batch, &resource);
        self.requests
            .lock()
            .unwrap()
            .push(ExportLogsServiceRequest { resource_logs });
        Ok(())
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.resource = Some(resource.clone());
    }
}

fn config() -> TelemetryConfig {
    TelemetryConfig {
        service_name: "svc-test".into(),
        environment: "env-test".into(),
        ..TelemetryConfig::default()
    }
}

/// A telemetry whose logs end in `Capture`, exported as soon as they are emitted.
fn captured() -> (Telemetry, Capture) {
    let capture = Capture::default();
    let logs = SdkLoggerProvider::builder()
        .with_resource(resource(&config()))
        .with_simple_exporter(capture.clone())
        .build();
    let traces = SdkTracerProvider::builder().build();
    let telemetry = Telemetry::from_providers(logs, traces, Duration::from_secs(1));
    (telemetry, capture)
}

const TRACE_ID: &str = "0af7651916cd43dd8448eb211c80319c";
const SPAN_ID: &str = "b7ad6b7169203331";

/// A row with every column set to a non-default value, built from the kind's definition.
fn sample<T: LogKind + DeserializeOwned>() -> T {
    let mut fields = serde_json::Map::new();
    for (i, column) in T::TABLE.all_columns().enumerate() {
        let value = match column.source.unwrap() {
            Source::RowId => json!(uuid::Uuid::now_v7().to_string()),
            Source::Time => json!(1_763_700_000_123_456_789_i64),
            Source::ServiceName => json!("svc-test"),
            Source::Environment => json!("env-test"),
            Source::TraceId => json!(TRACE_ID),
            Source::SpanId => json!(SPAN_ID),
            Source::SeverityText => json!("warning"),
            Source::SeverityNumber => json!(14),
            Source::OtherAttributes => json!([["custom.key", "custom value"], ["k2", "v2"]]),
            Source::Body | Source::Attr(_) => match (column.one_of.last(), column.type_name()) {
                (Some(allowed), _) => json!(allowed),
                (None, "Bool") => json!(true),
                (None, "UInt8") => json!(7 + i),
                (None, "UInt16" | "UInt32") => json!(1000 + i),
                (None, "DateTime64(9, 'UTC')") => json!(1_763_000_000_000_000_000_i64 + i as i64),
                (None, ty) if ty.starts_with("Array(") => json!([format!("a{i}"), format!("b{i}")]),
                (None, _) => json!(format!("{} value {i}", column.name)),
            },
        };
        fields.insert(column.name.to_owned(), value);
    }
    // From text: `RowId` deserializes from a borrowed string.
    serde_json::from_str(&Value::Object(fields).to_string()).unwrap()
}

/// Emits `row` through [`Telemetry::emit`] and routes what the exporter would have sent.
fn emit_and_route<T: LogKind>(telemetry: &Telemetry, capture: &Capture, row: &T) -> T {
    emit_and_read(telemetry, capture, row).0
}

/// [`emit_and_route`], with the record's `otel_logs` row. Every typed event reads well in a
/// log viewer: a one-line body and the severity text an SDK sends with its number.
fn emit_and_read<T: LogKind>(telemetry: &Telemetry, capture: &Capture, row: &T) -> (T, OtelLogRow) {
    telemetry.emit(row);
    let requests = std::mem::take(&mut *capture.requests.lock().unwrap());
    assert_eq!(requests.len(), 1, "{}", T::TABLE.name);
    let mut rows = Rows::default();
    let origin = Origin {
        queue_id: 1,
        position: 1,
    };
    let bytes = prost::Message::encode_to_vec(&requests[0]);
    route::logs(
        &crate::ingest::decode::LogsRequest::decode(&bytes).unwrap(),
        origin,
        &mut rows,
    );
    assert!(rows.findings.is_empty(), "{:?}", rows.findings);
    assert_eq!(rows.logs.rows, 1);
    let log = OtelLogRow::read_row(&mut rows.logs.bytes.as_slice()).unwrap();
    assert_eq!(Some(log.event_name.as_str()), T::TABLE.event_name);
    assert!(
        !log.body.is_empty() && !log.body.contains('\n'),
        "{}: {:?}",
        T::TABLE.name,
        log.body
    );
    assert_eq!(
        log.severity_text,
        severity_text(log.severity_number),
        "{}",
        T::TABLE.name
    );
    assert!(log.severity_number > 0, "{}", T::TABLE.name);
    let typed = rows.table(T::TABLE).unwrap();
    assert_eq!(typed.rows, 1, "{} not routed", T::TABLE.name);
    let mut input = typed.bytes.as_slice();
    let routed = T::read_row(&mut input).unwrap();
    assert!(input.is_empty());
    (routed, log)
}

fn round_trips<T: LogKind + DeserializeOwned + Clone + PartialEq + Debug>() {
    let (telemetry, capture) = captured();
    let row = sample::<T>();
    assert_eq!(emit_and_route(&telemetry, &capture, &row), row);
}

macro_rules! every_kind {
    ($($kind:ident),* $(,)?) => {{
        $(round_trips::<$kind>();)*
        [$($kind::TABLE.name),*].len()
    }};
}

#[test]
fn every_kind_round_trips_through_emit_and_the_router() {
    let checked = crate::for_each_kind!(every_kind);
    assert_eq!(checked, KINDS.len(), "a new kind must be added here");
}

#[test]
fn typed_events_join_the_current_span() {
    let (telemetry, capture) = captured();
    let tracer = SdkTracerProvider::builder().build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(tracer.tracer("test")));
    let row = IntegrationError {
        integration: "xero".into(),
        message: "token expired".into(),
        ..Default::default()
    };
    let (routed, span) = tracing::subscriber::with_default(subscriber, || {
        let span = tracing::info_span!("sync");
        let _entered = span.enter();
        let context = span.context().span().span_context().clone();
        (emit_and_route(&telemetry, &capture, &row), context)
    });
    assert!(span.is_valid());
    assert_eq!(routed.trace_id, span.trace_id().to_string());
    assert_eq!(routed.span_id, span.span_id().to_string());
}

#[test]
fn unset_time_id_and_severity_number_are_filled_in() {
    let (telemetry, capture) = captured();
    let row = MonitoringEvent {
        severity: "error".into(),
        message: "queue stuck".into(),
        ..Default::default()
    };
    let before = Ts::now();
    let routed = emit_and_route(&telemetry, &capture, &row);
    assert_eq!(routed.severity_number, 17);
    assert_eq!(routed.severity, "error");
    assert!(routed.time >= before, "{:?}", routed.time);
    // No `logbook.id`: the router derives one.
    assert!(!routed.id.0.is_nil());
    assert_eq!(routed.trace_id, "");
    assert_eq!(routed.service, "svc-test");
}

#[test]
fn typed_events_get_a_summary_body_and_the_severity_of_their_outcome() {
    let (telemetry, capture) = captured();
    let call = |outcome: &str, status_code| ApiCall {
        bot: "billing-bot".into(),
        method: "POST".into(),
        url: "https://api.example.com/charge".into(),
        status_code,
        outcome: outcome.into(),
        ..Default::default()
    };
    let (_, failed) = emit_and_read(&telemetry, &capture, &call("error", 502));
    assert_eq!(
        failed.body,
        "POST https://api.example.com/charge → 502 (billing-bot)"
    );
    assert_eq!(
        (failed.severity_text.as_str(), failed.severity_number),
        ("ERROR", 17)
    );
    let (_, ok) = emit_and_read(&telemetry, &capture, &call("success", 200));
    assert_eq!((ok.severity_text.as_str(), ok.severity_number), ("INFO", 9));
    let retry = MailMessage {
        direction: "outbound".into(),
        mailbox: "billing".into(),
        status: "error".into(),
        attempt: 1,
        ..Default::default()
    };
    let (_, warned) = emit_and_read(&telemetry, &capture, &retry);
    assert_eq!(warned.severity_text, "WARN");
    // A kind with its own severity keeps it, sent as the SDKs spell it.
    let event = MonitoringEvent {
        severity: "warning".into(),
        message: "disk 90% full".into(),
        ..Default::default()
    };
    let (routed, log) = emit_and_read(&telemetry, &capture, &event);
    assert_eq!(
        (log.severity_text.as_str(), log.body.as_str()),
        ("WARN", "disk 90% full")
    );
    assert_eq!(routed.severity, "warning");
}
