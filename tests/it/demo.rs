//! `logbook demo` against a real logbook: every typed table fills, only the degraded
//! integration fails 30% or more of its syncs, sync runs and API calls are traces whose spans
//! their rows link to, and no secret the demo sends is stored (spans' attributes included).

use std::process::Command;
use std::time::Duration;

use logbook::demo::{DEGRADED, DISABLED, SECRET_MARK};
use logbook::schema;
use serde::Deserialize;

use crate::harness::test_db;
use crate::ingest::{FAST, count_where, wait_for};
use crate::logbook::Logbook;

#[derive(Debug, Deserialize, clickhouse::Row)]
struct Rate {
    integration: String,
    rate: f64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_fills_every_table_with_one_degraded_integration_and_no_secrets() {
    let db = test_db("demo_run").await;
    let logbook = Logbook::start(&db, FAST).await;
    let output = Command::new(env!("CARGO_BIN_EXE_logbook"))
        .args([
            "demo",
            "--endpoint",
            &logbook.grpc,
            "--duration",
            "4s",
            "--rate",
            "100",
            "--seed",
            "7",
        ])
        .args(["--backfill", "1", "--backfill-per-hour", "10"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("demo sent"), "{stdout}");
    // The demo exits once its exports are acknowledged; count rows once they are all stored.
    logbook.stored_all_acknowledged().await;
    for kind in schema::KINDS {
        assert!(
            count_where(&db, kind.name, "1").await > 0,
            "{} received no rows",
            kind.name
        );
    }
    let rates: Vec<Rate> = db
        .client
        .query(
            "SELECT integration, countIf(status = 'error') / count() AS rate FROM integration_sync_runs \
             WHERE status IN ('completed', 'error') AND time > now() - INTERVAL 24 HOUR GROUP BY integration",
        )
        .fetch_all()
        .await
        .unwrap();
    assert!(rates.len() >= 4, "{rates:?}");
    for rate in &rates {
        assert_ne!(
            rate.integration, DISABLED,
            "a disabled integration does not sync"
        );
        assert_eq!(rate.rate >= 0.3, rate.integration == DEGRADED, "{rate:?}");
    }
    // Typed events read well in a log viewer: a body, and the severity text SDKs send.
    let typed = "EventName LIKE 'logbook.%'";
    assert!(count_where(&db, "otel_logs", typed).await > 100);
    let unreadable = count_where(
        &db,
        "otel_logs",
        &format!(
            "{typed} AND (Body = '' OR SeverityNumber = 0 OR SeverityText NOT IN \
             ('DEBUG', 'INFO', 'WARN', 'ERROR', 'FATAL'))"
        ),
    )
    .await;
    assert_eq!(
        unreadable, 0,
        "typed events without a body or an SDK severity text"
    );
    // The demo uses the current names only: nothing deprecated, unknown or rejected.
    let warned = count_where(
        &db,
        "otel_logs",
        "mapContains(LogAttributes, 'logbook.warnings') OR mapContains(LogAttributes, 'logbook.rejected')",
    )
    .await;
    assert_eq!(warned, 0);
    // A sync run is a trace: a root span, a child per entity, an HTTP client span inside it.
    let roots = "ParentSpanId = '' AND SpanName LIKE 'integration sync %'";
    assert!(wait_for(&db, "otel_traces", roots, 1, Duration::from_secs(20)).await > 0);
    assert!(
        wait_for(
            &db,
            "otel_traces_trace_id_ts",
            "1",
            1,
            Duration::from_secs(20)
        )
        .await
            > 0
    );
    let nested: u64 = db
        .client
        .query(
            "SELECT count() FROM otel_traces AS request INNER JOIN otel_traces AS entity \
             ON request.ParentSpanId = entity.SpanId AND request.TraceId = entity.TraceId \
             WHERE request.SpanKind = 'Client' AND entity.SpanName LIKE 'sync %' \
             AND request.SpanAttributes['http.request.method'] = 'GET' \
             AND request.SpanAttributes['server.address'] != ''",
        )
        .fetch_one()
        .await
        .unwrap();
    assert!(nested > 0, "no outbound request span inside an entity span");
    assert_eq!(
        count_where(
            &db,
            "integration_sync_runs",
            "trace_id = '' OR span_id = ''"
        )
        .await,
        0,
        "every sync run row carries its span's ids"
    );
    let linked: u64 = db
        .client
        .query(
            "SELECT count() FROM api_calls AS call INNER JOIN otel_traces AS span \
             ON call.span_id = span.SpanId AND call.trace_id = span.TraceId \
             WHERE span.SpanKind = 'Client' AND span.SpanName = call.method",
        )
        .fetch_one()
        .await
        .unwrap();
    assert!(linked > 0, "no API call links to its HTTP client span");
    for table in schema::tables().map(|t| t.name) {
        let leaked = count_where(
            &db,
            table,
            &format!("position(formatRow('TSV', *), '{SECRET_MARK}') > 0"),
        )
        .await;
        assert_eq!(leaked, 0, "a demo secret reached {table}");
    }
}
