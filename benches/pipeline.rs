//! In-process cost per log record of logbook's path, on one thread:
//!
//! 1. `decode`: prost decode of the OTLP/HTTP protobuf body (`ExportLogsServiceRequest`);
//! 2. `redact`: `Redactor::logs` with the default `[redaction]` config (what the intake does
//!    before queueing; the intake's id check / time stamping loop is trivial and not included);
//! 3. `envelope encode`: `Envelope::encode`, the bytes appended to the durable queue (and
//!    dropping the decoded request);
//! 4. `envelope view`: `Envelope::view` of the queued bytes (the pipeline's read side, which
//!    borrows the request's strings from them);
//! 5. `route`: `route::logs` writing the batch's RowBinary rows, then dropping the view;
//! 6. `encode`: each table's rows cut into pieces as the pipeline does (`Batch::cut` after each
//!    request, LZ4 compression unless BENCH_COMPRESSION=none), then every table's pieces
//!    inserted with `sink::insert`, exactly as the sink does (the `clickhouse` crate's HTTP
//!    request over loopback) into `clickhouse::test::Mock`, an in-process hyper server that
//!    keeps the body without parsing it; then the batch's pieces are freed. The Mock runs on a
//!    second thread and is not counted; the client side (compression, hyper client, socket
//!    writes) runs on the bench thread.
//!
//! Stages 4–6 are what the pipeline does per queued record: the "pipeline loop" line.
//!
//! Each stage is timed in CPU time of the bench thread (`CLOCK_THREAD_CPUTIME_ID`), so that
//! other processes on a shared machine do not inflate it; wall-clock totals are printed too.
//!
//! Batches are cut like the pipeline's default (`batch.max_rows = 100000`): requests of 1,000
//! records (≈1,700 rows each) are routed into one `Rows` until it holds 100,000 rows.
//!
//! Run: `cargo bench --bench pipeline` (optional args: records per request, batches per round).
//! Under `cargo test --all-targets` it makes one small smoke run instead.

#[path = "common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use cpu_time::ThreadTime;

use clickhouse::test::{Mock, handlers};
use logbook::ingest::batch::Batch;
use logbook::ingest::queue::envelope::{Envelope, View};
use logbook::ingest::redact::{RedactionConfig, Redactor};
use logbook::ingest::route::{self, Origin, Rows};
use logbook::ingest::sink::{self, Codec, Pieces};
use logbook::schema::TableDef;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use prost::Message;

const STAGES: [&str; 6] = [
    "decode (prost)",
    "redact",
    "envelope encode",
    "envelope view",
    "route",
    "encode (clickhouse insert)",
];

/// The stages the pipeline runs per queued record: view, route, encode.
const PIPELINE_STAGES: std::ops::Range<usize> = 3..6;

/// Where batches are inserted: the Mock, through a client without compression of its own
/// (pieces come compressed by `codec`, as the sink's).
struct Target<'a> {
    client: &'a clickhouse::Client,
    codec: Codec,
    mock: &'a Mock,
}

/// Inserts every table's pieces of a batch one table after the other with `sink::insert`.
async fn encode(target: &Target<'_>, tables: Vec<(&'static TableDef, Pieces)>, token: &str) {
    for (table, pieces) in tables {
        let _control = target.mock.add(handlers::record_ddl());
        sink::insert(target.client, target.codec, table, &pieces, token)
            .await
            .unwrap();
    }
}

/// What carries over from batch to batch: the queue position, and the emptied rows of the
/// last batch for the next to fill (as the pipeline keeps them).
struct State {
    position: u64,
    spare: Rows,
}

struct Round {
    stage: [Duration; 6],
    records: u64,
    rows: u64,
    wall: Duration,
    cpu: Duration,
}

async fn round(
    bodies: &[Vec<u8>],
    redactor: &Redactor,
    target: &Target<'_>,
    batches: usize,
    max_rows: usize,
    state: &mut State,
) -> Round {
    let State { position, spare } = state;
    let mut stage = [Duration::ZERO; 6];
    let mut records = 0u64;
    let mut total_rows = 0u64;
    let started = Instant::now();
    let cpu = ThreadTime::now();
    let mut next = 0usize;
    for _ in 0..batches {
        let first = *position;
        let mut batch = Batch::new(first, std::mem::take(spare));
        while batch.rows.len() < max_rows {
            let body = &bodies[next % bodies.len()];
            next += 1;
            let t0 = ThreadTime::now();
            let mut request = ExportLogsServiceRequest::decode(body.as_slice()).unwrap();
            let t1 = ThreadTime::now();
            let redactions = redactor.logs(&mut request);
            std::hint::black_box(redactions);
            let t2 = ThreadTime::now();
            records += common::count(&request) as u64;
            let envelope = Envelope::Logs(request);
            let queued = envelope.encode();
            drop(envelope);
            let t3 = ThreadTime::now();
            let View::Logs(request) = Envelope::view(&queued).unwrap() else {
                unreachable!()
            };
            let t4 = ThreadTime::now();
            route::logs(
                &request,
                Origin {
                    queue_id: 7,
                    position: *position,
                },
                &mut batch.rows,
            );
            drop(request);
            let t5 = ThreadTime::now();
            batch.cut(target.codec);
            let t6 = ThreadTime::now();
            *position += queued.len() as u64 + 17;
            let marks = [t0, t1, t2, t3, t4, t5, t6];
            for i in 0..6 {
                stage[i] += marks[i + 1].as_duration() - marks[i].as_duration();
            }
        }
        total_rows += batch.rows.len() as u64;
        let token = format!("logbook-0000000000000007-{first}-{}", *position);
        let t5 = ThreadTime::now();
        let tables = batch.take_pieces(target.codec);
        encode(target, tables, &token).await;
        batch.rows.clear();
        *spare = batch.rows;
        let t6 = ThreadTime::now();
        // Each table's pieces are freed as its insert ends: counted in `encode`.
        stage[5] += t6.as_duration() - t5.as_duration();
    }
    Round {
        stage,
        records,
        rows: total_rows,
        wall: started.elapsed(),
        cpu: cpu.elapsed(),
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.partial_cmp(b).unwrap());
    values[values.len() / 2]
}

pub fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    // `cargo bench` passes --bench; `cargo test --all-targets` runs this binary without it:
    // then a small smoke run (debug build) checks that the bench still works.
    let bench = std::env::args().any(|a| a == "--bench");
    let (default_records, default_batches, max_rows, rounds) = if bench {
        (1000, 10, 100_000, 3)
    } else {
        (100, 1, 1_000, 1)
    };
    let per_request: usize = args
        .first()
        .and_then(|a| a.parse().ok())
        .unwrap_or(default_records);
    let batches: usize = args
        .get(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default_batches);

    let requests: Vec<ExportLogsServiceRequest> = (0..16)
        .map(|seed| common::request(per_request, seed + 1))
        .collect();
    let bodies: Vec<Vec<u8>> = requests.iter().map(|r| r.encode_to_vec()).collect();
    let body_bytes: usize = bodies.iter().map(Vec::len).sum();
    let redactor = Redactor::new(&RedactionConfig::default()).unwrap();

    // The mock server gets a thread of its own; everything measured runs on this one.
    let server = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let mock = server.block_on(async { Mock::new() });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mock = &mock;
        let client = clickhouse::Client::default()
            .with_mock(mock)
            .with_database("logbook")
            // As the sink's: pieces come compressed, by `codec`.
            .with_compression(clickhouse::Compression::None);
        // As logbook's `clickhouse.compression`; BENCH_COMPRESSION=none measures
        // `compression = "none"`.
        let codec = match std::env::var("BENCH_COMPRESSION").as_deref() {
            Ok("none") => Codec::None,
            _ => Codec::Lz4,
        };
        let target = Target {
            client: &client,
            codec,
            mock,
        };
        let mut state = State {
            position: 0,
            spare: Rows::default(),
        };
        {
            // What one request turns into, for the report.
            let mut rows = Rows::default();
            let mut request = requests[0].clone();
            let redactions = redactor.logs(&mut request);
            let queued = Envelope::Logs(request).encode();
            let View::Logs(view) = Envelope::view(&queued).unwrap() else {
                unreachable!()
            };
            route::logs(&view, Origin { queue_id: 7, position: 0 }, &mut rows);
            println!(
                "workload: {per_request} records/request, {} bytes/request protobuf ({:.0} B/record), \
                 {} otel_logs + {} typed rows ({:.0} + {:.0} B/record of RowBinary), {} rejections, \
                 {} values redacted",
                body_bytes / bodies.len(),
                body_bytes as f64 / bodies.len() as f64 / per_request as f64,
                rows.logs.rows,
                rows.len() - rows.logs.rows,
                rows.logs.bytes.len() as f64 / per_request as f64,
                rows.typed.iter().map(|t| t.bytes.len()).sum::<usize>() as f64 / per_request as f64,
                rows.rejections().len(),
                redactions.values_redacted,
            );
        }
        // Warm-up: allocator, caches, the mock connection.
        round(&bodies, &redactor, &target, 2, max_rows, &mut state).await;

        let mut per_stage: Vec<Vec<f64>> = vec![Vec::new(); STAGES.len()];
        let mut totals = Vec::new();
        let mut rates = Vec::new();
        let mut cpu_share = Vec::new();
        for r in 0..rounds {
            let result = round(&bodies, &redactor, &target, batches, max_rows, &mut state).await;
            let ns = |d: Duration| d.as_nanos() as f64 / result.records as f64;
            let total: f64 = result.stage.iter().map(|d| ns(*d)).sum();
            let wall_ns = ns(result.wall);
            println!(
                "round {}: {} records, {} rows in {:.2?}: {}; total {:.0} ns/record CPU ({:.0} wall); {:.0} records/s per CPU second, {:.0} records/s wall clock; thread CPU {:.2} s of {:.2} s",
                r + 1,
                result.records,
                result.rows,
                result.wall,
                STAGES
                    .iter()
                    .zip(result.stage)
                    .map(|(name, d)| format!("{name} {:.0}", ns(d)))
                    .collect::<Vec<_>>()
                    .join(", "),
                total,
                wall_ns,
                1e9 / total,
                1e9 / wall_ns,
                result.cpu.as_secs_f64(),
                result.wall.as_secs_f64(),
            );
            for (i, d) in result.stage.iter().enumerate() {
                per_stage[i].push(ns(*d));
            }
            totals.push(total);
            rates.push(1e9 / wall_ns);
            cpu_share.push(result.cpu.as_secs_f64() / result.wall.as_secs_f64());
        }
        let total = median(totals);
        println!("\nmedian of {rounds} rounds, CPU ns per log record (one thread):");
        println!("| stage | ns/record | share |");
        println!("|---|---:|---:|");
        let per_stage_medians: Vec<f64> = per_stage.into_iter().map(median).collect();
        for (name, m) in STAGES.iter().zip(&per_stage_medians) {
            println!("| {name} | {m:.0} | {:.0}% |", m / total * 100.0);
        }
        println!("| **total** | **{total:.0}** | 100% |");
        let pipeline: f64 = per_stage_medians[PIPELINE_STAGES].iter().sum();
        println!(
            "pipeline loop (envelope view + route + encode): {pipeline:.0} ns/record, {:.0} records/s on one core",
            1e9 / pipeline
        );
        println!(
            "throughput: {:.0} records/s per core (1e9 / total CPU ns); {:.0} records/s wall clock (median), bench thread CPU / wall = {:.2}",
            1e9 / total,
            median(rates),
            median(cpu_share)
        );
    });
}
