//! The ClickHouse sink: writes each table's part of a batch with the batch's deduplication
//! token, retrying what can succeed later and setting aside what never will.
//!
//! A table's rows arrive as RowBinary in [`Pieces`] (compressed as they were cut, when inserts
//! are compressed), and go out as one `INSERT … FORMAT RowBinaryWithNamesAndTypes` through
//! the `clickhouse` crate (its HTTP client and settings); the header's column types make
//! ClickHouse refuse rows whose types no longer match the table rather than misread them. The
//! sink owns a batch until ClickHouse acknowledges it, and every attempt sends the same bytes.

mod dead_letter;
mod pieces;
mod retry;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

pub use dead_letter::DeadLetter;
pub use pieces::{Codec, PIECE_BYTES, PieceError, Pieces};
pub use retry::{Backoff, Failure, classify, error_code};

use crate::metrics::Metrics;
use crate::schema::TableDef;
use crate::schema::insert;
use crate::store::probe::ClickhouseStatus;

/// The sink was asked to stop while ClickHouse was failing; the batch stays in the queue.
#[derive(Debug, thiserror::Error)]
#[error("stopped before the batch was stored")]
pub struct Stopped;

/// Where a table's rows went.
enum Stored {
    Inserted,
    /// Refused for good by ClickHouse and written to the dead-letter directory.
    SetAside,
}

pub struct Sink {
    /// Without the crate's compression: pieces come compressed already (see [`Sink::new`]).
    client: clickhouse::Client,
    codec: Codec,
    backoff: Backoff,
    timeout: Duration,
    dead_letter: DeadLetter,
    metrics: Arc<Metrics>,
    /// The probe's view of the schema, gating retries after a missing table or database.
    schema: Option<Arc<ClickhouseStatus>>,
}

impl Sink {
    /// A sink inserting pieces encoded with `codec` through `client`, whose own compression
    /// is turned off (each piece would be compressed twice).
    pub fn new(
        client: clickhouse::Client,
        codec: Codec,
        backoff: Backoff,
        timeout: Duration,
        dead_letter: DeadLetter,
        metrics: Arc<Metrics>,
    ) -> Sink {
        Sink {
            client: client.with_compression(clickhouse::Compression::None),
            codec,
            backoff,
            timeout,
            dead_letter,
            metrics,
            schema: None,
        }
    }

    /// After a missing table or database, retries wait until `status` sees the migration
    /// finished (its version recorded), so that no insert lands between a table's creation
    /// and that of the views fed by it.
    pub fn wait_for_schema(mut self, status: Arc<ClickhouseStatus>) -> Sink {
        self.schema = Some(status);
        self
    }

    /// How the pieces this sink inserts are to be encoded.
    pub fn codec(&self) -> Codec {
        self.codec
    }

    /// Stores every table's rows, each table on its own task (so that tables are inserted
    /// at once). Returns once each table's rows are in ClickHouse or set aside, with the
    /// tables set aside, or `Stopped` if `stop` fires while ClickHouse keeps failing.
    pub async fn write(
        self: &Arc<Self>,
        tables: Vec<(&'static TableDef, Pieces)>,
        token: &str,
        stop: &CancellationToken,
    ) -> Result<Vec<&'static TableDef>, Stopped> {
        let jobs: Vec<_> = tables
            .into_iter()
            .map(|(table, pieces)| {
                let (sink, token, stop) = (Arc::clone(self), token.to_owned(), stop.clone());
                tokio::spawn(
                    async move { (table, sink.table(table, &pieces, &token, &stop).await) },
                )
            })
            .collect();
        // Every task is awaited, so none outlives the batch's outcome.
        let mut outcome = Ok(Vec::new());
        for job in jobs {
            match job.await {
                Ok((table, stored)) => match (stored, &mut outcome) {
                    (Ok(Stored::SetAside), Ok(set_aside)) => set_aside.push(table),
                    (Ok(Stored::Inserted), _) | (_, Err(Stopped)) => {}
                    (Err(Stopped), _) => outcome = Err(Stopped),
                },
                Err(error) => {
                    tracing::error!(%error, "a table's insert task failed; the batch stays in the queue");
                    outcome = Err(Stopped);
                }
            }
        }
        outcome
    }

    async fn table(
        &self,
        table: &'static TableDef,
        pieces: &Pieces,
        token: &str,
        stop: &CancellationToken,
    ) -> Result<Stored, Stopped> {
        let (name, count) = (table.name, pieces.rows);
        for attempt in 1u32.. {
            let started = Instant::now();
            let result = tokio::time::timeout(
                self.timeout,
                insert(&self.client, self.codec, table, pieces, token),
            )
            .await;
            let error = match result {
                Ok(Ok(())) => {
                    self.metrics
                        .rows_inserted
                        .with_label_values(&[name])
                        .inc_by(count as u64);
                    self.metrics
                        .insert_duration_seconds
                        .with_label_values(&[name])
                        .observe(started.elapsed().as_secs_f64());
                    return Ok(Stored::Inserted);
                }
                Ok(Err(error)) => error,
                Err(_) => clickhouse::error::Error::TimedOut,
            };
            let error_type = retry::error_type(&error);
            self.metrics
                .insert_errors
                .with_label_values(&[name, &error_type])
                .inc();
            if classify(&error) == Failure::Permanent {
                self.set_aside(table, token, pieces, &error).await;
                return Ok(Stored::SetAside);
            }
            let delay = self.backoff.delay(attempt);
            // One line per failing batch, then one per ten attempts: outages are long.
            if attempt == 1 || attempt % 10 == 0 {
                tracing::warn!(%error, table = name, rows = count, attempt, ?delay, "clickhouse insert failed, will retry");
            }
            tokio::select! {
                _ = stop.cancelled() => return Err(Stopped),
                _ = tokio::time::sleep(delay) => {}
            }
            if let Some(status) = self.schema.as_ref().filter(|_| retry::unmigrated(&error)) {
                while !status.schema_current() {
                    tokio::select! {
                        _ = stop.cancelled() => return Err(Stopped),
                        _ = tokio::time::sleep(delay.max(Duration::from_millis(50))) => {}
                    }
                }
            }
        }
        unreachable!("the attempt counter does not run out")
    }

    /// Writes the batch's rows, uncompressed, to a dead-letter file on the blocking thread
    /// pool (it fsyncs).
    async fn set_aside(
        &self,
        table: &'static TableDef,
        token: &str,
        pieces: &Pieces,
        error: &clickhouse::error::Error,
    ) {
        let (name, rows) = (table.name, pieces.rows);
        self.metrics
            .dead_letter_batches
            .with_label_values(&[name])
            .inc();
        let (dead_letter, token, codec, pieces, reason) = (
            self.dead_letter.clone(),
            token.to_owned(),
            self.codec,
            pieces.pieces.clone(),
            error.to_string(),
        );
        let put = tokio::task::spawn_blocking(move || {
            let mut body = Vec::new();
            for piece in &pieces {
                codec
                    .decode(piece, &mut body)
                    .map_err(std::io::Error::other)?;
            }
            dead_letter.put(table, &token, &body, rows, &reason)
        })
        .await
        .unwrap_or_else(|panicked| std::panic::resume_unwind(panicked.into_panic()));
        match put {
            Ok(path) => {
                tracing::error!(%error, table = name, rows, path = %path.display(), "clickhouse refused a batch for good; set aside")
            }
            Err(io) => {
                tracing::error!(%error, %io, table = name, rows, "clickhouse refused a batch for good and it could not be set aside; rows lost")
            }
        }
    }
}

/// One insert of a table's pieces, named by the batch's deduplication token, through a
/// `client` without compression of its own (see [`Sink::new`]).
pub async fn insert(
    client: &clickhouse::Client,
    codec: Codec,
    table: &TableDef,
    pieces: &Pieces,
    token: &str,
) -> Result<(), clickhouse::error::Error> {
    let mut insert = client
        .insert_formatted_with(insert::insert_statement(table))
        .with_setting("insert_deduplication_token", token)
        .with_setting("deduplicate_blocks_in_dependent_materialized_views", "1");
    if codec == Codec::Lz4 {
        // What the crate sets for a compressed insert: the body is compressed blocks.
        insert = insert.with_setting("decompress", "1");
    }
    insert.send(codec.encode(&insert::header(table))).await?;
    for piece in &pieces.pieces {
        insert.send(piece.clone()).await?;
    }
    insert.end().await
}
