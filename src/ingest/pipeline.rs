//! The consumer side of the durable queue: read queued requests in order, route them into a
//! batch, record the batch's range in the queue, write it to ClickHouse, acknowledge it.
//!
//! Exactly once: a batch covers a contiguous range of queue positions and is inserted with a
//! deduplication token naming that range. Its range is written to the queue as a marker
//! before the insert. After a crash, the queue is replayed from the last acknowledged
//! position; markers found there rebuild the very same batches (same rows, same ids, same
//! token), so ClickHouse drops what it had already stored.

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::ingest::batch::{Batch, Limits};
use crate::ingest::queue::envelope::{Envelope, View};
use crate::ingest::queue::{Entry, Queue, QueueError};
use crate::ingest::route::{self, Origin, Rows};
use crate::ingest::sink::{Sink, Stopped};
use crate::metrics::Metrics;

/// A batch's range as stored in a queue marker: first and last position, little-endian.
fn encode_cut(first: u64, last: u64) -> [u8; 16] {
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&first.to_le_bytes());
    bytes[8..].copy_from_slice(&last.to_le_bytes());
    bytes
}

fn decode_cut(bytes: &[u8]) -> Option<(u64, u64)> {
    let first = u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?);
    let last = u64::from_le_bytes(bytes.get(8..16)?.try_into().ok()?);
    Some((first, last))
}

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("durable queue: {0}")]
    Queue(#[from] QueueError),
    /// A batch could not be recorded in the queue or its insert task failed (logged where it
    /// happened); it stays in the queue for the next start.
    #[error("a batch could not be stored; it stays in the queue")]
    Halted,
}

pub struct Pipeline {
    queue: Queue,
    sink: Arc<Sink>,
    limits: Limits,
    metrics: Arc<Metrics>,
}

impl Pipeline {
    pub fn new(queue: Queue, sink: Sink, limits: Limits, metrics: Arc<Metrics>) -> Pipeline {
        Pipeline {
            queue,
            sink: Arc::new(sink),
            limits,
            metrics,
        }
    }

    /// Cuts recorded in the queue past the acknowledged position: batches formed before a
    /// restart that must be formed again identically. Reads the whole unacknowledged log, so
    /// on the blocking thread pool.
    async fn pending_cuts(&self) -> Result<VecDeque<(u64, u64)>, QueueError> {
        let queue = self.queue.clone();
        tokio::task::spawn_blocking(move || pending_cuts(&queue))
            .await
            .unwrap_or_else(|panicked| std::panic::resume_unwind(panicked.into_panic()))
    }

    /// Runs until `stop`; on stop, a batch being retried is left in the queue for the next
    /// start, and a batch being filled is flushed once if ClickHouse takes it.
    pub async fn run(self, stop: CancellationToken) -> Result<(), PipelineError> {
        let queue_id = self.queue.id();
        let mut cuts = self.pending_cuts().await?;
        if !cuts.is_empty() {
            tracing::info!(
                batches = cuts.len(),
                "replaying batches cut before the last stop"
            );
        }
        let mut reader = self.queue.reader();
        let mut batch: Option<Batch> = None;
        // The rows of the last stored batch, emptied, for the next one to fill.
        let mut spare = Rows::default();
        // Where the open batch's last request ends in the queue.
        let mut batch_end = 0;
        loop {
            let deadline = batch
                .as_ref()
                .filter(|_| cuts.is_empty())
                .map(|b| Instant::from_std(b.deadline(&self.limits)));
            let entry = tokio::select! {
                biased;
                _ = stop.cancelled() => {
                    if let Some(batch) = batch.take().filter(|_| cuts.is_empty()) {
                        let _ = self.flush(batch, batch_end, queue_id, true, &stop).await;
                    }
                    return Ok(());
                }
                _ = sleep_until(deadline) => None,
                entry = reader.next() => Some(entry?),
            };
            let Some(entry) = entry else {
                if let Some(full) = batch.take() {
                    match self.flush(full, batch_end, queue_id, true, &stop).await {
                        Ok(rows) => spare = rows,
                        Err(Stopped) => return halted(&stop),
                    }
                }
                continue;
            };
            let next = entry.next_pos();
            let Entry::Data { pos, payload } = entry else {
                continue;
            };
            batch_end = next;
            let current = batch.get_or_insert_with(|| Batch::new(pos, std::mem::take(&mut spare)));
            self.route(
                &payload,
                Origin {
                    queue_id,
                    position: pos,
                },
                current,
            );
            current.added(pos, payload.len());
            let replayed_cut = cuts.front().is_some_and(|&(_, last)| last == pos);
            let cut = if replayed_cut {
                cuts.pop_front();
                Some(false)
            } else if cuts.is_empty() && current.is_full(&self.limits) {
                Some(true)
            } else {
                None
            };
            if let Some(write_marker) = cut {
                let full = batch.take().expect("a batch is open");
                match self
                    .flush(full, batch_end, queue_id, write_marker, &stop)
                    .await
                {
                    Ok(rows) => spare = rows,
                    Err(Stopped) => return halted(&stop),
                }
            }
        }
    }

    fn route(&self, payload: &[u8], origin: Origin, batch: &mut Batch) {
        let earlier = batch.rows.findings.len();
        match Envelope::view(payload) {
            Ok(View::Logs(request)) => route::logs(&request, origin, &mut batch.rows),
            Ok(View::Traces(request)) => route::traces(&request, origin, &mut batch.rows),
            // Requests were decoded before they were queued: this is damage, not bad input.
            Err(error) => {
                tracing::error!(%error, position = origin.position, "skipping an unreadable queued request")
            }
        }
        for finding in &batch.rows.findings[earlier..] {
            self.metrics.count_finding(finding);
        }
    }

    /// Stores `batch`, whose last request ends at queue position `end`, and acknowledges it.
    async fn flush(
        &self,
        mut batch: Batch,
        end: u64,
        queue_id: u64,
        write_marker: bool,
        stop: &CancellationToken,
    ) -> Result<Rows, Stopped> {
        batch.report_findings(queue_id);
        let mut upto = batch.last + 1;
        if write_marker {
            let cut = encode_cut(batch.first, batch.last);
            match self.queue.append_marker(&cut).await {
                // Nothing was queued between the batch and its marker: acknowledge the marker
                // with the batch, so that a drained queue reads empty.
                Ok(marker) if marker == end => upto = marker + 1,
                Ok(_) => {}
                Err(error) => {
                    // Without the marker a replay could cut differently; do not insert.
                    tracing::error!(%error, "cannot record a batch in the queue; stopping the pipeline");
                    return Err(Stopped);
                }
            }
        }
        self.metrics.batch_rows.observe(batch.rows.len() as f64);
        let token = batch.token(queue_id);
        let set_aside = self.sink.write(&mut batch.rows, &token, stop).await?;
        match self.queue.ack(upto).await {
            // Counted once acknowledged: a batch replayed after a crash was not (module
            // docs of kind_metrics).
            Ok(()) => self.metrics.kinds.count(&batch.rows.tally, |table| {
                !set_aside.iter().any(|aside| aside.name == table.name)
            }),
            Err(error) => {
                tracing::error!(%error, "cannot acknowledge a stored batch; it will be replayed and deduplicated")
            }
        }
        batch.rows.clear();
        Ok(batch.rows)
    }
}

fn pending_cuts(queue: &Queue) -> Result<VecDeque<(u64, u64)>, QueueError> {
    let acked = queue.stats().acked;
    let mut reader = queue.reader();
    let mut cuts = VecDeque::new();
    while let Some(entry) = reader.try_next()? {
        if let Entry::Marker { payload, .. } = entry
            && let Some((first, last)) = decode_cut(&payload)
            && first >= acked
        {
            cuts.push_back((first, last));
        }
    }
    Ok(cuts)
}

/// A flush that did not store its batch: expected when stopping (ClickHouse kept failing),
/// otherwise the pipeline cannot go on.
fn halted(stop: &CancellationToken) -> Result<(), PipelineError> {
    if stop.is_cancelled() {
        Ok(())
    } else {
        Err(PipelineError::Halted)
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn cuts_round_trip() {
        let bytes = super::encode_cut(7, 1 << 40);
        assert_eq!(super::decode_cut(&bytes), Some((7, 1 << 40)));
        assert_eq!(super::decode_cut(&bytes[..9]), None);
    }
}
