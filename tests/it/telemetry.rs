//! `logbook::telemetry` against a real logbook: every kind's typed event lands in its table
//! over gRPC and HTTP, and the example service's rows, logs and spans are linked.

use std::time::Duration;

use logbook::schema::{self, *};
use logbook::telemetry::{Protocol, Telemetry, TelemetryConfig};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::harness::{TestDb, test_db};
use crate::ingest::{FAST, wait_for};
use crate::logbook::Logbook;

const WITHIN: Duration = Duration::from_secs(30);

/// A row of `T` with every column set, distinct per tenant, and what its columns should read.
fn sample<T: LogKind + DeserializeOwned>(tenant: &str) -> (T, Vec<(&'static str, String)>) {
    let mut fields = serde_json::Map::new();
    let mut expected = Vec::new();
    for (i, column) in T::TABLE.all_columns().enumerate() {
        let value = match column.source.unwrap() {
            Source::RowId => json!(uuid::Uuid::now_v7().to_string()),
            Source::Time => json!(Ts::now().0),
            Source::Attr("logbook.tenant") => json!(tenant),
            Source::SeverityText => json!("error"),
            Source::SeverityNumber => json!(17),
            Source::OtherAttributes => json!([["custom.key", "custom value"]]),
            Source::Body | Source::Attr(_) => match (column.one_of.last(), column.type_name()) {
                (Some(allowed), _) => json!(allowed),
                (None, "Bool") => json!(true),
                (None, "UInt8") => json!(7 + i),
                (None, "UInt16" | "UInt32") => json!(1000 + i),
                (None, "DateTime64(9, 'UTC')") => json!(Ts::now().0),
                (None, ty) if ty.starts_with("Array(") => json!([format!("a{i}")]),
                (None, _) => json!(format!("{tenant} {} {i}", column.name)),
            },
            // From the resource and the trace context, checked apart.
            _ => {
                fields.insert(column.name.to_owned(), json!(""));
                continue;
            }
        };
        match &value {
            Value::String(s)
                if column.type_name().contains("String") || column.type_name() == "UUID" =>
            {
                expected.push((column.name, s.clone()))
            }
            Value::Number(n) if column.type_name().starts_with("UInt") => {
                expected.push((column.name, n.to_string()))
            }
            _ => {}
        }
        fields.insert(column.name.to_owned(), value);
    }
    // From text: `RowId` deserializes from a borrowed string.
    let row = serde_json::from_str(&Value::Object(fields).to_string()).unwrap();
    (row, expected)
}

/// Per kind: table, row id and the expected `(column, toString(value))`.
type Expectation = (&'static str, String, Vec<(&'static str, String)>);

fn emit_one<T: LogKind + DeserializeOwned>(
    telemetry: &Telemetry,
    tenant: &str,
    expectations: &mut Vec<Expectation>,
) {
    let (row, expected) = sample::<T>(tenant);
    telemetry.emit(&row);
    let id = expected
        .iter()
        .find(|(name, _)| *name == "id")
        .map(|(_, id)| id.clone())
        .unwrap();
    expectations.push((T::TABLE.name, id, expected));
}

macro_rules! emit_every_kind {
    ($telemetry:expr, $tenant:expr, $($kind:ident),* $(,)?) => {{
        let mut expectations = Vec::new();
        $(emit_one::<$kind>($telemetry, $tenant, &mut expectations);)*
        expectations
    }};
}

async fn every_kind_lands_in_its_table(name: &str, protocol: Protocol) {
    let db = test_db(name).await;
    let logbook = Logbook::start(&db, FAST).await;
    let config = TelemetryConfig {
        enabled: true,
        endpoint: match protocol {
            Protocol::Grpc => logbook.grpc.clone(),
            Protocol::Http => logbook.http.clone(),
        },
        protocol,
        service_name: "it-telemetry".into(),
        environment: "test".into(),
        ..TelemetryConfig::default()
    };
    let telemetry = Telemetry::new(&config).unwrap();
    let tenant = format!("{name}-tenant");
    let expectations = logbook::for_each_kind!(emit_every_kind, &telemetry, &tenant);
    assert_eq!(expectations.len(), schema::KINDS.len());
    telemetry.shutdown().await.unwrap();
    for (table, id, expected) in expectations {
        let condition = format!("id = toUUID('{id}')");
        let found = wait_for(&db, table, &condition, 1, WITHIN).await;
        assert_eq!(found, 1, "{table} {id}: {}", logbook.stderr());
        for (column, value) in expected {
            let stored = db
                .client
                .query(&format!(
                    "SELECT toString(`{column}`) FROM `{table}` WHERE {condition}"
                ))
                .fetch_one::<String>()
                .await
                .unwrap();
            assert_eq!(stored, value, "{table}.{column}");
        }
        for (column, value) in [("service", "it-telemetry"), ("environment", "test")] {
            let stored = count(&db, table, &format!("{condition} AND {column} = '{value}'")).await;
            assert_eq!(stored, 1, "{table}.{column}");
        }
    }
}

async fn count(db: &TestDb, table: &str, condition: &str) -> u64 {
    crate::ingest::count_where(db, table, condition).await
}

#[tokio::test]
async fn telemetry_emits_every_kind_over_grpc() {
    every_kind_lands_in_its_table("telemetry_grpc", Protocol::Grpc).await;
}

#[tokio::test]
async fn telemetry_emits_every_kind_over_http() {
    every_kind_lands_in_its_table("telemetry_http", Protocol::Http).await;
}

#[tokio::test]
async fn example_service_rows_logs_and_spans_are_linked() {
    let db = test_db("telemetry_example").await;
    let logbook = Logbook::start(&db, FAST).await;
    let tenant = "example-tenant";
    let output = tokio::process::Command::new(env!("CARGO"))
        .args([
            "run",
            "--quiet",
            "-p",
            "logbook-events",
            "--example",
            "service",
            "--",
        ])
        .args(["--endpoint", &logbook.http, "--protocol", "http"])
        .args(["--tenant", tenant])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("sent api_calls"), "{stdout}");

    let tenant_is = format!("tenant = '{tenant}'");
    let runs = wait_for(&db, "integration_sync_runs", &tenant_is, 4, WITHIN).await;
    assert_eq!(runs, 4, "{}", logbook.stderr());
    for status in ["created", "pending", "running", "completed"] {
        let condition =
            format!("{tenant_is} AND status = '{status}' AND service = 'example-integrator'");
        assert_eq!(
            count(&db, "integration_sync_runs", &condition).await,
            1,
            "{status}"
        );
    }
    let redacted = format!(
        "{tenant_is} AND position(request_body, 'hunter2-secret') = 0 AND position(request_body, '[REDACTED]') > 0"
    );
    assert_eq!(wait_for(&db, "api_calls", &redacted, 1, WITHIN).await, 1);
    for table in ["mail_messages", "monitoring_events"] {
        assert_eq!(
            wait_for(&db, table, &tenant_is, 1, WITHIN).await,
            1,
            "{table}"
        );
    }

    let plain = "ServiceName = 'example-integrator' AND Body = 'sync finished' AND EventName NOT LIKE 'logbook.%'";
    assert_eq!(wait_for(&db, "otel_logs", plain, 1, WITHIN).await, 1);
    // The typed rows carry the sync span's trace, and the span itself arrived.
    let linked = format!(
        "SpanName = 'integration_sync' AND ServiceName = 'example-integrator' AND TraceId IN \
         (SELECT trace_id FROM integration_sync_runs WHERE {tenant_is} AND trace_id != '')"
    );
    assert_eq!(wait_for(&db, "otel_traces", &linked, 1, WITHIN).await, 1);
    let same_trace = format!(
        "{tenant_is} AND trace_id IN (SELECT TraceId FROM otel_traces WHERE SpanName = 'integration_sync')"
    );
    assert_eq!(count(&db, "api_calls", &same_trace).await, 1);
    // The call happened inside its HTTP client span, a child of the entity's span.
    let client_span = format!(
        "{tenant_is} AND span_id IN (SELECT SpanId FROM otel_traces WHERE SpanKind = 'Client' \
         AND SpanName = 'POST' AND SpanAttributes['http.request.method'] = 'POST' \
         AND SpanAttributes['server.address'] = 'api.xero.com' AND ParentSpanId IN \
         (SELECT SpanId FROM otel_traces WHERE SpanName = 'sync invoices'))"
    );
    assert_eq!(count(&db, "api_calls", &client_span).await, 1);
}
