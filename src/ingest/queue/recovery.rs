//! Opening an existing log: drop wholly acknowledged segments, check the rest, cut a torn tail.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::path::Path;

use tracing::warn;

use super::segment::{self, Stop};
use super::{Position, QueueError, io_at};

/// The log as found on disk, ready for the writer to append at `end`.
#[derive(Debug)]
pub(crate) struct Recovered {
    /// Segment start → length; never empty, the last one is where appends go.
    pub segments: BTreeMap<Position, u64>,
    pub end: Position,
    /// Unacknowledged records (those at or after `acked`).
    pub records: u64,
}

/// Recovers the log in `dir` whose acknowledged position is `acked`.
pub(crate) fn recover(dir: &Path, acked: Position) -> Result<Recovered, QueueError> {
    let mut segments = segment::list(dir)?;
    delete_acked_segments(dir, &mut segments, acked)?;

    let mut end = match segments.first_key_value() {
        Some((&first, _)) if first > acked => {
            return Err(QueueError::Corrupt {
                path: segment::path(dir, first),
                offset: 0,
                reason: "first segment starts after the acknowledged position",
            });
        }
        Some((&first, _)) => first,
        None => acked,
    };
    let mut records = 0;
    let mut ack_on_boundary = false;
    let last = segments.last_key_value().map(|(&start, _)| start);
    for (&start, len) in segments.iter_mut() {
        let path = segment::path(dir, start);
        if start != end {
            return Err(QueueError::Corrupt {
                path,
                offset: 0,
                reason: "segment does not start where the previous one ends",
            });
        }
        let file = File::open(&path).map_err(io_at(&path))?;
        let stop = segment::scan(&file, *len, |offset, _| {
            let pos = start + offset;
            ack_on_boundary |= pos == acked;
            records += u64::from(pos >= acked);
        })
        .map_err(io_at(&path))?;
        match stop {
            None => {}
            Some(Stop {
                offset,
                reason,
                torn: true,
            }) if Some(start) == last => {
                warn!(path = %path.display(), offset, reason, discarded_bytes = *len - offset,
                    "discarding the torn tail of the queue left by an interrupted write");
                truncate(&path, offset)?;
                *len = offset;
            }
            Some(Stop { offset, reason, .. }) => {
                return Err(QueueError::Corrupt {
                    path,
                    offset,
                    reason,
                });
            }
        }
        end = start + *len;
    }

    if acked < end && !ack_on_boundary {
        return Err(QueueError::Corrupt {
            path: dir.join("ack"),
            offset: acked,
            reason: "acknowledged position is not a record boundary",
        });
    }
    if acked > end || segments.is_empty() {
        // Records up to `acked` were stored downstream but did not survive here (a lost
        // unsynced tail, or no log at all): continue at `acked` so no position is reused.
        if acked > end {
            warn!(acked, end, "queue log ends before the acked position");
        }
        for &start in segments.keys() {
            let path = segment::path(dir, start);
            fs::remove_file(&path).map_err(io_at(&path))?;
        }
        let path = segment::path(dir, acked);
        File::create(&path).map_err(io_at(&path))?;
        segment::sync_dir(dir)?;
        segments = BTreeMap::from([(acked, 0)]);
        end = acked;
    }
    Ok(Recovered {
        segments,
        end,
        records,
    })
}

/// Removes segments that end at or before `acked`: every segment but the last whose successor
/// starts at or before it.
fn delete_acked_segments(
    dir: &Path,
    segments: &mut BTreeMap<Position, u64>,
    acked: Position,
) -> Result<(), QueueError> {
    let Some(holding_ack) = segments
        .range(..=acked)
        .next_back()
        .map(|(&start, _)| start)
    else {
        return Ok(());
    };
    let below: Vec<Position> = segments.range(..holding_ack).map(|(&s, _)| s).collect();
    for start in below {
        let path = segment::path(dir, start);
        fs::remove_file(&path).map_err(io_at(&path))?;
        segments.remove(&start);
    }
    Ok(())
}

fn truncate(path: &Path, len: u64) -> Result<(), QueueError> {
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(io_at(path))?;
    file.set_len(len)
        .and_then(|()| file.sync_all())
        .map_err(io_at(path))
}
