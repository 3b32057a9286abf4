//! The writer thread: group commit of appends into the active segment.
//!
//! Appends queue up on a channel while the previous group is being written and synced; the
//! writer then takes all of them (up to [`MAX_GROUP_BYTES`]), writes them, syncs once, publishes
//! them to readers and replies to every caller. One fsync thus serves many appends.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::time::{Instant, SystemTime};

use tokio::sync::{OwnedSemaphorePermit, oneshot};

use super::record::{HEADER_LEN, Header, Kind};
use super::{FsyncPolicy, Position, QueueError, Shared, io_at, segment};

/// Appends taken into one group at most, so a burst does not delay its first replies for long.
const MAX_GROUP_BYTES: u64 = 8 << 20;

/// One append waiting for the writer.
pub(crate) struct Request {
    pub kind: Kind,
    pub payload: Vec<u8>,
    pub reply: oneshot::Sender<Result<Position, QueueError>>,
    /// Memory budget held by the payload until it is written.
    pub permit: Option<OwnedSemaphorePermit>,
}

impl Request {
    fn record_len(&self) -> u64 {
        HEADER_LEN + self.payload.len() as u64
    }
}

pub(crate) struct Writer {
    shared: Arc<Shared>,
    segment_bytes: u64,
    fsync: FsyncPolicy,
    file: BufWriter<File>,
    segment_start: Position,
    segment_len: u64,
    /// Bytes written since the last fsync.
    dirty: bool,
    last_sync: Instant,
}

impl Writer {
    /// A writer appending to the segment starting at `segment_start` of `segment_len` bytes.
    pub(crate) fn new(
        shared: Arc<Shared>,
        segment_bytes: u64,
        fsync: FsyncPolicy,
        segment_start: Position,
        segment_len: u64,
    ) -> Result<Writer, QueueError> {
        let path = segment::path(&shared.dir, segment_start);
        let file = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(io_at(path))?;
        Ok(Writer {
            shared,
            segment_bytes,
            fsync,
            file: BufWriter::with_capacity(1 << 20, file),
            segment_start,
            segment_len,
            dirty: false,
            last_sync: Instant::now(),
        })
    }

    /// Serves appends until every sender is gone or a write fails, then marks the queue closed.
    pub(crate) fn run(mut self, requests: Receiver<Request>) {
        while let Some(first) = self.next_request(&requests) {
            let mut group_bytes = first.record_len();
            let mut group = vec![first];
            while group_bytes < MAX_GROUP_BYTES {
                match requests.try_recv() {
                    Ok(request) => {
                        group_bytes += request.record_len();
                        group.push(request);
                    }
                    Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
                }
            }
            if let Err(error) = self.commit(group) {
                // After a failed write or fsync the file's content is unknown (an fsync error
                // may have dropped dirty pages), so stop: recovery on restart decides what
                // survived, and appends fail with `Closed` meanwhile.
                tracing::error!(%error, "queue writer failed; the queue is closed");
                break;
            }
        }
        if self.dirty
            && let Err(error) = self.sync()
        {
            tracing::error!(%error, "final sync of the queue failed");
        }
        self.shared.lock().closed = true;
        self.shared.appended.notify_waiters();
    }

    /// Waits for the next append, syncing when an `Interval` policy's deadline passes first.
    fn next_request(&mut self, requests: &Receiver<Request>) -> Option<Request> {
        loop {
            let deadline = match self.fsync {
                FsyncPolicy::Interval(interval) if self.dirty => self.last_sync + interval,
                _ => return requests.recv().ok(),
            };
            match requests.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(request) => return Some(request),
                Err(RecvTimeoutError::Disconnected) => return None,
                Err(RecvTimeoutError::Timeout) => {
                    if let Err(error) = self.sync() {
                        tracing::error!(%error, "queue fsync failed; the queue is closed");
                        return None;
                    }
                }
            }
        }
    }

    /// Writes `group`, syncs per policy, publishes it and replies. On error every caller in the
    /// group gets the error and nothing of the group is published.
    fn commit(&mut self, mut group: Vec<Request>) -> Result<(), QueueError> {
        let group_bytes: u64 = group.iter().map(Request::record_len).sum();
        let mut positions = Vec::with_capacity(group.len());
        let result = self.write_group(&mut group, &mut positions);
        let result = result.and_then(|()| {
            let markers = group.iter().any(|request| request.kind == Kind::Marker);
            let due = match self.fsync {
                FsyncPolicy::Always => true,
                FsyncPolicy::Interval(interval) => self.last_sync.elapsed() >= interval,
                FsyncPolicy::Never => false,
            };
            if markers || due { self.sync() } else { Ok(()) }
        });
        if let Err(error) = result {
            self.shared.lock().in_flight -= group_bytes;
            for request in group {
                let copy = std::io::Error::other(error.to_string());
                let _ = request.reply.send(Err(QueueError::Io {
                    path: segment::path(&self.shared.dir, self.segment_start),
                    source: copy,
                }));
            }
            return Err(error);
        }
        {
            let mut state = self.shared.lock();
            state.in_flight -= group_bytes;
            state.records += group.len() as u64;
            state.end = self.segment_start + self.segment_len;
            state.segments.insert(self.segment_start, self.segment_len);
        }
        self.shared.appended.notify_waiters();
        for (request, pos) in group.into_iter().zip(positions) {
            // A caller that stopped waiting still has its record in the log.
            let _ = request.reply.send(Ok(pos));
        }
        Ok(())
    }

    /// Writes `group`'s records and frees their payloads (and memory budget): with
    /// `fsync = "always"` most appends in flight are waiting for the sync that follows, and
    /// their bytes are in the file by then.
    fn write_group(
        &mut self,
        group: &mut [Request],
        positions: &mut Vec<Position>,
    ) -> Result<(), QueueError> {
        let unix_millis = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_millis() as u64);
        for request in group.iter_mut() {
            let len = request.record_len();
            if self.segment_len > 0 && self.segment_len + len > self.segment_bytes {
                self.roll()?;
            }
            let header = Header::new(request.kind, &request.payload, unix_millis);
            self.file
                .write_all(&header.encode())
                .and_then(|()| self.file.write_all(&request.payload))
                .map_err(io_at(self.path()))?;
            positions.push(self.segment_start + self.segment_len);
            self.segment_len += len;
            self.dirty = true;
            request.payload = Vec::new();
            drop(request.permit.take());
        }
        self.file.flush().map_err(io_at(self.path()))
    }

    /// Starts a new segment at the current end. The old one is synced first whatever the
    /// policy, so only the last segment can ever hold a torn record.
    fn roll(&mut self) -> Result<(), QueueError> {
        self.sync()?;
        let full = (self.segment_start, self.segment_len);
        self.segment_start += self.segment_len;
        self.segment_len = 0;
        let path = self.path();
        let file = OpenOptions::new()
            .append(true)
            .create_new(true)
            .open(&path)
            .map_err(io_at(&path))?;
        segment::sync_dir(&self.shared.dir)?;
        self.file = BufWriter::with_capacity(1 << 20, file);
        // Readers may already read the full segment's tail; they find the new one at `end`.
        let mut state = self.shared.lock();
        state.segments.insert(full.0, full.1);
        state.segments.insert(self.segment_start, 0);
        Ok(())
    }

    fn sync(&mut self) -> Result<(), QueueError> {
        self.file.flush().map_err(io_at(self.path()))?;
        self.file
            .get_ref()
            .sync_data()
            .map_err(io_at(self.path()))?;
        self.dirty = false;
        self.last_sync = Instant::now();
        Ok(())
    }

    fn path(&self) -> PathBuf {
        segment::path(&self.shared.dir, self.segment_start)
    }
}
