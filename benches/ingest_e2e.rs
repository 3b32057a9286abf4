//! End to end: OTLP/HTTP protobuf in → rows in ClickHouse, on this machine.
//!
//! Starts the chdb test server (`tests/chdb_http/server.py`, the real engine) and a release
//! `logbook` (`migrate`, then `serve` with `queue.fsync = "always"` and default batch
//! settings), then for each run:
//! - `senders` concurrent tasks POST pre-encoded `ExportLogsServiceRequest`s of `records`
//!   log records (the workload of `benches/common`) to `/v1/logs` for `seconds` seconds; a
//!   sender that gets 429 waits for `Retry-After` (1 s) like an OTLP exporter would;
//! - then `SELECT count() FROM otel_logs` is polled until every acknowledged record is there.
//!
//! Reports acknowledged records/s, the time until the last acknowledged record is stored, end
//! to end records/s (acknowledged records / (load time + drain time)), logbook's peak RSS
//! (VmHWM) and the chdb server's, and the CPU seconds each process used.
//!
//! A second scenario ("flood") uses `queue.max_bytes = "32 MiB"` and twice as many senders
//! that retry at once on 429, to show that memory stays bounded and logbook pushes back.
//! A third ("capacity", not run by default) is "steady" with logbook's tables swapped for
//! `Null`-engine twins after `migrate`: ClickHouse still receives, decompresses and parses
//! every insert but stores nothing, so the rate shows what logbook itself can carry on this
//! machine; "stored" is then logbook's `logbook_rows_inserted_total` for `otel_logs`.
//!
//! Run: `cargo bench --bench ingest_e2e` (env: `E2E_SECONDS`, `E2E_SENDERS`, `E2E_RECORDS`,
//! `E2E_RUNS`, `E2E_SCENARIOS=steady,flood`, `E2E_FLOOD_SENDERS` (default twice `E2E_SENDERS`),
//! `E2E_COMPRESSION` (`clickhouse.compression`, default `lz4`), `LOGBOOK_BIN` to run
//! another logbook build).

#[path = "common/mod.rs"]
mod common;
// The integration tests' engine server and logbook process (`logbook.rs` names `crate::harness`).
#[path = "../tests/it/harness.rs"]
mod harness;
#[path = "../tests/it/logbook.rs"]
mod logbook;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use prost::Message;

use harness::TestServer;
use logbook::Logbook;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A field of /proc/<pid>/status in kB.
fn status_kb(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap_or(0)
}

/// utime + stime of a process (all its threads), in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit(") ").next().unwrap_or_default();
    let fields: Vec<&str> = after.split_whitespace().collect();
    let utime: u64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0);
    let stime: u64 = fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    (utime + stime) as f64 / 100.0
}

fn self_cpu_seconds() -> f64 {
    cpu_seconds(std::process::id())
}

/// Waits until logbook reports ready (ClickHouse reached), so that runs start alike.
async fn wait_ready(logbook: &Logbook) {
    let client = reqwest::Client::new();
    let started = Instant::now();
    loop {
        if let Ok(r) = client.get(format!("{}/readyz", logbook.api)).send().await
            && r.status().is_success()
        {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "logbook did not get ready: {}",
            logbook.stderr()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs one statement on the chdb server; its output as text.
async fn sql(client: &reqwest::Client, ch: &TestServer, statement: String) -> String {
    let response = client
        .post(ch.url())
        .body(statement)
        .header("X-ClickHouse-User", ch.user())
        .header("X-ClickHouse-Key", ch.password())
        .send()
        .await;
    match response {
        Ok(r) if r.status().is_success() => r.text().await.unwrap_or_default(),
        _ => String::new(),
    }
}

/// `otel_logs` rows stored, or, with `Null` tables, inserted according to logbook's metrics.
async fn count(
    client: &reqwest::Client,
    ch: &TestServer,
    database: &str,
    logbook: &Logbook,
    null_tables: bool,
) -> u64 {
    if !null_tables {
        let rows = sql(
            client,
            ch,
            format!("SELECT count() FROM {database}.otel_logs"),
        )
        .await;
        return rows.trim().parse().unwrap_or(0);
    }
    let metrics = match client.get(format!("{}/metrics", logbook.api)).send().await {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(_) => return 0,
    };
    metrics
        .lines()
        .find(|l| l.starts_with("logbook_rows_inserted_total{table=\"otel_logs\"}"))
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

/// Replaces every table logbook inserts into by a `Null` table of the same columns.
async fn use_null_tables(client: &reqwest::Client, ch: &TestServer, database: &str) {
    let tables = sql(
        client,
        ch,
        format!(
            "SELECT name FROM system.tables WHERE database = '{database}' \
             AND engine = 'MergeTree' AND name != 'logbook_migrations'"
        ),
    )
    .await;
    for table in tables.lines() {
        sql(
            client,
            ch,
            format!("RENAME TABLE {database}.{table} TO {database}.{table}_stored"),
        )
        .await;
        sql(
            client,
            ch,
            format!("CREATE TABLE {database}.{table} AS {database}.{table}_stored ENGINE = Null"),
        )
        .await;
    }
    let null = sql(
        client,
        ch,
        format!(
            "SELECT count() FROM system.tables WHERE database = '{database}' AND engine = 'Null'"
        ),
    )
    .await;
    assert_eq!(
        null.trim(),
        tables.lines().count().to_string(),
        "Null tables in place"
    );
}

#[derive(Default)]
struct Counters {
    acked_records: AtomicU64,
    acked_requests: AtomicU64,
    refused_429: AtomicU64,
    other_errors: AtomicU64,
}

struct Scenario {
    name: &'static str,
    queue_extra: &'static str,
    senders: usize,
    /// Wait for Retry-After on 429 (an exporter's behaviour) or retry at once (a flood).
    honour_retry_after: bool,
    /// Swap logbook's tables for `Null`-engine twins: ClickHouse still receives, decompresses
    /// and parses every insert, but stores nothing, so logbook's own capacity shows.
    null_tables: bool,
}

#[derive(Debug, Clone)]
struct Outcome {
    acked: u64,
    load_secs: f64,
    ack_rate: f64,
    drain_secs: f64,
    e2e_rate: f64,
    refused_429: u64,
    other_errors: u64,
    logbook_hwm_mb: f64,
    logbook_rss_max_mb: f64,
    ch_rss_max_mb: f64,
    logbook_cpu: f64,
    ch_cpu: f64,
    loadgen_cpu: f64,
    stored: u64,
}

async fn run(
    root: &Path,
    ch: &TestServer,
    scenario: &Scenario,
    index: usize,
    bodies: Arc<Vec<(Vec<u8>, u64)>>,
    seconds: u64,
) -> Outcome {
    let database = format!("bench_{}_{index}", scenario.name);
    let compression = std::env::var("E2E_COMPRESSION").unwrap_or_else(|_| "lz4".into());
    let extra = format!(
        "[clickhouse]\ncompression = {compression:?}\n[log]\nlevel = \"warn\"\n\
         [queue]\nfsync = \"always\"\n{}",
        scenario.queue_extra
    );
    let mut logbook =
        Logbook::start_on(&ch.url(), ch.user(), ch.password(), &database, &extra).await;
    wait_ready(&logbook).await;
    if scenario.null_tables {
        use_null_tables(&reqwest::Client::new(), ch, &database).await;
    }
    let _ = root;
    let lb_pid = logbook.pid().expect("logbook runs");
    let ch_pid = ch.pid().expect("the engine server runs");
    let counters = Arc::new(Counters::default());
    let stop = Arc::new(AtomicBool::new(false));
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()
        .unwrap();
    let url = format!("{}/v1/logs", logbook.http);

    // RSS sampler.
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let sampling = sampling.clone();
        tokio::spawn(async move {
            let (mut lb_max, mut ch_max) = (0u64, 0u64);
            while sampling.load(Ordering::Relaxed) {
                lb_max = lb_max.max(status_kb(lb_pid, "VmRSS:"));
                ch_max = ch_max.max(status_kb(ch_pid, "VmRSS:"));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            (lb_max, ch_max)
        })
    };

    let (lb_cpu0, ch_cpu0, self_cpu0) =
        (cpu_seconds(lb_pid), cpu_seconds(ch_pid), self_cpu_seconds());
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for sender in 0..scenario.senders {
        let (client, url, bodies, counters, stop) = (
            client.clone(),
            url.clone(),
            bodies.clone(),
            counters.clone(),
            stop.clone(),
        );
        let honour = scenario.honour_retry_after;
        tasks.push(tokio::spawn(async move {
            let mut next = sender;
            while Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
                let (body, records) = &bodies[next % bodies.len()];
                let response = client
                    .post(&url)
                    .header("content-type", "application/x-protobuf")
                    .body(body.clone())
                    .send()
                    .await;
                match response.map(|r| r.status().as_u16()) {
                    Ok(200) => {
                        counters
                            .acked_records
                            .fetch_add(*records, Ordering::Relaxed);
                        counters.acked_requests.fetch_add(1, Ordering::Relaxed);
                        next += scenario_stride();
                    }
                    Ok(429) => {
                        counters.refused_429.fetch_add(1, Ordering::Relaxed);
                        if honour {
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                    }
                    _ => {
                        counters.other_errors.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let load_secs = started.elapsed().as_secs_f64();
    let acked = counters.acked_records.load(Ordering::Relaxed);

    // Drain: until every acknowledged record is in otel_logs.
    let count_client = reqwest::Client::new();
    let mut stored = 0;
    let drain_limit = Instant::now() + Duration::from_secs(600);
    while Instant::now() < drain_limit {
        stored = count(&count_client, ch, &database, &logbook, scenario.null_tables).await;
        if stored >= acked {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let total_secs = started.elapsed().as_secs_f64();
    let (lb_cpu, ch_cpu, self_cpu) = (
        cpu_seconds(lb_pid) - lb_cpu0,
        cpu_seconds(ch_pid) - ch_cpu0,
        self_cpu_seconds() - self_cpu0,
    );
    sampling.store(false, Ordering::Relaxed);
    let (lb_rss_max, ch_rss_max) = sampler.await.unwrap();
    let hwm = status_kb(lb_pid, "VmHWM:");
    logbook.stop();
    let stderr = logbook.stderr();
    let warnings = stderr
        .lines()
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
        .count();
    if warnings > 0 {
        eprintln!(
            "  logbook logged {warnings} warning/error lines, first: {}",
            stderr
                .lines()
                .find(|l| l.contains("WARN") || l.contains("ERROR"))
                .unwrap_or("")
        );
    }
    Outcome {
        acked,
        load_secs,
        ack_rate: acked as f64 / load_secs,
        drain_secs: total_secs - load_secs,
        e2e_rate: acked as f64 / total_secs,
        refused_429: counters.refused_429.load(Ordering::Relaxed),
        other_errors: counters.other_errors.load(Ordering::Relaxed),
        logbook_hwm_mb: hwm as f64 / 1024.0,
        logbook_rss_max_mb: lb_rss_max as f64 / 1024.0,
        ch_rss_max_mb: ch_rss_max as f64 / 1024.0,
        logbook_cpu: lb_cpu,
        ch_cpu,
        loadgen_cpu: self_cpu,
        stored,
    }
}

/// Senders walk the request pool with a stride so that they do not send the same bodies in
/// lock step.
fn scenario_stride() -> usize {
    7
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.partial_cmp(b).unwrap());
    values[values.len() / 2]
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --all-targets` runs this binary without it, and
    // a several-minute benchmark needing .venv has no place in the test suite.
    if !std::env::args().any(|a| a == "--bench") {
        println!("ingest_e2e: a benchmark; run it with `cargo bench --bench ingest_e2e`");
        return;
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let seconds: u64 = env_or("E2E_SECONDS", 20);
    let senders: usize = env_or("E2E_SENDERS", 8);
    let records: usize = env_or("E2E_RECORDS", 2000);
    let runs: usize = env_or("E2E_RUNS", 3);
    let scenarios: String = env_or("E2E_SCENARIOS", "steady,flood".to_owned());
    let flood_senders: usize = env_or("E2E_FLOOD_SENDERS", senders * 2);

    // The load generator gets one worker thread: it shares the 2 cores with logbook and chdb.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let bodies: Arc<Vec<(Vec<u8>, u64)>> = Arc::new(
        (0..32)
            .map(|seed| {
                let request = common::request(records, 1000 + seed);
                (request.encode_to_vec(), common::count(&request) as u64)
            })
            .collect(),
    );
    let avg_body = bodies.iter().map(|(b, _)| b.len()).sum::<usize>() / bodies.len();
    let ch = TestServer::start(None, None);
    println!(
        "chdb server at {}; {senders} senders, {records} records ({avg_body} bytes) per request, {seconds} s per run, {runs} runs",
        ch.url()
    );
    let all = [
        Scenario {
            name: "steady",
            queue_extra: "",
            senders,
            honour_retry_after: true,
            null_tables: false,
        },
        Scenario {
            name: "flood",
            queue_extra: "max_bytes = \"32 MiB\"\n",
            senders: flood_senders,
            honour_retry_after: false,
            null_tables: false,
        },
        Scenario {
            name: "capacity",
            queue_extra: "",
            senders,
            honour_retry_after: true,
            null_tables: true,
        },
    ];
    runtime.block_on(async {
        for scenario in all.iter().filter(|s| scenarios.split(',').any(|n| n == s.name)) {
            let mut outcomes = Vec::new();
            for index in 0..runs {
                let o = run(&root, &ch, scenario, index, bodies.clone(), seconds).await;
                println!(
                    "{} run {}: acked {} records in {:.1} s = {:.0}/s; drained {:.1} s later; end to end {:.0}/s; \
                     stored {}; 429s {}; other errors {}; logbook VmHWM {:.0} MiB (max RSS sampled {:.0}); chdb max RSS {:.0} MiB; \
                     CPU s: logbook {:.1}, chdb {:.1}, load generator {:.1}",
                    scenario.name,
                    index + 1,
                    o.acked,
                    o.load_secs,
                    o.ack_rate,
                    o.drain_secs,
                    o.e2e_rate,
                    o.stored,
                    o.refused_429,
                    o.other_errors,
                    o.logbook_hwm_mb,
                    o.logbook_rss_max_mb,
                    o.ch_rss_max_mb,
                    o.logbook_cpu,
                    o.ch_cpu,
                    o.loadgen_cpu,
                );
                outcomes.push(o);
            }
            let m = |f: fn(&Outcome) -> f64| median(outcomes.iter().map(f).collect());
            println!(
                "\n{} (median of {}): | {:.0} acked/s | {:.1} s drain | {:.0} e2e records/s | {:.0} 429s | logbook VmHWM {:.0} MiB | chdb RSS {:.0} MiB | CPU µs/record: logbook {:.1}, chdb {:.1}, loadgen {:.1} |\n",
                scenario.name,
                outcomes.len(),
                m(|o| o.ack_rate),
                m(|o| o.drain_secs),
                m(|o| o.e2e_rate),
                m(|o| o.refused_429 as f64),
                m(|o| o.logbook_hwm_mb),
                m(|o| o.ch_rss_max_mb),
                m(|o| o.logbook_cpu / o.acked.max(1) as f64 * 1e6),
                m(|o| o.ch_cpu / o.acked.max(1) as f64 * 1e6),
                m(|o| o.loadgen_cpu / o.acked.max(1) as f64 * 1e6),
            );
        }
    });
}
