//! The durable queue: a write-ahead log between the receivers and the ClickHouse sink.
//!
//! A receiver acknowledges an OTLP request only once its records are appended here; the sink
//! reads entries in order and acknowledges them once stored, and the log survives `kill -9`
//! and is replayed on restart.
//!
//! # Positions
//! A [`Position`] is the byte offset of an entry in the whole log, monotonic across segments
//! and never reused (not even after a lost tail: see [`Queue::open`]). The pipeline derives row
//! ids and ClickHouse `insert_deduplication_token`s from positions, with [`Queue::id`] telling
//! replicas apart.
//!
//! # On-disk format
//! The queue directory holds:
//! - `queue-id`: the queue id as 16 hex digits and a newline, created at first open;
//! - `ack`: the acknowledged position, u64 little-endian followed by its CRC-32 (IEEE), replaced
//!   atomically (temp file, fsync, rename, directory fsync);
//! - `lock`: locked exclusively (`flock`) while a process has the queue open;
//! - segments `<start position, 20 digits>.wal`, e.g. `00000000000000000000.wal`, contiguous:
//!   each starts where the previous ends. A segment holds records back to back, no file header.
//!
//! A record is a 17-byte header, all integers little-endian, followed by the payload:
//!
//! | offset | size | field                                                          |
//! |--------|------|----------------------------------------------------------------|
//! | 0      | 1    | kind and magic: `0xD1` data, `0xA7` marker                     |
//! | 1      | 4    | payload length (u32)                                           |
//! | 5      | 4    | CRC-32 (IEEE) of bytes 0..5, bytes 9..17 and the payload       |
//! | 9      | 8    | append time, unix milliseconds (u64)                           |
//! | 17     | len  | payload                                                        |
//!
//! # Durability
//! One writer thread group-commits appends: it takes everything queued, writes it, syncs once
//! per the [`FsyncPolicy`] and then publishes the group to the reader and replies. Readers only
//! see published records, so under [`FsyncPolicy::Always`] nothing the sink stores can vanish
//! in a crash and have its position reused. A group with a marker is always synced, and a
//! segment is synced before the next one is created, so only the last segment can end in a
//! torn record; [`Queue::open`] cuts such a tail and refuses any other damage.

pub mod envelope;
mod meta;
mod reader;
mod record;
mod recovery;
mod segment;
mod writer;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use tokio::sync::{Notify, Semaphore, oneshot};

pub use reader::Reader;
use record::{HEADER_LEN, Kind};
use segment::Cursor;
use writer::{Request, Writer};

/// Byte offset of an entry in the log; see the module docs.
pub type Position = u64;

/// Payload bytes waiting for the writer at most; appends wait beyond it, so memory stays
/// bounded however many requests arrive.
const MAX_IN_FLIGHT_BYTES: u64 = 64 << 20;
/// Memory charged per waiting append on top of its payload, so tiny appends are bounded too.
const REQUEST_OVERHEAD: u64 = 128;

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("queue is full: {bytes} unacknowledged bytes, limit {max_bytes}")]
    Full { bytes: u64, max_bytes: u64 },
    #[error("payload of {len} bytes does not fit in a queue record")]
    TooLarge { len: usize },
    #[error("queue i/o on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("queue file {path} is corrupt at offset {offset}: {reason}")]
    Corrupt {
        path: PathBuf,
        offset: u64,
        reason: &'static str,
    },
    #[error("queue directory {dir} is open in another process")]
    Locked { dir: PathBuf },
    #[error("cannot acknowledge up to {upto}: the queue ends at {end}")]
    AckBeyondEnd { upto: Position, end: Position },
    #[error("queue is closed")]
    Closed,
}

/// Wraps an I/O error with the path it concerns.
fn io_at(path: impl AsRef<Path>) -> impl FnOnce(std::io::Error) -> QueueError {
    let path = path.as_ref().to_path_buf();
    move |source| QueueError::Io { path, source }
}

/// When appended records are fsynced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FsyncPolicy {
    /// Before `append` returns: an acknowledged record survives a power loss.
    #[default]
    Always,
    /// At most this long after a write; a crash of the process loses nothing, a power loss up
    /// to the interval.
    Interval(Duration),
    /// Left to the OS; a crash of the process loses nothing, a power loss may lose anything
    /// not yet written back.
    Never,
}

/// Where and how the queue stores its log.
#[derive(Debug, Clone)]
pub struct QueueOptions {
    /// Directory of the log, created if missing.
    pub dir: PathBuf,
    /// Bound on unacknowledged bytes (headers included); data appends beyond it fail with
    /// [`QueueError::Full`].
    pub max_bytes: u64,
    /// A new segment file is started when a record would take the current one past this size.
    pub segment_bytes: u64,
    /// When appends are fsynced.
    pub fsync: FsyncPolicy,
}

impl QueueOptions {
    /// Options for `dir` with a 1 GiB bound, 64 MiB segments and [`FsyncPolicy::Always`].
    pub fn new(dir: impl Into<PathBuf>) -> QueueOptions {
        QueueOptions {
            dir: dir.into(),
            max_bytes: 1 << 30,
            segment_bytes: 64 << 20,
            fsync: FsyncPolicy::Always,
        }
    }
}

/// An entry read back from the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// Appended with [`Queue::append`].
    Data { pos: Position, payload: Bytes },
    /// Appended with [`Queue::append_marker`].
    Marker { pos: Position, payload: Bytes },
}

impl Entry {
    pub fn pos(&self) -> Position {
        match self {
            Entry::Data { pos, .. } | Entry::Marker { pos, .. } => *pos,
        }
    }

    pub fn payload(&self) -> &Bytes {
        match self {
            Entry::Data { payload, .. } | Entry::Marker { payload, .. } => payload,
        }
    }

    /// The position right after this entry: `ack(entry.next_pos())` acknowledges it and
    /// everything before it.
    pub fn next_pos(&self) -> Position {
        self.pos() + HEADER_LEN + self.payload().len() as u64
    }
}

/// A snapshot of the queue's fill level.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueStats {
    /// Bytes of published, unacknowledged records (`end - acked`).
    pub bytes: u64,
    /// Size of all segment files, including acknowledged records not yet deleted.
    pub disk_bytes: u64,
    /// Published, unacknowledged entries.
    pub records: u64,
    /// Time since the oldest unacknowledged entry was appended.
    pub oldest_unacked_age: Option<Duration>,
    pub acked: Position,
    /// Position the next append gets.
    pub end: Position,
}

/// State shared by the handles, the writer thread and the readers.
#[derive(Debug)]
struct Shared {
    dir: PathBuf,
    state: Mutex<State>,
    /// Woken whenever a group is published or the queue closes.
    appended: Notify,
}

#[derive(Debug)]
struct State {
    /// Segment start → length written so far.
    segments: BTreeMap<Position, u64>,
    acked: Position,
    /// End of the published records.
    end: Position,
    /// Bytes of appends accepted but not yet published.
    in_flight: u64,
    /// Published, unacknowledged records.
    records: u64,
    closed: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is consistent after every update, so a panic elsewhere does not spoil it.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Handle to an open queue; clones share it. Dropping the last handle stops the writer after
/// the pending appends and waits for it.
#[derive(Debug, Clone)]
pub struct Queue {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    shared: Arc<Shared>,
    id: u64,
    max_bytes: u64,
    requests: Option<std::sync::mpsc::Sender<Request>>,
    writer: Option<std::thread::JoinHandle<()>>,
    memory: Arc<Semaphore>,
    /// Serializes acks, which walk the log outside the state lock.
    acking: Mutex<()>,
    /// Append time of the entry at a position, cached for `stats`.
    oldest: Mutex<Option<(Position, u64)>>,
    /// Held for the directory lock; released after the writer has stopped.
    _lock: std::fs::File,
}

impl Drop for Inner {
    fn drop(&mut self) {
        drop(self.requests.take());
        if let Some(writer) = self.writer.take()
            && writer.join().is_err()
        {
            tracing::error!("queue writer thread panicked");
        }
    }
}

impl Queue {
    /// Opens (or creates) the queue in `opts.dir` and recovers it: segments wholly below the
    /// acknowledged position are deleted, the rest are checked record by record, a torn record
    /// at the end of the last segment is cut off with a warning, and any other damage is a
    /// [`QueueError::Corrupt`]. If the log ends before the acknowledged position (an unsynced
    /// tail lost in a power failure), appends continue after it so positions are not reused.
    /// Blocks while it reads and checks the log: from async code use [`Queue::open_async`].
    pub fn open(opts: QueueOptions) -> Result<Queue, QueueError> {
        let dir = opts.dir;
        std::fs::create_dir_all(&dir).map_err(io_at(&dir))?;
        let lock = meta::lock(&dir)?;
        let id = meta::load_or_create_id(&dir)?;
        let acked = meta::read_ack(&dir)?;
        let recovered = recovery::recover(&dir, acked)?;
        let (&active, &active_len) = recovered
            .segments
            .last_key_value()
            .expect("recovery leaves a segment to append to");
        let shared = Arc::new(Shared {
            dir: dir.clone(),
            state: Mutex::new(State {
                segments: recovered.segments,
                acked,
                end: recovered.end,
                in_flight: 0,
                records: recovered.records,
                closed: false,
            }),
            appended: Notify::new(),
        });
        let writer = Writer::new(
            Arc::clone(&shared),
            opts.segment_bytes,
            opts.fsync,
            active,
            active_len,
        )?;
        let (requests, received) = std::sync::mpsc::channel();
        let writer = std::thread::Builder::new()
            .name("queue-writer".into())
            .spawn(move || writer.run(received))
            .map_err(io_at(&dir))?;
        Ok(Queue {
            inner: Arc::new(Inner {
                shared,
                id,
                max_bytes: opts.max_bytes,
                requests: Some(requests),
                writer: Some(writer),
                memory: Arc::new(Semaphore::new(MAX_IN_FLIGHT_BYTES as usize)),
                acking: Mutex::new(()),
                oldest: Mutex::new(None),
                _lock: lock,
            }),
        })
    }

    /// [`Queue::open`] on the blocking thread pool: recovery reads the whole unacknowledged log.
    pub async fn open_async(opts: QueueOptions) -> Result<Queue, QueueError> {
        tokio::task::spawn_blocking(move || Queue::open(opts))
            .await
            .unwrap_or_else(|panicked| std::panic::resume_unwind(panicked.into_panic()))
    }

    /// Random id created at first open and kept in the directory.
    pub fn id(&self) -> u64 {
        self.inner.id
    }

    /// Appends a data entry; returns its position once it is durable per the fsync policy.
    /// Fails with [`QueueError::Full`] when the unacknowledged bytes plus this record would
    /// exceed `max_bytes`.
    pub async fn append(&self, payload: impl Into<Vec<u8>>) -> Result<Position, QueueError> {
        self.submit(Kind::Data, payload.into()).await
    }

    /// Appends a marker entry (a batch cut point): never refused as full, and always fsynced
    /// before this returns whatever the policy.
    pub async fn append_marker(&self, payload: impl Into<Vec<u8>>) -> Result<Position, QueueError> {
        self.submit(Kind::Marker, payload.into()).await
    }

    async fn submit(&self, kind: Kind, payload: Vec<u8>) -> Result<Position, QueueError> {
        if u32::try_from(payload.len()).is_err() {
            return Err(QueueError::TooLarge { len: payload.len() });
        }
        let record_len = HEADER_LEN + payload.len() as u64;
        let permits = (payload.len() as u64 + REQUEST_OVERHEAD).min(MAX_IN_FLIGHT_BYTES);
        let permit = Arc::clone(&self.inner.memory)
            .acquire_many_owned(permits as u32)
            .await
            .expect("the memory semaphore is never closed");
        // No await from the reservation to the send, so a dropped future cannot leak it.
        {
            let mut state = self.inner.shared.lock();
            if state.closed {
                return Err(QueueError::Closed);
            }
            let bytes = state.end - state.acked + state.in_flight;
            if kind == Kind::Data && bytes + record_len > self.inner.max_bytes {
                return Err(QueueError::Full {
                    bytes,
                    max_bytes: self.inner.max_bytes,
                });
            }
            state.in_flight += record_len;
        }
        let (reply, replied) = oneshot::channel();
        let request = Request {
            kind,
            payload,
            reply,
            permit: Some(permit),
        };
        let requests = self.inner.requests.as_ref().expect("set until drop");
        if requests.send(request).is_err() {
            self.inner.shared.lock().in_flight -= record_len;
            return Err(QueueError::Closed);
        }
        replied.await.map_err(|_| QueueError::Closed)?
    }

    /// A reader starting at the acknowledged position. Readers are independent cursors (the
    /// pipeline has one consumer); acknowledgements are shared by all of them.
    pub fn reader(&self) -> Reader {
        Reader::new(Arc::clone(&self.inner.shared))
    }

    /// [`Queue::ack_blocking`] on the blocking thread pool, so its fsyncs and file reads do
    /// not hold up an async worker (and every task queued behind it).
    pub async fn ack(&self, upto: Position) -> Result<(), QueueError> {
        let queue = self.clone();
        tokio::task::spawn_blocking(move || queue.ack_blocking(upto))
            .await
            .unwrap_or_else(|panicked| std::panic::resume_unwind(panicked.into_panic()))
    }

    /// Records that every entry with a position below `upto` is stored downstream: persists
    /// the position of the first entry at or after `upto` (durably, before returning; this
    /// blocks for two fsyncs), stops counting the acknowledged bytes toward `max_bytes` and
    /// deletes the segments wholly below it. An error while deleting leaves the
    /// acknowledgement in place; the files go at the next open. Blocks: from async code use
    /// [`Queue::ack`].
    pub fn ack_blocking(&self, upto: Position) -> Result<(), QueueError> {
        let shared = &self.inner.shared;
        let _serialized = self
            .inner
            .acking
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let (acked, end) = {
            let state = shared.lock();
            (state.acked, state.end)
        };
        if upto <= acked {
            return Ok(());
        }
        if upto > end {
            return Err(QueueError::AckBeyondEnd { upto, end });
        }
        // Walk the headers so the stored position is a record boundary and the count is exact.
        let (mut pos, mut records, mut cursor) = (acked, 0, Cursor::default());
        while pos < upto {
            let Some((header, _)) = cursor.read(shared, pos, false)? else {
                unreachable!("only ack moves the acknowledged position, and acks are serialized");
            };
            pos += header.record_len();
            records += 1;
        }
        meta::write_ack(&shared.dir, pos)?;
        let deleted: Vec<Position> = {
            let mut state = shared.lock();
            state.acked = pos;
            state.records -= records;
            let holding = state
                .segments
                .range(..=pos)
                .next_back()
                .map_or(pos, |(&start, _)| start);
            let below: Vec<Position> = state.segments.range(..holding).map(|(&s, _)| s).collect();
            for start in &below {
                state.segments.remove(start);
            }
            below
        };
        for start in deleted {
            let path = segment::path(&shared.dir, start);
            std::fs::remove_file(&path).map_err(io_at(&path))?;
        }
        Ok(())
    }

    /// Why senders should be sent elsewhere: the queue is so full (90% of `max_bytes`) that
    /// they would soon get 429s.
    pub fn not_ready_reason(&self, max_bytes: u64) -> Option<String> {
        const NOT_READY_FRACTION: f64 = 0.9;
        let queued = self.stats().bytes;
        (queued as f64 >= max_bytes as f64 * NOT_READY_FRACTION)
            .then(|| format!("durable queue nearly full ({queued} of {max_bytes} bytes)"))
    }

    /// Current fill level.
    pub fn stats(&self) -> QueueStats {
        let shared = &self.inner.shared;
        let (acked, end, records, disk_bytes) = {
            let state = shared.lock();
            let disk_bytes = state.segments.values().sum();
            (state.acked, state.end, state.records, disk_bytes)
        };
        QueueStats {
            bytes: end - acked,
            disk_bytes,
            records,
            oldest_unacked_age: (acked < end)
                .then(|| self.append_millis(acked))
                .flatten()
                .map(|millis| {
                    let appended = SystemTime::UNIX_EPOCH + Duration::from_millis(millis);
                    SystemTime::now()
                        .duration_since(appended)
                        .unwrap_or_default()
                }),
            acked,
            end,
        }
    }

    /// Append time of the entry at `pos`, read from its header once per acknowledged position.
    fn append_millis(&self, pos: Position) -> Option<u64> {
        let mut cached = self
            .inner
            .oldest
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((at, millis)) = *cached
            && at == pos
        {
            return Some(millis);
        }
        match Cursor::default().read(&self.inner.shared, pos, false) {
            Ok(Some((header, _))) => {
                *cached = Some((pos, header.unix_millis));
                Some(header.unix_millis)
            }
            Ok(None) => None,
            Err(error) => {
                tracing::warn!(%error, "cannot read the oldest queue entry");
                None
            }
        }
    }
}

#[cfg(test)]
mod model_tests;
#[cfg(test)]
mod tests;
