//! The ClickHouse sink: writes each table's part of a batch with the batch's deduplication
//! token, retrying what can succeed later and setting aside what never will.
//!
//! The sink owns a batch until ClickHouse acknowledges it: a failed insert through the
//! `clickhouse` crate loses its buffered rows, so every attempt opens a fresh insert from the
//! batch's rows.

mod dead_letter;
mod retry;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clickhouse::{RowOwned, RowWrite};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

pub use dead_letter::DeadLetter;
pub use retry::{Backoff, Failure, classify, error_code};

use crate::batch::Batch;
use crate::metrics::Metrics;
use crate::schema::{KindVisitor, LogKind, OTEL_LOGS, OTEL_TRACES};

/// The sink was asked to stop while ClickHouse was failing; the batch stays in the queue.
#[derive(Debug, thiserror::Error)]
#[error("stopped before the batch was stored")]
pub struct Stopped;

type Job<'a> = Pin<Box<dyn Future<Output = Result<(), Stopped>> + Send + 'a>>;

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

    /// Stores every table's rows of `batch`. Returns once each table's rows are in ClickHouse
    /// or set aside, or `Stopped` if `stop` fires while ClickHouse keeps failing.
    pub async fn write(
        &self,
        batch: &Batch,
        token: &str,
        stop: &CancellationToken,
    ) -> Result<(), Stopped> {
        struct Collect<'a> {
            sink: &'a Sink,
            token: &'a str,
            stop: &'a CancellationToken,
            jobs: Vec<Job<'a>>,
        }
        impl<'a> KindVisitor<'a> for Collect<'a> {
            fn visit<T: LogKind>(&mut self, rows: &'a [T]) {
                let job = self.sink.table(T::TABLE.name, rows, self.token, self.stop);
                self.jobs.push(Box::pin(job));
            }
        }
        let mut collect = Collect {
            sink: self,
            token,
            stop,
            jobs: vec![
                Box::pin(self.table(OTEL_LOGS.name, &batch.rows.logs, token, stop)),
                Box::pin(self.table(OTEL_TRACES.name, &batch.rows.spans, token, stop)),
            ],
        };
        batch.rows.typed.visit(&mut collect);
        // Tables are independent: insert them concurrently, like the server would anyway.
        for result in futures_util::future::join_all(collect.jobs).await {
            result?;
        }
        Ok(())
    }

    async fn table<T>(
        &self,
        table: &str,
        rows: &[T],
        token: &str,
        stop: &CancellationToken,
    ) -> Result<(), Stopped>
    where
        T: RowOwned + RowWrite + Serialize + Sync,
    {
        if rows.is_empty() {
            return Ok(());
        }
        for attempt in 1u32.. {
            let started = Instant::now();
            let result = tokio::time::timeout(self.timeout, self.insert(table, rows, token)).await;
            let error = match result {
                Ok(Ok(())) => {
                    self.metrics
                        .rows_inserted
                        .with_label_values(&[table])
                        .inc_by(rows.len() as u64);
                    self.metrics
                        .insert_duration_seconds
                        .with_label_values(&[table])
                        .observe(started.elapsed().as_secs_f64());
                    return Ok(());
                }
                Ok(Err(error)) => error,
                Err(_) => clickhouse::error::Error::TimedOut,
            };
            let error_type = retry::error_type(&error);
            self.metrics
                .insert_errors
                .with_label_values(&[table, &error_type])
                .inc();
            if classify(&error) == Failure::Permanent {
                self.set_aside(table, token, rows, &error);
                return Ok(());
            }
            let delay = self.backoff.delay(attempt);
            // One line per failing batch, then one per ten attempts: outages are long.
            if attempt == 1 || attempt % 10 == 0 {
                tracing::warn!(%error, table, rows = rows.len(), attempt, ?delay, "clickhouse insert failed, will retry");
            }
            tokio::select! {
                _ = stop.cancelled() => return Err(Stopped),
                _ = tokio::time::sleep(delay) => {}
            }
        }
        unreachable!("the attempt counter does not run out")
    }

    async fn insert<T>(
        &self,
        table: &str,
        rows: &[T],
        token: &str,
    ) -> Result<(), clickhouse::error::Error>
    where
        T: RowOwned + RowWrite,
    {
        let client = self
            .client
            .clone()
            .with_setting("insert_deduplication_token", token)
            .with_setting("deduplicate_blocks_in_dependent_materialized_views", "1");
        let mut insert = client.insert::<T>(table).await?;
        for row in rows {
            insert.write(row).await?;
        }
        insert.end().await
    }

    fn set_aside<T: Serialize>(
        &self,
        table: &str,
        token: &str,
        rows: &[T],
        error: &clickhouse::error::Error,
    ) {
        self.metrics
            .dead_letter_batches
            .with_label_values(&[table])
            .inc();
        match self.dead_letter.put(table, token, rows, &error.to_string()) {
            Ok(path) => {
                tracing::error!(%error, table, rows = rows.len(), path = %path.display(), "clickhouse refused a batch for good; set aside")
            }
            Err(io) => {
                tracing::error!(%error, %io, table, rows = rows.len(), "clickhouse refused a batch for good and it could not be set aside; rows lost")
            }
        }
    }
}
