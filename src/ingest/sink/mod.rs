//! The ClickHouse sink: writes each table's part of a batch with the batch's deduplication
//! token, retrying what can succeed later and setting aside what never will.
//!
//! A table's rows arrive as RowBinary, and go out as one `INSERT … FORMAT
//! RowBinaryWithNamesAndTypes` through the `clickhouse` crate (its HTTP client, compression
//! and settings); the header's column types make ClickHouse refuse rows whose types no longer
//! match the table rather than misread them. The sink owns a batch until ClickHouse
//! acknowledges it, and every attempt sends the same bytes.

mod dead_letter;
mod retry;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio_util::sync::CancellationToken;

pub use dead_letter::DeadLetter;
pub use retry::{Backoff, Failure, classify, error_code};

use crate::ingest::route::Rows;
use crate::metrics::Metrics;
use crate::schema::TableDef;
use crate::schema::insert;

/// The size of the pieces a table's rows are sent (and compressed) in: the crate's own
/// `Insert` buffer size. 1 MiB pieces measured 7 % slower per record (each piece's compression
/// buffer is fresh memory), 64 KiB ones 5 % slower.
const CHUNK_BYTES: usize = 1 << 18;

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
    client: clickhouse::Client,
    backoff: Backoff,
    timeout: Duration,
    dead_letter: DeadLetter,
    metrics: Arc<Metrics>,
}

impl Sink {
    pub fn new(
        client: clickhouse::Client,
        backoff: Backoff,
        timeout: Duration,
        dead_letter: DeadLetter,
        metrics: Arc<Metrics>,
    ) -> Sink {
        Sink {
            client,
            backoff,
            timeout,
            dead_letter,
            metrics,
        }
    }

    /// Stores every table's `rows`, each table on its own task (compressing a table's rows is
    /// CPU work, so tables spread over the runtime's threads), and hands the emptied buffers
    /// back to `rows`. Returns once each table's rows are in ClickHouse or set aside, with
    /// the tables set aside, or `Stopped` if `stop` fires while ClickHouse keeps failing.
    pub async fn write(
        self: &Arc<Self>,
        rows: &mut Rows,
        token: &str,
        stop: &CancellationToken,
    ) -> Result<Vec<&'static TableDef>, Stopped> {
        let jobs: Vec<_> = rows
            .take_tables()
            .into_iter()
            .map(|(table, table_rows)| {
                let (sink, token, stop) = (Arc::clone(self), token.to_owned(), stop.clone());
                tokio::spawn(async move {
                    let body = Bytes::from(table_rows.bytes);
                    let stored = sink
                        .table(table, &body, table_rows.rows, &token, &stop)
                        .await;
                    (table, stored, body)
                })
            })
            .collect();
        // Every task is awaited, so none outlives the batch's outcome.
        let mut outcome = Ok(Vec::new());
        for job in jobs {
            match job.await {
                Ok((table, stored, body)) => {
                    if let Ok(mut buffer) = body.try_into_mut() {
                        buffer.clear();
                        rows.give_back(table, buffer.into());
                    }
                    match (stored, &mut outcome) {
                        (Ok(Stored::SetAside), Ok(set_aside)) => set_aside.push(table),
                        (Ok(Stored::Inserted), _) | (_, Err(Stopped)) => {}
                        (Err(Stopped), _) => outcome = Err(Stopped),
                    }
                }
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
        body: &Bytes,
        count: usize,
        token: &str,
        stop: &CancellationToken,
    ) -> Result<Stored, Stopped> {
        let name = table.name;
        for attempt in 1u32.. {
            let started = Instant::now();
            let result =
                tokio::time::timeout(self.timeout, insert(&self.client, table, body, token)).await;
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
                self.set_aside(table, token, body, count, &error);
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
        }
        unreachable!("the attempt counter does not run out")
    }

    fn set_aside(
        &self,
        table: &TableDef,
        token: &str,
        body: &[u8],
        rows: usize,
        error: &clickhouse::error::Error,
    ) {
        let name = table.name;
        self.metrics
            .dead_letter_batches
            .with_label_values(&[name])
            .inc();
        match self
            .dead_letter
            .put(table, token, body, rows, &error.to_string())
        {
            Ok(path) => {
                tracing::error!(%error, table = name, rows, path = %path.display(), "clickhouse refused a batch for good; set aside")
            }
            Err(io) => {
                tracing::error!(%error, %io, table = name, rows, "clickhouse refused a batch for good and it could not be set aside; rows lost")
            }
        }
    }
}

/// One insert of a table's RowBinary rows, in pieces of 256 KiB, named by the batch's
/// deduplication token.
pub async fn insert(
    client: &clickhouse::Client,
    table: &TableDef,
    body: &Bytes,
    token: &str,
) -> Result<(), clickhouse::error::Error> {
    let mut insert = client
        .insert_formatted_with(insert::insert_statement(table))
        .with_setting("insert_deduplication_token", token)
        .with_setting("deduplicate_blocks_in_dependent_materialized_views", "1");
    insert.send(insert::header(table).into()).await?;
    for start in (0..body.len()).step_by(CHUNK_BYTES) {
        insert
            .send(body.slice(start..body.len().min(start + CHUNK_BYTES)))
            .await?;
    }
    insert.end().await
}
