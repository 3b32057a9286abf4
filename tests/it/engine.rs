//! The test ClickHouse behaves like ClickHouse where logbook relies on it:
//! typed round trips through the `clickhouse` crate (LZ4 on), bound
//! parameters, error codes, TTL, authentication, restarts.

use std::time::{Duration, Instant};

use clickhouse::Row;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::harness::{TestServer, test_db};

#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
struct LogRow {
    id: u64,
    service: String,
    level: String,
    status: u16,
    #[serde(with = "clickhouse::serde::time::datetime64::nanos")]
    ts: OffsetDateTime,
    attrs: Vec<(String, String)>,
    trace_id: Option<String>,
}

const LOG_TABLE: &str = "CREATE TABLE logs (
    id UInt64,
    service String,
    level LowCardinality(String),
    status UInt16,
    ts DateTime64(9, 'UTC'),
    attrs Map(String, String),
    trace_id Nullable(String)
) ENGINE = MergeTree ORDER BY id";

fn log_row(i: u64) -> LogRow {
    let base = OffsetDateTime::from_unix_timestamp_nanos(1_700_000_000_123_456_789).unwrap();
    LogRow {
        id: i,
        // Awkward bytes on purpose: quotes, backslashes, tabs, newlines, UTF-8.
        service: format!("svc-{}\t'\"\\\n€{i}", i % 17),
        level: ["debug", "info", "warn", "error"][(i % 4) as usize].to_string(),
        status: (i % 65_536) as u16,
        ts: base + Duration::from_nanos(i * 1_000_003),
        attrs: (0..i % 4)
            .map(|k| (format!("key{k}"), format!("value {i}/{k}")))
            .collect(),
        trace_id: (!i.is_multiple_of(3)).then(|| format!("{i:032x}")),
    }
}

#[tokio::test]
async fn hundred_thousand_rows_of_every_logbook_type_round_trip() {
    let db = test_db("hundred_thousand_rows_round_trip").await;
    db.client.query(LOG_TABLE).execute().await.unwrap();
    let rows: Vec<LogRow> = (0..100_000).map(log_row).collect();

    let started = Instant::now();
    let mut insert = db.client.insert::<LogRow>("logs").await.unwrap();
    for row in &rows {
        insert.write(row).await.unwrap();
    }
    insert.end().await.unwrap();
    let inserted = started.elapsed();

    let started = Instant::now();
    let fetched = db
        .client
        .query("SELECT ?fields FROM logs ORDER BY id")
        .fetch_all::<LogRow>()
        .await
        .unwrap();
    eprintln!(
        "100k rows: insert {inserted:?}, fetch {:?}",
        started.elapsed()
    );
    assert_eq!(fetched.len(), rows.len());
    for (got, want) in fetched.iter().zip(&rows) {
        assert_eq!(got, want);
    }

    // The same data seen from SQL: the server stored what we sent, not just echoed it.
    let (status_sum, nulls, attr_count, levels): (u64, u64, u64, u64) = db
        .client
        .query(
            "SELECT sum(status), countIf(trace_id IS NULL), sum(length(attrs)), uniqExact(level) \
             FROM logs",
        )
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(
        status_sum,
        rows.iter().map(|r| u64::from(r.status)).sum::<u64>()
    );
    assert_eq!(
        nulls,
        rows.iter().filter(|r| r.trace_id.is_none()).count() as u64
    );
    assert_eq!(
        attr_count,
        rows.iter().map(|r| r.attrs.len() as u64).sum::<u64>()
    );
    assert_eq!(levels, 4);
    let max_ts: i64 = db
        .client
        .query("SELECT toUnixTimestamp64Nano(max(ts)) FROM logs")
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(i128::from(max_ts), rows[99_999].ts.unix_timestamp_nanos());
}

#[tokio::test]
async fn bound_parameters_are_values_never_sql() {
    let db = test_db("bound_parameters_are_values").await;
    db.client.query(LOG_TABLE).execute().await.unwrap();
    let tricky = "it's a \\'trap\\' \" `x` {y:String} \\n\t--";
    let mut rows: Vec<LogRow> = (0..10).map(log_row).collect();
    rows[7].service = tricky.to_string();
    let mut insert = db.client.insert::<LogRow>("logs").await.unwrap();
    for row in &rows {
        insert.write(row).await.unwrap();
    }
    insert.end().await.unwrap();

    let found = db
        .client
        .query(
            "SELECT ?fields FROM logs WHERE service = {service:String} AND status >= {min:UInt16}",
        )
        .param("service", tricky)
        .param("min", 5u16)
        .fetch_all::<LogRow>()
        .await
        .unwrap();
    assert_eq!(found, vec![rows[7].clone()]);

    let injected = db
        .client
        .query("SELECT count() FROM logs WHERE service = {service:String}")
        .param("service", "' OR 1 = 1 OR '' = '")
        .fetch_one::<u64>()
        .await
        .unwrap();
    assert_eq!(injected, 0);

    let echoed: String = db
        .client
        .query("SELECT {s:String}")
        .param("s", tricky)
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(echoed, tricky);
}

#[tokio::test]
async fn failing_query_reports_clickhouse_code_and_message() {
    let db = test_db("failing_query_reports_code").await;
    let err = db
        .client
        .query("SELECT * FROM no_such_table")
        .fetch_all::<u8>()
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("Code: 60"), "{err}");
    assert!(err.contains("no_such_table"), "{err}");
    assert!(err.contains("UNKNOWN_TABLE"), "{err}");

    let err = db
        .client
        .query("SELEC 1")
        .execute()
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("Code: 62") && err.contains("SYNTAX_ERROR"),
        "{err}"
    );
}

#[tokio::test]
async fn error_in_the_middle_of_a_stream_reaches_the_client() {
    let db = test_db("error_in_the_middle_of_a_stream").await;
    let mut cursor = db
        .client
        .query("SELECT throwIf(number = 300000, 'boom') FROM numbers(400000)")
        .with_setting("max_block_size", "1000")
        .fetch::<u8>()
        .unwrap();
    let mut rows = 0;
    let err = loop {
        match cursor.next().await {
            Ok(Some(_)) => rows += 1,
            Ok(None) => panic!("the stream ended without the error after {rows} rows"),
            Err(e) => break e.to_string(),
        }
    };
    assert!(err.contains("Code: 395") && err.contains("boom"), "{err}");
}

#[tokio::test]
async fn ttl_table_drops_expired_rows_after_optimize_final() {
    let db = test_db("ttl_table_drops_expired_rows").await;
    db.client
        .query(
            "CREATE TABLE events (id UInt32, ts DateTime) ENGINE = MergeTree ORDER BY id \
             TTL ts + INTERVAL 3 SECOND",
        )
        .execute()
        .await
        .unwrap();
    // Rows already past their TTL would be dropped by the INSERT itself, so the
    // short-lived rows are fresh when inserted and expire while we wait.
    db.client
        .query("INSERT INTO events SELECT number, now() FROM numbers(10)")
        .execute()
        .await
        .unwrap();
    db.client
        .query("INSERT INTO events SELECT 100 + number, now() + INTERVAL 1 DAY FROM numbers(5)")
        .execute()
        .await
        .unwrap();
    let count = || async {
        db.client
            .query("SELECT count() FROM events")
            .fetch_one::<u64>()
            .await
            .unwrap()
    };
    assert_eq!(count().await, 15);

    tokio::time::sleep(Duration::from_secs(5)).await;
    db.client
        .query("OPTIMIZE TABLE events FINAL")
        .execute()
        .await
        .unwrap();
    let left = db
        .client
        .query("SELECT id FROM events ORDER BY id")
        .fetch_all::<u32>()
        .await
        .unwrap();
    assert_eq!(left, vec![100, 101, 102, 103, 104]);
}

#[tokio::test]
async fn wrong_password_is_refused_with_code_516() {
    let db = test_db("wrong_password_is_refused").await;
    let err = db
        .client
        .clone()
        .with_password(format!("{}-wrong", db.password))
        .query("SELECT 1")
        .fetch_one::<u8>()
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("516") && err.contains("AUTHENTICATION_FAILED"),
        "{err}"
    );
    // The right password still works.
    let one: u8 = db.client.query("SELECT 1").fetch_one().await.unwrap();
    assert_eq!(one, 1);
}

#[tokio::test]
async fn own_test_server_keeps_its_data_across_stop_and_restart() {
    let mut server = TestServer::start(None, None);
    let client = server.client();
    client
        .query("CREATE TABLE kept (n UInt64) ENGINE = MergeTree ORDER BY n")
        .execute()
        .await
        .unwrap();
    client
        .query("INSERT INTO kept SELECT number FROM numbers(1000)")
        .execute()
        .await
        .unwrap();
    let port = server.port();

    server.stop();
    let down = client.query("SELECT 1").fetch_one::<u8>().await;
    assert!(down.is_err(), "a stopped server still answers");

    server.restart();
    assert_eq!(server.port(), port);
    let sum: u64 = server
        .client()
        .query("SELECT sum(n) FROM kept")
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(sum, 999 * 1000 / 2);
}
