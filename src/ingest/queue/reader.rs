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
    pub async fn next(&mut self) -> Result<Entry, QueueError> {
        let shared = Arc::clone(&self.shared);
        loop {
            // Registered before checking, so an append published in between still wakes us.
            let appended = shared.appended.notified();
            tokio::pin!(appended);
            appended.as_mut().enable();
            if let Some(entry) = self.try_next()? {
                return Ok(entry);
            }
            if shared.lock().closed {
                return Err(QueueError::Closed);
            }
            appended.await;
        }
    }

    /// The next entry if one is available now.
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
