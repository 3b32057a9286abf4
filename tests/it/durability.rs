//! Acknowledged data is never lost and never stored twice: through `kill -9` of logbook under
//! load, and through a ClickHouse outage; a full queue pushes back with 429 /
//! RESOURCE_EXHAUSTED instead of dropping.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::Mutex;

use crate::harness::{TestDb, TestServer, test_db};
use crate::ingest::{FAST, api_call_numbered, request, send_logs, wait_for};
use crate::logbook::{Logbook, Transport, metric};

/// Sends numbered api_call records, one request of `per_request` at a time, until told to
/// stop; records the numbers of every acknowledged request. A failed request's numbers are
/// never re-sent, so each number is sent at most once.
struct Load {
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<BTreeSet<u64>>>,
    refused: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Load {
    fn start(http: String, grpc: String, bot: &'static str, per_request: u64) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(BTreeSet::new()));
        let refused = Arc::new(AtomicU64::new(0));
        let task = {
            let (stop, acked, refused) = (stop.clone(), acked.clone(), refused.clone());
            tokio::spawn(async move {
                let mut next = 0u64;
                let mut round = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let numbers: Vec<u64> = (next..next + per_request).collect();
                    next += per_request;
                    round += 1;
                    let records = numbers.iter().map(|n| api_call_numbered(bot, *n)).collect();
                    let transport = if round.is_multiple_of(2) {
                        Transport::Grpc
                    } else {
                        Transport::HttpProtobuf
                    };
                    let status = send_to(&http, &grpc, transport, &request("load", records)).await;
                    match status {
                        Some(200) => acked.lock().await.extend(numbers),
                        Some(429) | Some(503) => {
                            refused.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        _ => tokio::time::sleep(Duration::from_millis(20)).await,
                    }
                }
            })
        };
        Load {
            stop,
            acked,
            refused,
            task,
        }
    }

    /// Waits until `more` records beyond those acknowledged so far are acknowledged.
    async fn wait_acked(&self, more: usize, what: &str) {
        let target = self.acked.lock().await.len() + more;
        let started = std::time::Instant::now();
        while self.acked.lock().await.len() < target {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "no {more} records acknowledged {what}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn finish(self) -> (BTreeSet<u64>, u64) {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap();
        let acked = self.acked.lock().await.clone();
        (acked, self.refused.load(Ordering::Relaxed))
    }
}

/// Sends without panicking on connection errors (logbook may be dead right now).
async fn send_to(
    http: &str,
    grpc: &str,
    transport: Transport,
    request: &opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest,
) -> Option<u16> {
    let probe = crate::logbook::Endpoints {
        http: http.to_owned(),
        grpc: grpc.to_owned(),
    };
    tokio::time::timeout(Duration::from_secs(10), probe.send(transport, request))
        .await
        .ok()
        .flatten()
}

#[derive(Debug, Deserialize, clickhouse::Row)]
struct Seen {
    user: String,
    copies: u64,
}

/// Every acknowledged number is stored exactly once in otel_logs and in api_calls, and every
/// acknowledged failed call once in errors; nothing is stored twice.
async fn assert_exactly_once(db: &TestDb, bot: &str, acked: &BTreeSet<u64>) {
    for (table, column, filter) in [
        ("api_calls", "end_user", format!("bot = '{bot}'")),
        (
            "otel_logs",
            "Body",
            format!("LogAttributes['logbook.bot.name'] = '{bot}'"),
        ),
    ] {
        let sql = format!(
            "SELECT {column} AS user, count() AS copies FROM {table} WHERE {filter} GROUP BY user"
        );
        // Unacknowledged requests may be stored too, so wait for the acknowledged numbers
        // themselves rather than for a count.
        let started = std::time::Instant::now();
        let (seen, missing) = loop {
            let rows: Vec<Seen> = db.client.query(&sql).fetch_all().await.unwrap();
            let seen: BTreeMap<u64, u64> = rows
                .into_iter()
                .map(|r| (r.user.trim_start_matches("n-").parse().unwrap(), r.copies))
                .collect();
            let missing: Vec<u64> = acked
                .iter()
                .filter(|n| !seen.contains_key(n))
                .copied()
                .collect();
            if missing.is_empty() || started.elapsed() > Duration::from_secs(60) {
                break (seen, missing);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let twice: Vec<_> = seen.iter().filter(|(_, c)| **c > 1).collect();
        assert!(
            twice.is_empty(),
            "{table}: stored more than once: {twice:?}"
        );
        assert!(
            missing.is_empty(),
            "{table}: {} acknowledged records lost, e.g. {:?}",
            missing.len(),
            &missing[..missing.len().min(5)]
        );
    }
    // Row ids are unique too (records of one request share a millisecond).
    let (rows, ids): (u64, u64) = db
        .client
        .query("SELECT count(), uniqExact(id) FROM api_calls WHERE bot = ?")
        .bind(bot)
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(rows, ids, "api_calls: two rows share an id");
    // The errors view saw every failed call once, replays and retries included.
    let failed = acked.iter().filter(|n| n.is_multiple_of(5)).count() as u64;
    wait_for(
        db,
        "errors",
        &format!("source = '{bot}'"),
        failed,
        Duration::from_secs(30),
    )
    .await;
    let (rows, distinct): (u64, u64) = db
        .client
        .query("SELECT count(), uniqExact(related_id) FROM errors WHERE source = ?")
        .bind(bot)
        .fetch_one()
        .await
        .unwrap();
    if rows != distinct {
        let twice: Vec<(String, String, u64)> = db
            .client
            .query(
                "SELECT toString(related_id), toString(min(time)), count() AS c FROM errors \
                 WHERE source = ? GROUP BY related_id HAVING c > 1 LIMIT 5",
            )
            .bind(bot)
            .fetch_all()
            .await
            .unwrap();
        panic!(
            "errors: a failed call was recorded twice ({rows} rows, {distinct} calls): {twice:?}"
        );
    }
    assert!(
        rows >= failed,
        "errors: {rows} rows for {failed} acknowledged failed calls"
    );
}

/// A test server of the test's own (so that it can be stopped) with a database on it.
pub async fn own_server(database: &str) -> (TestServer, TestDb) {
    let server = TestServer::start(None, None);
    let endpoint = server.endpoint();
    endpoint
        .client()
        .query(&format!("CREATE DATABASE IF NOT EXISTS {database}"))
        .execute()
        .await
        .unwrap();
    let db = TestDb {
        client: endpoint.client().with_database(database),
        url: endpoint.url.clone(),
        user: endpoint.user.clone(),
        password: endpoint.password.clone(),
        database: database.into(),
    };
    (server, db)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_load_loses_and_duplicates_nothing_acknowledged() {
    let db = test_db("durability_kill9").await;
    let mut logbook = Logbook::start(&db, FAST).await;
    let load = Load::start(logbook.http.clone(), logbook.grpc.clone(), "kill9-bot", 20);
    for restart in 0..3 {
        load.wait_acked(100, &format!("before kill {restart}"))
            .await;
        logbook.restart().await; // SIGKILL, then start again on the same queue
    }
    load.wait_acked(100, "after the last restart").await;
    let (acked, _) = load.finish().await;
    assert!(
        acked.len() > 100,
        "the load got through: {} records",
        acked.len()
    );
    assert_exactly_once(&db, "kill9-bot", &acked).await;
    let starts = logbook.stderr().matches("logbook serving").count();
    assert_eq!(starts, 4, "one start and three restarts on the same queue");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clickhouse_outage_under_load_loses_and_duplicates_nothing() {
    let (mut server, db) = own_server("outage").await;
    let config =
        format!("{FAST}[sink]\nretry_initial_backoff = \"50ms\"\nretry_max_backoff = \"300ms\"\n");
    let logbook = Logbook::start(&db, &config).await;
    let load = Load::start(logbook.http.clone(), logbook.grpc.clone(), "outage-bot", 20);
    load.wait_acked(100, "before the outage").await;
    server.stop();
    // The outage is seen (an insert failed) and requests are still acknowledged meanwhile.
    let started = std::time::Instant::now();
    while !logbook
        .metrics()
        .await
        .contains("logbook_clickhouse_insert_errors_total{")
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no insert failed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    load.wait_acked(100, "during the outage").await;
    let queued_during_outage = load.acked.lock().await.len();
    server.restart();
    load.wait_acked(100, "after the outage").await;
    let (acked, _) = load.finish().await;
    assert!(
        acked.len() > queued_during_outage,
        "load continued after the outage"
    );
    assert_exactly_once(&db, "outage-bot", &acked).await;
    let metrics = logbook.metrics().await;
    assert!(
        metrics.contains("logbook_clickhouse_insert_errors_total"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_queue_answers_429_and_resource_exhausted_then_drains() {
    let (mut server, db) = own_server("small_queue").await;
    let config = format!(
        "{FAST}[ingest]\nmax_request_size = \"16 KiB\"\n[queue]\nmax_bytes = \"64 KiB\"\n\
         [sink]\nretry_initial_backoff = \"50ms\"\nretry_max_backoff = \"200ms\"\n"
    );
    let logbook = Logbook::start(&db, &config).await;
    server.stop();
    let mut acked = BTreeSet::new();
    let (mut http_429, mut grpc_exhausted) = (false, false);
    for round in 0..400u64 {
        let numbers: Vec<u64> = (round * 10..round * 10 + 10).collect();
        let records = numbers
            .iter()
            .map(|n| api_call_numbered("full-bot", *n))
            .collect();
        let transport = if round.is_multiple_of(2) {
            Transport::HttpProtobuf
        } else {
            Transport::Grpc
        };
        match send_logs(&logbook, transport, &request("full", records)).await {
            200 => acked.extend(numbers),
            429 if matches!(transport, Transport::HttpProtobuf) => http_429 = true,
            429 => grpc_exhausted = true,
            other => panic!("unexpected status {other}"),
        }
        if http_429 && grpc_exhausted {
            break;
        }
    }
    assert!(http_429 && grpc_exhausted, "both receivers pushed back");
    let ready = reqwest::get(format!("{}/readyz", logbook.api))
        .await
        .unwrap();
    assert_eq!(
        ready.status().as_u16(),
        503,
        "not ready while the queue is full"
    );
    server.restart();
    assert_exactly_once(&db, "full-bot", &acked).await;
}

#[tokio::test]
async fn graceful_stop_flushes_the_open_batch() {
    let db = test_db("durability_sigterm").await;
    // Batches would wait a minute: only the shutdown flush can store these rows in time.
    let mut logbook = Logbook::start(&db, "[batch]\nmax_age = \"60s\"\n").await;
    let records = (0..25)
        .map(|n| api_call_numbered("sigterm-bot", n))
        .collect();
    assert_eq!(
        send_logs(&logbook, Transport::HttpProtobuf, &request("stop", records)).await,
        200
    );
    logbook.stop();
    let acked: BTreeSet<u64> = (0..25).collect();
    assert_exactly_once(&db, "sigterm-bot", &acked).await;
}

/// A queued request damaged on disk cannot be stored: logbook stops with a sentence naming
/// the file (so that a supervisor restarts it and someone looks), instead of acknowledging
/// requests it can no longer store; the batch before the damage is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupted_queue_record_stops_logbook_with_a_sentence() {
    let (mut server, db) = own_server("corrupt_queue").await;
    // No insert in flight beside the routed batch: while the first batch waits for ClickHouse
    // the pipeline reads nothing more, so the damaged record is read only after the damage.
    let config = format!(
        "{FAST}inserts_in_flight = 0\n[sink]\nretry_initial_backoff = \"50ms\"\nretry_max_backoff = \"200ms\"\n"
    );
    let mut logbook = Logbook::start(&db, &config).await;
    server.stop();
    let send = |bot| request("corrupt", vec![api_call_numbered(bot, 1)]);
    assert_eq!(
        send_logs(&logbook, Transport::HttpProtobuf, &send("before-damage")).await,
        200
    );
    // Once an insert of that batch has failed, the batch is cut and waits for ClickHouse, so
    // the pipeline reads nothing more for now.
    let started = std::time::Instant::now();
    while !logbook
        .metrics()
        .await
        .contains("logbook_clickhouse_insert_errors_total{")
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no insert was tried"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        send_logs(&logbook, Transport::HttpProtobuf, &send("damaged")).await,
        200
    );
    let segment = std::fs::read_dir(logbook.queue_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .max()
        .expect("a queue segment");
    let mut bytes = std::fs::read(&segment).unwrap();
    let last = bytes.len() - 20; // inside the newest record's payload
    bytes[last] ^= 0xff;
    std::fs::write(&segment, &bytes).unwrap();
    server.restart();
    let status = logbook.wait_exit(Duration::from_secs(30)).await;
    let stderr = logbook.stderr();
    assert!(
        status.is_some_and(|s| !s.success()),
        "logbook kept running: {stderr}"
    );
    assert!(
        stderr.contains("the pipeline stopped while serving")
            && stderr.contains(&segment.display().to_string()),
        "{stderr}"
    );
    assert_eq!(
        wait_for(
            &db,
            "api_calls",
            "bot = 'before-damage'",
            1,
            Duration::from_secs(10)
        )
        .await,
        1
    );
}

/// The queue gauges say what is queued when they are scraped: they grow while ClickHouse is
/// down (the pipeline is blocked) and read 0 once everything is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_metrics_are_true_at_scrape_time_through_an_outage() {
    let (mut server, db) = own_server("queue_metrics").await;
    // No insert in flight beside the routed batch, so that the outage blocks the pipeline on
    // one batch and the queue's record count is exact. ClickHouse counts as unreachable after
    // 2 s: far above the probe's 200 ms, which a loaded machine stretched past 300 ms.
    let config = format!(
        "{FAST}inserts_in_flight = 0\n[server]\nunreachable_threshold = \"2s\"\n\
         [sink]\nretry_initial_backoff = \"50ms\"\nretry_max_backoff = \"200ms\"\n"
    );
    let logbook = Logbook::start(&db, &config).await;
    let send = |n: u64| request("metrics", vec![api_call_numbered("metrics-bot", n)]);
    assert_eq!(
        send_logs(&logbook, Transport::HttpProtobuf, &send(0)).await,
        200
    );
    wait_for(
        &db,
        "api_calls",
        "bot = 'metrics-bot'",
        1,
        Duration::from_secs(30),
    )
    .await;
    let scrape = logbook.wait_metric("logbook_queue_records", 0.0).await;
    assert_eq!(metric(&scrape, "logbook_queue_bytes"), 0.0, "{scrape}");
    assert_eq!(
        metric(&scrape, "logbook_queue_max_bytes"),
        1024.0 * 1024.0 * 1024.0
    );
    assert_eq!(metric(&scrape, "logbook_ready"), 1.0, "{scrape}");

    server.stop();
    assert_eq!(
        send_logs(&logbook, Transport::HttpProtobuf, &send(1)).await,
        200
    );
    // The pipeline is now blocked on that batch; four more requests queue behind it.
    let started = std::time::Instant::now();
    while !logbook
        .metrics()
        .await
        .contains("logbook_clickhouse_insert_errors_total{")
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no insert failed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let before = metric(&logbook.metrics().await, "logbook_queue_bytes");
    for n in 2..6 {
        assert_eq!(send_logs(&logbook, Transport::Grpc, &send(n)).await, 200);
    }
    let scrape = logbook.wait_metric("logbook_ready", 0.0).await;
    // Five requests, and the marker of the blocked batch.
    assert_eq!(metric(&scrape, "logbook_queue_records"), 6.0, "{scrape}");
    assert!(
        metric(&scrape, "logbook_queue_bytes") > before,
        "queue bytes grew during the outage: {scrape}"
    );

    server.restart();
    wait_for(
        &db,
        "api_calls",
        "bot = 'metrics-bot'",
        6,
        Duration::from_secs(30),
    )
    .await;
    let scrape = logbook.wait_metric("logbook_queue_records", 0.0).await;
    assert_eq!(metric(&scrape, "logbook_queue_bytes"), 0.0, "{scrape}");
}

/// Drops the test's database: a server where logbook was never migrated.
async fn drop_database(db: &TestDb) {
    clickhouse::Client::default()
        .with_url(&db.url)
        .with_user(&db.user)
        .with_password(&db.password)
        .query(&format!("DROP DATABASE `{}` SYNC", db.database))
        .execute()
        .await
        .unwrap();
}

/// Polls `/readyz` until its body contains `text`; the body.
async fn wait_readyz(logbook: &Logbook, text: &str) -> String {
    let started = std::time::Instant::now();
    loop {
        let body = reqwest::get(format!("{}/readyz", logbook.api))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if body.contains(text) {
            return body;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "/readyz never said {text:?}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A database never migrated is an operator error a migration fixes, not bad data: readiness
/// says so, acknowledged batches wait in the queue, and `logbook migrate` lets them through
/// with no manual step.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unmigrated_database_keeps_batches_queued_until_migrate() {
    let db = test_db("durability_unmigrated").await;
    drop_database(&db).await;
    let config =
        format!("{FAST}[sink]\nretry_initial_backoff = \"50ms\"\nretry_max_backoff = \"300ms\"\n");
    let logbook = Logbook::start_unmigrated(&db, &config, &[]).await;
    let version = logbook::store::migrate::SCHEMA_VERSION;
    let reason = format!("schema version {version} expected, found 0 — run logbook migrate");
    let body = wait_readyz(&logbook, &reason).await;
    assert!(body.contains("\"ready\":false"), "{body}");
    assert!(logbook.stderr().contains(&format!("not ready: {reason}")));
    for (n, transport) in [
        Transport::HttpProtobuf,
        Transport::Grpc,
        Transport::HttpJson,
    ]
    .into_iter()
    .enumerate()
    {
        let sent = request(
            "unmigrated",
            vec![api_call_numbered("unmigrated-bot", n as u64)],
        );
        assert_eq!(send_logs(&logbook, transport, &sent).await, 200);
    }
    let started = std::time::Instant::now();
    while !logbook.metrics().await.contains("error_type=\"code_81\"") {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no insert was tried"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let migrate = std::process::Command::new(env!("CARGO_BIN_EXE_logbook"))
        .args(["migrate", "--config"])
        .arg(&logbook.config)
        .output()
        .unwrap();
    assert!(
        migrate.status.success(),
        "{}",
        String::from_utf8_lossy(&migrate.stderr)
    );
    let acked: BTreeSet<u64> = (0..3).collect();
    assert_exactly_once(&db, "unmigrated-bot", &acked).await;
    wait_readyz(&logbook, "\"ready\":true").await;
    let dead_letters = std::fs::read_dir(logbook.queue_dir().join("dead-letter"))
        .map(|files| files.count())
        .unwrap_or(0);
    assert_eq!(dead_letters, 0, "nothing was set aside");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_migrate_creates_the_schema_then_serves() {
    let db = test_db("durability_serve_migrate").await;
    drop_database(&db).await;
    let logbook = Logbook::start_unmigrated(&db, FAST, &["--migrate"]).await;
    wait_readyz(&logbook, "\"ready\":true").await;
    let sent = request(
        "serve-migrate",
        vec![api_call_numbered("serve-migrate-bot", 0)],
    );
    assert_eq!(send_logs(&logbook, Transport::Grpc, &sent).await, 200);
    assert_exactly_once(&db, "serve-migrate-bot", &BTreeSet::from([0])).await;
}
