//! The sink on the real engine: a batch waits for its insert as compressed pieces
//! (`src/ingest/sink/pieces.rs`); a failed insert is resent from them, whole, and a resend of
//! a stored batch is recognised as a duplicate.

use std::sync::Arc;
use std::time::{Duration, Instant};

use logbook::ingest::batch::Batch;
use logbook::ingest::queue::envelope::{Envelope, View};
use logbook::ingest::route::{self, Origin, Rows};
use logbook::ingest::sink::{Backoff, Codec, DeadLetter, Pieces, Sink};
use logbook::metrics::Metrics;
use logbook::schema::TableDef;
use logbook::store::migrate::Migrator;
use tokio_util::sync::CancellationToken;

use crate::durability::own_server;
use crate::harness::TestDb;
use crate::ingest::{api_call, request};
use crate::schema::config_for;

const REQUESTS: u64 = 40;
const PER_REQUEST: u64 = 100;

/// The batch the pipeline would make of `requests` queued at positions 0, 1, …: routed one
/// request after the other, rows cut into pieces as they pass `PIECE_BYTES`.
fn batch_of(requests: &[Vec<u8>], codec: Codec) -> Vec<(&'static TableDef, Pieces)> {
    let mut batch = Batch::new(0, Rows::default());
    for (position, queued) in (0u64..).zip(requests) {
        let Ok(View::Logs(request)) = Envelope::view(queued) else {
            panic!("a logs request")
        };
        let origin = Origin {
            queue_id: 9,
            position,
        };
        route::logs(&request, origin, &mut batch.rows);
        batch.added(position, queued.len());
        batch.cut(codec);
    }
    batch.take_pieces(codec)
}

async fn users(db: &TestDb, table: &str, column: &str) -> Vec<String> {
    db.client
        .query(&format!(
            "SELECT toString({column}) FROM {table} ORDER BY 1"
        ))
        .fetch_all::<String>()
        .await
        .unwrap()
}

fn insert_failed(metrics: &Metrics) -> bool {
    let scrape = metrics.encode().unwrap();
    scrape.contains("logbook_clickhouse_insert_errors_total{")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_many_compressed_pieces_is_resent_whole_after_an_outage_and_stored_once() {
    let (mut server, db) = own_server("sink_pieces").await;
    let config = config_for(&db, "");
    Migrator::new(server.endpoint().client(), &config)
        .run(false)
        .await
        .unwrap();
    let mut expected: Vec<String> = Vec::new();
    let requests: Vec<Vec<u8>> = (0..REQUESTS)
        .map(|r| {
            let records = (0..PER_REQUEST)
                .map(|i| {
                    let user = format!("user-{r:03}-{i:03}-{}", "x".repeat(200));
                    expected.push(user.clone());
                    api_call("pieces-bot", &user)
                })
                .collect();
            Envelope::Logs(request("pieces", records)).encode()
        })
        .collect();
    expected.sort();
    let tables = batch_of(&requests, Codec::Lz4);
    let logs = tables.iter().find(|(t, _)| t.name == "otel_logs").unwrap();
    assert!(
        logs.1.pieces.len() >= 4,
        "otel_logs in {} pieces",
        logs.1.pieces.len()
    );

    let metrics = Arc::new(Metrics::new());
    let backoff = Backoff {
        initial: Duration::from_millis(50),
        max: Duration::from_millis(200),
    };
    let dir = tempfile::tempdir().unwrap();
    let sink = Arc::new(Sink::new(
        db.client.clone(),
        Codec::Lz4,
        backoff,
        Duration::from_secs(10),
        DeadLetter::new(dir.path()),
        metrics.clone(),
    ));
    server.stop();
    let stop = CancellationToken::new();
    let write = tokio::spawn({
        let (sink, stop) = (sink.clone(), stop.clone());
        async move { sink.write(tables, "pieces-token", &stop).await }
    });
    let started = Instant::now();
    while !insert_failed(&metrics) {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no insert failed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.restart();
    let set_aside = tokio::time::timeout(Duration::from_secs(60), write)
        .await
        .expect("stored once the server is back")
        .unwrap()
        .expect("not stopped");
    assert!(set_aside.is_empty());
    assert_eq!(users(&db, "otel_logs", "Body").await, expected);
    assert_eq!(users(&db, "api_calls", "end_user").await, expected);

    // The same batch again (a replay after a crash rebuilds it identically): a duplicate.
    let again = batch_of(&requests, Codec::Lz4);
    sink.write(again, "pieces-token", &stop).await.unwrap();
    assert_eq!(users(&db, "otel_logs", "Body").await.len(), expected.len());
    assert_eq!(
        users(&db, "api_calls", "end_user").await.len(),
        expected.len()
    );
}
