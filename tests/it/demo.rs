//! `logbook demo` against a real logbook: every typed table fills, only the degraded
//! integration fails 30% or more of its syncs, and no secret the demo sends is stored.

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
    for kind in schema::KINDS {
        assert!(
            wait_for(&db, kind.name, "1", 1, Duration::from_secs(20)).await > 0,
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
