//! The consumer side: reads published entries in order from the segment files.

use std::sync::Arc;

use bytes::Bytes;

use super::record::Kind;
use super::segment::Cursor;
use super::{Entry, Position, QueueError, Shared};

/// Reads every entry from the acknowledged position on, in log order, including entries
/// appended later. Holds one record in memory at a time; the rest stays in the files.
#[derive(Debug)]
pub struct Reader {
    shared: Arc<Shared>,
    pos: Position,
    cursor: Cursor,
}

impl Reader {
    pub(super) fn new(shared: Arc<Shared>) -> Reader {
        let pos = shared.lock().acked;
        Reader {
            shared,
            pos,
            cursor: Cursor::default(),
        }
    }

    /// The next entry, waiting for one to be appended if the reader is at the end. Fails with
    /// [`QueueError::Closed`] once every [`super::Queue`] handle is dropped and all entries
    /// have been read. Cancel-safe: an entry is only taken when the call completes, so it can
    /// be used in `tokio::select!`.
    /// The file read runs on the blocking thread pool, not on the async worker.
    pub async fn next(&mut self) -> Result<Entry, QueueError> {
        let shared = Arc::clone(&self.shared);
        loop {
            // Registered before checking, so an append published in between still wakes us.
            let appended = shared.appended.notified();
            tokio::pin!(appended);
            appended.as_mut().enable();
            let (available, closed) = {
                let state = shared.lock();
                (self.pos.max(state.acked) < state.end, state.closed)
            };
            if available {
                if let Some(entry) = self.read_off_runtime().await? {
                    return Ok(entry);
                }
                continue;
            }
            if closed {
                return Err(QueueError::Closed);
            }
            appended.await;
        }
    }

    /// [`Reader::try_next`] on the blocking thread pool. If the caller stops waiting, the
    /// reader stays where it was (its open file is dropped and reopened on the next read).
    async fn read_off_runtime(&mut self) -> Result<Option<Entry>, QueueError> {
        let mut detached = Reader {
            shared: Arc::clone(&self.shared),
            pos: self.pos,
            cursor: std::mem::take(&mut self.cursor),
        };
        let (detached, entry) = tokio::task::spawn_blocking(move || {
            let entry = detached.try_next();
            (detached, entry)
        })
        .await
        .unwrap_or_else(|panicked| std::panic::resume_unwind(panicked.into_panic()));
        *self = detached;
        entry
    }

    /// The next entry if one is available now. Blocks for the file read.
    pub fn try_next(&mut self) -> Result<Option<Entry>, QueueError> {
        loop {
            let (acked, end) = {
                let state = self.shared.lock();
                (state.acked, state.end)
            };
            // Entries below the acknowledged position are done, and their segment may be gone.
            self.pos = self.pos.max(acked);
            if self.pos >= end {
                return Ok(None);
            }
            let pos = self.pos;
            let Some((header, payload)) = self.cursor.read(&self.shared, pos, true)? else {
                continue; // acknowledged since the check above
            };
            self.pos += header.record_len();
            let payload = Bytes::from(payload);
            return Ok(Some(match header.kind {
                Kind::Data => Entry::Data { pos, payload },
                Kind::Marker => Entry::Marker { pos, payload },
            }));
        }
    }
}
