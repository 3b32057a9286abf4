//! The ClickHouse sink: writes each table's part of a batch with the batch's deduplication
//! token, retrying what can succeed later and setting aside what never will.
//!
//! The sink owns a batch until ClickHouse acknowledges it: a failed insert through the
//! `clickhouse` crate loses its buffered rows, so every attempt opens a fresh insert from the
//! batch's rows.

mod dead_letter;
mod retry;

use std::sync::Arc;
use std::time::{Duration, Instant};

use clickhouse::{RowOwned, RowWrite};
use serde::Serialize;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use dead_letter::DeadLetter;
pub use retry::{Backoff, Failure, classify, error_code};

use crate::metrics::Metrics;
use crate::route::Rows;
use crate::schema::{KindConsumer, LogKind, OTEL_LOGS, OTEL_TRACES};

/// The sink was asked to stop while ClickHouse was failing; the batch stays in the queue.
#[derive(Debug, thiserror::Error)]
#[error("stopped before the batch was stored")]
pub struct Stopped;

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

    /// Stores every table's `rows`, each table on its own task (encoding and compressing a
    /// table's rows is CPU work, so tables spread over the runtime's threads). Returns once
    /// each table's rows are in ClickHouse or set aside, or `Stopped` if `stop` fires while
    /// ClickHouse keeps failing.
    pub async fn write(
        self: &Arc<Self>,
        rows: Rows,
        token: &str,
        stop: &CancellationToken,
    ) -> Result<(), Stopped> {
        struct Spawn<'a> {
            sink: &'a Arc<Sink>,
            token: &'a str,
            stop: &'a CancellationToken,
            jobs: Vec<JoinHandle<Result<(), Stopped>>>,
        }
        impl Spawn<'_> {
            fn spawn<T>(&mut self, table: &'static str, rows: Vec<T>)
            where
                T: RowOwned + RowWrite + Serialize + Send + Sync,
            {
                if rows.is_empty() {
                    return;
                }
                let (sink, token, stop) = (
                    Arc::clone(self.sink),
                    self.token.to_owned(),
                    self.stop.clone(),
                );
                self.jobs.push(tokio::spawn(async move {
                    sink.table(table, &rows, &token, &stop).await
                }));
            }
        }
        impl KindConsumer for Spawn<'_> {
            fn take<T: LogKind>(&mut self, rows: Vec<T>) {
                self.spawn(T::TABLE.name, rows);
            }
        }
        let Rows {
            logs, spans, typed, ..
        } = rows;
        let mut spawn = Spawn {
            sink: self,
            token,
            stop,
            jobs: Vec::new(),
        };
        spawn.spawn(OTEL_LOGS.name, logs);
        spawn.spawn(OTEL_TRACES.name, spans);
        typed.into_each(&mut spawn);
        // Every task is awaited, so none outlives the batch's outcome.
        let mut outcome = Ok(());
        for job in spawn.jobs {
            match job.await {
                Ok(Ok(())) => {}
                Ok(Err(Stopped)) => outcome = Err(Stopped),
                Err(error) => {
                    tracing::error!(%error, "a table's insert task failed; the batch stays in the queue");
                    outcome = Err(Stopped);
                }
            }
        }
        outcome
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
