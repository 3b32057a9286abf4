//! The consumer side of the durable queue: read queued requests in order, route them into a
//! batch, record the batch's range in the queue, write it to ClickHouse, acknowledge it.
//!
//! Exactly once: a batch covers a contiguous range of queue positions and is inserted with a
//! deduplication token naming that range. Its range is written to the queue as a marker
//! before the insert. After a crash, the queue is replayed from the last acknowledged
//! position; markers found there rebuild the very same batches (same rows, same ids, same
//! token), so ClickHouse drops what it had already stored.
//!
//! Overlap: while a batch is inserted, the next one is routed; up to
//! [`Limits::inserts_in_flight`] batches are inserted at once. Markers are still appended in
//! batch order by this loop (a replay relies on it), and batches are acknowledged strictly in
//! queue order, whichever insert finishes first: a batch is acknowledged only once every
//! earlier one is stored, so an acknowledged position never covers a batch still in flight.
//!
//! Memory: a batch's rows are cut into compressed pieces as it is routed (`Batch::cut`), so
//! each batch in memory, routed or in flight, is about the size of its compressed insert.

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::ingest::batch::{Batch, Limits};
use crate::ingest::queue::envelope::{Envelope, View};
use crate::ingest::queue::{Entry, Queue, QueueError};
use crate::ingest::route::{self, Origin, Rows};
use crate::ingest::sink::{Sink, Stopped};
use crate::metrics::Metrics;
use crate::schema::TableDef;

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

/// A batch whose insert has finished: the rows' emptied buffers, for a later batch to fill,
/// and the tables ClickHouse refused for good (set aside).
#[derive(Debug)]
struct Stored {
    rows: Rows,
    set_aside: Vec<&'static TableDef>,
}

/// A batch being inserted, and the queue position it is acknowledged up to once stored.
struct Inserting {
    upto: u64,
    task: JoinHandle<Result<Stored, Stopped>>,
}

/// Batches being inserted, oldest first. Their inserts run concurrently, but they come out
/// only in the order they went in, so that acknowledgements follow queue order.
#[derive(Default)]
struct InFlight {
    batches: VecDeque<Inserting>,
}

impl InFlight {
    fn len(&self) -> usize {
        self.batches.len()
    }

    fn push(&mut self, upto: u64, task: JoinHandle<Result<Stored, Stopped>>) {
        self.batches.push_back(Inserting { upto, task });
    }

    /// Has the newest batch acknowledged up to `upto` too; false when none is in flight.
    fn extend_newest(&mut self, upto: u64) -> bool {
        let Some(newest) = self.batches.back_mut() else {
            return false;
        };
        newest.upto = newest.upto.max(upto);
        true
    }

    /// The oldest batch once its insert has finished, with the position to acknowledge; pending
    /// while none is in flight. A later batch that finished first waits for it. Cancel-safe: the
    /// batch leaves the queue only once its outcome is returned.
    async fn oldest(&mut self) -> (u64, Result<Stored, Stopped>) {
        let Some(oldest) = self.batches.front_mut() else {
            return std::future::pending().await;
        };
        let outcome = (&mut oldest.task).await.unwrap_or_else(|error| {
            tracing::error!(%error, "a batch's insert task failed; the batch stays in the queue");
            Err(Stopped)
        });
        let upto = oldest.upto;
        self.batches.pop_front();
        (upto, outcome)
    }

    /// Gives up the batches still in flight (the pipeline halted): none is acknowledged, so
    /// they are replayed at the next start.
    fn abort(&mut self) {
        for batch in self.batches.drain(..) {
            batch.task.abort();
        }
    }
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
        let mut in_flight = InFlight::default();
        let outcome = self.run_with(&mut in_flight, &stop).await;
        in_flight.abort();
        match outcome {
            Err(PipelineError::Halted) if stop.is_cancelled() => Ok(()),
            outcome => outcome,
        }
    }

    async fn run_with(
        &self,
        in_flight: &mut InFlight,
        stop: &CancellationToken,
    ) -> Result<(), PipelineError> {
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
        // The rows of stored batches, emptied, for the next ones to fill.
        let mut spare: Vec<Rows> = Vec::new();
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
                    // Earlier batches first: the open one is flushed only if they were stored.
                    self.settle(in_flight, 0, &mut spare).await?;
                    if let Some(batch) = batch.take().filter(|_| cuts.is_empty()) {
                        self.dispatch(batch, batch_end, queue_id, true, in_flight, stop).await?;
                        self.settle(in_flight, 0, &mut spare).await?;
                    }
                    return Ok(());
                }
                stored = in_flight.oldest() => {
                    spare.push(self.acknowledge(stored).await?);
                    continue;
                }
                _ = sleep_until(deadline) => None,
                entry = reader.next() => Some(entry?),
            };
            let Some(entry) = entry else {
                if let Some(full) = batch.take() {
                    self.dispatch(full, batch_end, queue_id, true, in_flight, stop)
                        .await?;
                    self.settle(in_flight, self.limits.inserts_in_flight, &mut spare)
                        .await?;
                }
                continue;
            };
            let next = entry.next_pos();
            let Entry::Data { pos, payload } = entry else {
                if batch.is_none() {
                    self.acknowledge_marker(next, in_flight).await;
                }
                continue;
            };
            batch_end = next;
            let current =
                batch.get_or_insert_with(|| Batch::new(pos, spare.pop().unwrap_or_default()));
            self.route(
                &payload,
                Origin {
                    queue_id,
                    position: pos,
                },
                current,
            );
            current.added(pos, payload.len());
            current.cut(self.sink.codec());
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
                self.dispatch(full, batch_end, queue_id, write_marker, in_flight, stop)
                    .await?;
                self.settle(in_flight, self.limits.inserts_in_flight, &mut spare)
                    .await?;
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

    /// Records `batch` (whose last request ends at queue position `end`) in the queue and
    /// starts its insert, in flight until [`Pipeline::acknowledge`].
    async fn dispatch(
        &self,
        mut batch: Batch,
        end: u64,
        queue_id: u64,
        write_marker: bool,
        in_flight: &mut InFlight,
        stop: &CancellationToken,
    ) -> Result<(), PipelineError> {
        batch.report_findings(queue_id);
        let mut upto = batch.last + 1;
        if write_marker {
            // Appended here, in batch order, before the insert: a replay cuts where these say.
            let cut = encode_cut(batch.first, batch.last);
            match self.queue.append_marker(&cut).await {
                // Nothing was queued between the batch and its marker: acknowledge the marker
                // with the batch, so that a drained queue reads empty.
                Ok(marker) if marker == end => upto = marker + 1,
                Ok(_) => {}
                Err(error) => {
                    // Without the marker a replay could cut differently; do not insert.
                    tracing::error!(%error, "cannot record a batch in the queue; stopping the pipeline");
                    return Err(PipelineError::Halted);
                }
            }
        }
        self.metrics.batch_rows.observe(batch.rows.len() as f64);
        let token = batch.token(queue_id);
        let tables = batch.take_pieces(self.sink.codec());
        let (sink, stop) = (Arc::clone(&self.sink), stop.clone());
        in_flight.push(
            upto,
            tokio::spawn(async move {
                let set_aside = sink.write(tables, &token, &stop).await?;
                Ok(Stored {
                    rows: batch.rows,
                    set_aside,
                })
            }),
        );
        Ok(())
    }

    /// Waits for the oldest inserts and acknowledges them until at most `keep` are in flight,
    /// keeping their rows in `spare`.
    async fn settle(
        &self,
        in_flight: &mut InFlight,
        keep: usize,
        spare: &mut Vec<Rows>,
    ) -> Result<(), PipelineError> {
        while in_flight.len() > keep {
            spare.push(self.acknowledge(in_flight.oldest().await).await?);
        }
        Ok(())
    }

    /// Acknowledges a marker that ends at `end`, read while no batch is open: every request
    /// before it is in a batch already dispatched. A request queued between a batch and its
    /// marker leaves the marker out of that batch's acknowledgement; without this it would stay
    /// in the queue (gauges reading 2 records, growing older) until the next request came.
    /// Acknowledged with the newest batch in flight, or now if every batch is stored.
    async fn acknowledge_marker(&self, end: u64, in_flight: &mut InFlight) {
        if in_flight.extend_newest(end) || self.queue.stats().acked >= end {
            return;
        }
        if let Err(error) = self.queue.ack(end).await {
            tracing::error!(%error, "cannot acknowledge a batch's marker; it stays in the queue");
        }
    }

    /// Acknowledges a stored batch up to `upto` (the caller keeps queue order) and hands its
    /// emptied rows back; a batch that was not stored halts the pipeline, leaving it and
    /// everything after it in the queue.
    async fn acknowledge(
        &self,
        (upto, stored): (u64, Result<Stored, Stopped>),
    ) -> Result<Rows, PipelineError> {
        let Stored {
            mut rows,
            set_aside,
        } = stored.map_err(|Stopped| PipelineError::Halted)?;
        match self.queue.ack(upto).await {
            // Counted once acknowledged: a batch replayed after a crash was not (module
            // docs of kind_metrics).
            Ok(()) => self.metrics.kinds.count(&rows.tally, |table| {
                !set_aside.iter().any(|aside| aside.name == table.name)
            }),
            Err(error) => {
                tracing::error!(%error, "cannot acknowledge a stored batch; it will be replayed and deduplicated")
            }
        }
        rows.clear();
        Ok(rows)
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

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use tokio::sync::oneshot;

    use super::*;
    use crate::ingest::queue::QueueOptions;
    use crate::ingest::sink::{Backoff, Codec, DeadLetter};

    #[test]
    fn cuts_round_trip() {
        let bytes = super::encode_cut(7, 1 << 40);
        assert_eq!(super::decode_cut(&bytes), Some((7, 1 << 40)));
        assert_eq!(super::decode_cut(&bytes[..9]), None);
    }

    fn pipeline(queue: &Queue, dir: &std::path::Path) -> Pipeline {
        let metrics = Arc::new(Metrics::new());
        let backoff = Backoff {
            initial: Duration::from_millis(1),
            max: Duration::from_millis(1),
        };
        // Never reached: these tests only acknowledge batches.
        let sink = Sink::new(
            clickhouse::Client::default(),
            Codec::Lz4,
            backoff,
            Duration::from_secs(1),
            DeadLetter::new(&dir.join("dead-letter")),
            metrics.clone(),
        );
        let limits = Limits {
            max_rows: 1,
            max_bytes: 1,
            max_age: Duration::from_secs(1),
            inserts_in_flight: 1,
        };
        Pipeline::new(queue.clone(), sink, limits, metrics)
    }

    fn stored() -> Result<Stored, Stopped> {
        Ok(Stored {
            rows: Rows::default(),
            set_aside: Vec::new(),
        })
    }

    #[tokio::test]
    async fn acks_follow_queue_order_when_a_later_insert_finishes_first() {
        let dir = tempfile::tempdir().unwrap();
        let queue = Queue::open_async(QueueOptions::new(dir.path().join("queue")))
            .await
            .unwrap();
        queue.append(b"first batch".to_vec()).await.unwrap();
        let first_upto = queue.append(b"second batch".to_vec()).await.unwrap();
        let end = queue.stats().end;
        let pipeline = pipeline(&queue, dir.path());
        let mut in_flight = InFlight::default();

        let (release_first, first_released) = oneshot::channel::<()>();
        in_flight.push(
            first_upto,
            tokio::spawn(async move {
                first_released.await.unwrap();
                stored()
            }),
        );
        let later = tokio::spawn(async { stored() });
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !later.is_finished() {
            assert!(
                std::time::Instant::now() < deadline,
                "the later insert never finished"
            );
            tokio::task::yield_now().await;
        }
        in_flight.push(end, later);

        // The later batch is stored, the earlier one is not: nothing comes out, nothing is
        // acknowledged.
        tokio::select! {
            biased;
            (upto, _) = in_flight.oldest() => panic!("a batch up to {upto} came out before the first"),
            () = std::future::ready(()) => {}
        }
        assert_eq!(in_flight.len(), 2);
        assert_eq!(queue.stats().acked, 0);

        release_first.send(()).unwrap();
        let first = in_flight.oldest().await;
        assert_eq!(first.0, first_upto);
        pipeline.acknowledge(first).await.unwrap();
        assert_eq!(queue.stats().acked, first_upto);
        let later = in_flight.oldest().await;
        assert_eq!(later.0, end);
        pipeline.acknowledge(later).await.unwrap();
        assert_eq!(queue.stats().acked, end);
        assert_eq!(in_flight.len(), 0);
    }

    /// A request queued between a batch and its marker: the next batch holds that request and
    /// is acknowledged up to the first marker, so both markers trail in the queue. Read with no
    /// batch open, each goes with the newest batch in flight, or at once when none is.
    #[tokio::test]
    async fn markers_left_behind_their_batches_are_acknowledged_so_a_drained_queue_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let queue = Queue::open_async(QueueOptions::new(dir.path().join("queue")))
            .await
            .unwrap();
        queue.append(b"first batch".to_vec()).await.unwrap();
        let second = queue.append(b"second batch".to_vec()).await.unwrap();
        let first_marker = queue.append_marker(encode_cut(0, 0)).await.unwrap();
        let second_marker = queue
            .append_marker(encode_cut(second, second))
            .await
            .unwrap();
        let end = queue.stats().end;
        let pipeline = pipeline(&queue, dir.path());
        let mut in_flight = InFlight::default();
        // As dispatched: each batch up to the entry after its last request.
        in_flight.push(second, tokio::spawn(async { stored() }));
        in_flight.push(first_marker, tokio::spawn(async { stored() }));

        pipeline
            .acknowledge_marker(second_marker, &mut in_flight)
            .await;
        assert_eq!(queue.stats().acked, 0, "not before its batches are stored");
        let mut spare = Vec::new();
        pipeline
            .settle(&mut in_flight, 0, &mut spare)
            .await
            .unwrap();
        assert_eq!(queue.stats().acked, second_marker);

        pipeline.acknowledge_marker(end, &mut in_flight).await;
        assert_eq!(queue.stats().acked, end);
        assert_eq!(queue.stats().records, 0);
        assert_eq!(queue.stats().bytes, 0);
    }

    #[tokio::test]
    async fn a_batch_not_stored_halts_before_anything_after_it_is_acknowledged() {
        let dir = tempfile::tempdir().unwrap();
        let queue = Queue::open_async(QueueOptions::new(dir.path().join("queue")))
            .await
            .unwrap();
        queue.append(b"first batch".to_vec()).await.unwrap();
        let first_upto = queue.append(b"second batch".to_vec()).await.unwrap();
        let end = queue.stats().end;
        let pipeline = pipeline(&queue, dir.path());
        let mut in_flight = InFlight::default();
        in_flight.push(first_upto, tokio::spawn(async { Err(Stopped) }));
        in_flight.push(end, tokio::spawn(async { stored() }));
        let mut spare = Vec::new();
        let halted = pipeline.settle(&mut in_flight, 0, &mut spare).await;
        assert!(matches!(halted, Err(PipelineError::Halted)), "{halted:?}");
        assert_eq!(queue.stats().acked, 0);
        assert!(spare.is_empty());
    }
}
