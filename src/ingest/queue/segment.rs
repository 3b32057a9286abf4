//! Segment files: naming, listing, and reading records at a position.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::record::{HEADER_LEN, Header, Invalid};
use super::{Position, QueueError, io_at};

const EXTENSION: &str = "wal";

/// `<dir>/<start offset, 20 digits>.wal`: names sort in log order.
pub(crate) fn path(dir: &Path, start: Position) -> PathBuf {
    dir.join(format!("{start:020}.{EXTENSION}"))
}

/// The segment files in `dir` as start offset → file length, ignoring other files.
pub(crate) fn list(dir: &Path) -> Result<BTreeMap<Position, u64>, QueueError> {
    let mut segments = BTreeMap::new();
    for entry in fs::read_dir(dir).map_err(io_at(dir))? {
        let entry = entry.map_err(io_at(dir))?;
        let name = entry.file_name();
        let Some(start) = name
            .to_str()
            .and_then(|name| name.strip_suffix(&format!(".{EXTENSION}")))
            .filter(|stem| stem.len() == 20)
            .and_then(|stem| stem.parse::<u64>().ok())
        else {
            continue;
        };
        let len = entry.metadata().map_err(io_at(entry.path()))?.len();
        segments.insert(start, len);
    }
    Ok(segments)
}

/// Makes creations, renames and deletions in `dir` durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), QueueError> {
    File::open(dir)
        .and_then(|dir| dir.sync_all())
        .map_err(io_at(dir))
}

/// Where a scan of a segment stopped before the end of the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stop {
    /// Offset in the file of the first record that is not valid.
    pub offset: u64,
    pub reason: &'static str,
    /// Whether the bad bytes reach the end of the file, as an interrupted write leaves them.
    pub torn: bool,
}

/// Reads every record of a segment file of `len` bytes in order, calling `each(offset, header)`
/// for each valid one, and returns where reading stopped if a record is not valid.
pub(crate) fn scan(
    file: &File,
    len: u64,
    mut each: impl FnMut(u64, &Header),
) -> io::Result<Option<Stop>> {
    let mut reader = io::BufReader::with_capacity(1 << 20, file);
    let mut payload = Vec::new();
    let mut offset = 0;
    while offset < len {
        let torn = |reason| Stop {
            offset,
            reason,
            torn: true,
        };
        if len - offset < HEADER_LEN {
            return Ok(Some(torn("short record header")));
        }
        let mut buf = [0; HEADER_LEN as usize];
        reader.read_exact(&mut buf)?;
        let header = match Header::decode(&buf) {
            Ok(header) => header,
            // Without a valid kind the length cannot be trusted either: everything from here on
            // is treated as one bad record running to the end of the file.
            Err(invalid) => return Ok(Some(torn(invalid.reason()))),
        };
        let record_end = offset + header.record_len();
        if record_end > len {
            return Ok(Some(torn("short record payload")));
        }
        payload.resize(header.len as usize, 0);
        reader.read_exact(&mut payload)?;
        if let Err(invalid) = header.verify(&payload) {
            return Ok(Some(Stop {
                offset,
                reason: invalid.reason(),
                torn: record_end == len,
            }));
        }
        each(offset, &header);
        offset = record_end;
    }
    Ok(None)
}

/// Reads published records by global position, keeping the current segment file open.
#[derive(Debug, Default)]
pub(crate) struct Cursor {
    open: Option<(Position, File)>,
}

impl Cursor {
    /// Reads and checks the record at `pos`, which the caller knows is published (below the
    /// queue's end). Returns its header and, if `with_payload`, its payload; `None` if `pos`
    /// has meanwhile been acknowledged (its segment may be deleted).
    pub(crate) fn read(
        &mut self,
        shared: &super::Shared,
        pos: Position,
        with_payload: bool,
    ) -> Result<Option<(Header, Vec<u8>)>, QueueError> {
        let Some((start, file)) = self.file_for(shared, pos)? else {
            return Ok(None);
        };
        let offset = pos - start;
        let corrupt = |reason| QueueError::Corrupt {
            path: path(&shared.dir, start),
            offset,
            reason,
        };
        let mut buf = [0; HEADER_LEN as usize];
        file.read_exact_at(&mut buf, offset)
            .map_err(io_at(path(&shared.dir, start)))?;
        let header = Header::decode(&buf).map_err(|invalid| corrupt(invalid.reason()))?;
        if !with_payload {
            return Ok(Some((header, Vec::new())));
        }
        let mut payload = vec![0; header.len as usize];
        file.read_exact_at(&mut payload, offset + HEADER_LEN)
            .map_err(io_at(path(&shared.dir, start)))?;
        header
            .verify(&payload)
            .map_err(|invalid: Invalid| corrupt(invalid.reason()))?;
        Ok(Some((header, payload)))
    }

    /// The open segment holding `pos` and its start offset, `None` if `pos` is acknowledged.
    fn file_for(
        &mut self,
        shared: &super::Shared,
        pos: Position,
    ) -> Result<Option<(Position, &File)>, QueueError> {
        // Lookup and open happen under the state lock: `ack` removes a segment from the map
        // under the same lock before deleting its file, so an open never races a deletion.
        let state = shared.lock();
        if pos < state.acked {
            return Ok(None);
        }
        let start = state
            .segments
            .range(..=pos)
            .next_back()
            .map(|(start, _)| *start)
            .ok_or(QueueError::Corrupt {
                path: shared.dir.clone(),
                offset: pos,
                reason: "no segment holds this position",
            })?;
        if self.open.as_ref().is_none_or(|(open, _)| *open != start) {
            let path = path(&shared.dir, start);
            let file = File::open(&path).map_err(io_at(path))?;
            self.open = Some((start, file));
        }
        drop(state);
        let (start, file) = self.open.as_ref().expect("opened above");
        Ok(Some((*start, file)))
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::super::record::Kind;
    use super::*;

    fn write_records(file: &mut File, payloads: &[&[u8]]) {
        for payload in payloads {
            file.write_all(&Header::new(Kind::Data, payload, 7).encode())
                .unwrap();
            file.write_all(payload).unwrap();
        }
    }

    fn scan_file(path: &Path) -> (Vec<u64>, Option<Stop>) {
        let file = File::open(path).unwrap();
        let len = file.metadata().unwrap().len();
        let mut offsets = Vec::new();
        let stop = scan(&file, len, |offset, _| offsets.push(offset)).unwrap();
        (offsets, stop)
    }

    #[test]
    fn names_sort_in_log_order_and_are_listed() {
        let dir = tempfile::tempdir().unwrap();
        for start in [1_000, 20, 0] {
            File::create(path(dir.path(), start)).unwrap();
        }
        File::create(dir.path().join("ack")).unwrap();
        File::create(dir.path().join("12.wal")).unwrap();
        let listed: Vec<_> = list(dir.path()).unwrap().into_keys().collect();
        assert_eq!(listed, [0, 20, 1_000]);
        assert!(path(dir.path(), 20).ends_with("00000000000000000020.wal"));
    }

    #[test]
    fn scan_visits_every_valid_record() {
        let dir = tempfile::tempdir().unwrap();
        let path = path(dir.path(), 0);
        write_records(&mut File::create(&path).unwrap(), &[b"a", b"", b"ccc"]);
        let (offsets, stop) = scan_file(&path);
        assert_eq!(offsets, [0, HEADER_LEN + 1, 2 * HEADER_LEN + 1]);
        assert_eq!(stop, None);
    }

    #[test]
    fn scan_reports_a_short_tail_as_torn() {
        let dir = tempfile::tempdir().unwrap();
        let path = path(dir.path(), 0);
        let mut file = File::create(&path).unwrap();
        write_records(&mut file, &[b"first", b"second"]);
        file.set_len(2 * HEADER_LEN + 5 + 3).unwrap();
        let (offsets, stop) = scan_file(&path);
        assert_eq!(offsets, [0]);
        let stop = stop.unwrap();
        assert_eq!((stop.offset, stop.torn), (HEADER_LEN + 5, true));
    }

    #[test]
    fn scan_tells_a_bad_middle_record_from_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = path(dir.path(), 0);
        write_records(&mut File::create(&path).unwrap(), &[b"first", b"second"]);
        let mut bytes = fs::read(&path).unwrap();
        bytes[HEADER_LEN as usize] ^= 0xFF; // first payload byte
        fs::write(&path, &bytes).unwrap();
        let stop = scan_file(&path).1.unwrap();
        assert_eq!(
            stop,
            Stop {
                offset: 0,
                reason: "crc mismatch",
                torn: false
            }
        );
    }
}
