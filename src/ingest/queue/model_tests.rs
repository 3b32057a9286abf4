//! Model test: random appends, reads, acks, restarts and torn writes against the real queue and
//! against a plain in-memory model of what it must hold (after Vector's `disk_v2` model
//! tests). Any difference in what is read back, in positions or in the fill level fails.
//!
//! `PROPTEST_CASES` raises the number of cases (default 32 here to keep the suite fast).

use std::collections::VecDeque;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::Path;

use proptest::prelude::*;

use super::*;

/// Small bounds, so that the queue fills, rolls segments and deletes them within a case.
const MAX_BYTES: u64 = 2_048;
const SEGMENT_BYTES: u64 = 512;

#[derive(Debug, Clone)]
enum Op {
    Append {
        len: usize,
        marker: bool,
    },
    Read {
        max: usize,
    },
    /// Acknowledge up to the `entry`-th unacknowledged entry (modulo), at its start or inside
    /// it, or one past the end (refused).
    Ack {
        entry: usize,
        inside: bool,
        beyond: bool,
    },
    Restart,
    /// A crash while the last record was written: it is cut `cut` bytes (modulo) into itself.
    TornWrite {
        cut: usize,
    },
    /// A crash after a record's first bytes reached the file.
    Garbage {
        bytes: Vec<u8>,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0usize..300, prop::bool::weighted(0.15))
            .prop_map(|(len, marker)| Op::Append { len, marker }),
        3 => (1usize..6).prop_map(|max| Op::Read { max }),
        3 => (0usize..8, any::<bool>(), prop::bool::weighted(0.1))
            .prop_map(|(entry, inside, beyond)| Op::Ack { entry, inside, beyond }),
        1 => Just(Op::Restart),
        1 => (0usize..400).prop_map(|cut| Op::TornWrite { cut }),
        1 => prop::collection::vec(any::<u8>(), 1..40).prop_map(|bytes| Op::Garbage { bytes }),
    ]
}

/// What the queue must hold: its unacknowledged entries, in order.
#[derive(Debug, Default)]
struct Model {
    entries: VecDeque<(Position, Kind, Vec<u8>)>,
    acked: Position,
    end: Position,
    /// Where the reader is.
    read: Position,
    appended: u64,
}

impl Model {
    fn record_len(payload: &[u8]) -> u64 {
        HEADER_LEN + payload.len() as u64
    }

    /// A payload no other append has: its append number, repeated.
    fn payload(&mut self, len: usize) -> Vec<u8> {
        self.appended += 1;
        self.appended
            .to_le_bytes()
            .iter()
            .copied()
            .cycle()
            .take(len)
            .collect()
    }

    fn ack(&mut self, upto: Position) {
        while self.entries.front().is_some_and(|(pos, _, _)| *pos < upto) {
            self.entries.pop_front();
        }
        self.acked = self.entries.front().map_or(self.end, |(pos, _, _)| *pos);
        self.read = self.read.max(self.acked);
    }
}

struct Harness {
    dir: tempfile::TempDir,
    queue: Option<Queue>,
    reader: Option<Reader>,
    model: Model,
}

/// On tmpfs when there is one: every ack and marker fsyncs, and the model needs no real disk.
fn scratch_dir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        tempfile::tempdir_in(shm).unwrap()
    } else {
        tempfile::tempdir().unwrap()
    }
}

impl Harness {
    fn new() -> Harness {
        let mut harness = Harness {
            dir: scratch_dir(),
            queue: None,
            reader: None,
            model: Model::default(),
        };
        harness.open();
        harness
    }

    fn open(&mut self) {
        // The dropped queue's writer thread releases the directory lock when it ends, which
        // may be just after the drop: wait for that, as a restarted process would.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let queue = loop {
            let mut options = QueueOptions::new(self.dir.path());
            options.max_bytes = MAX_BYTES;
            options.segment_bytes = SEGMENT_BYTES;
            match Queue::open(options) {
                Err(QueueError::Locked { .. }) if std::time::Instant::now() < deadline => {
                    std::thread::yield_now()
                }
                result => break result.expect("the queue recovers"),
            }
        };
        self.reader = Some(queue.reader());
        self.queue = Some(queue);
        self.model.read = self.model.acked;
    }

    fn queue(&self) -> &Queue {
        self.queue.as_ref().expect("open")
    }

    /// Stops the queue (the writer thread finishes), lets `damage` change the files, reopens.
    fn crash(&mut self, damage: impl FnOnce(&Path, &mut Model)) {
        self.reader = None;
        self.queue = None;
        damage(self.dir.path(), &mut self.model);
        self.open();
    }

    fn apply(&mut self, op: &Op, runtime: &tokio::runtime::Runtime) -> Result<(), TestCaseError> {
        match op {
            Op::Append { len, marker } => {
                let payload = self.model.payload(*len);
                let kind = if *marker { Kind::Marker } else { Kind::Data };
                let record = Model::record_len(&payload);
                let queue = self.queue().clone();
                let result = runtime.block_on(async {
                    match kind {
                        Kind::Marker => queue.append_marker(payload.clone()).await,
                        Kind::Data => queue.append(payload.clone()).await,
                    }
                });
                let full =
                    kind == Kind::Data && self.model.end - self.model.acked + record > MAX_BYTES;
                if full {
                    prop_assert!(matches!(result, Err(QueueError::Full { .. })), "{result:?}");
                } else {
                    prop_assert_eq!(result.expect("append"), self.model.end);
                    self.model
                        .entries
                        .push_back((self.model.end, kind, payload));
                    self.model.end += record;
                }
            }
            Op::Read { max } => {
                for _ in 0..*max {
                    let got = self
                        .reader
                        .as_mut()
                        .expect("open")
                        .try_next()
                        .expect("read");
                    let want = self
                        .model
                        .entries
                        .iter()
                        .find(|(pos, _, _)| *pos >= self.model.read);
                    match (got, want) {
                        (None, None) => break,
                        (Some(entry), Some((pos, kind, payload))) => {
                            let read_kind = match entry {
                                Entry::Data { .. } => Kind::Data,
                                Entry::Marker { .. } => Kind::Marker,
                            };
                            prop_assert_eq!(entry.pos(), *pos);
                            prop_assert_eq!(read_kind, *kind);
                            prop_assert_eq!(entry.payload().as_ref(), payload.as_slice());
                            self.model.read = entry.next_pos();
                        }
                        (got, want) => prop_assert!(false, "read {got:?}, model has {want:?}"),
                    }
                }
            }
            Op::Ack {
                entry,
                inside,
                beyond,
            } => {
                if *beyond {
                    let result = self.queue().ack_blocking(self.model.end + 1);
                    prop_assert!(
                        matches!(result, Err(QueueError::AckBeyondEnd { .. })),
                        "{result:?}"
                    );
                    return Ok(());
                }
                let entries = &self.model.entries;
                let upto = match entries.get(entry % (entries.len() + 1)) {
                    Some((pos, _, payload)) if *inside && !payload.is_empty() => {
                        pos + 1 + (*entry as u64 % payload.len() as u64)
                    }
                    Some((pos, _, _)) => *pos,
                    None => self.model.end,
                };
                self.queue().ack_blocking(upto).expect("ack");
                self.model.ack(upto);
            }
            Op::Restart => self.crash(|_, _| {}),
            Op::TornWrite { cut } => self.crash(|dir, model| {
                let (start, path) = last_segment(dir);
                let Some(&(pos, _, ref payload)) = model.entries.back() else {
                    return;
                };
                if pos < start {
                    return; // the last record is in an earlier, synced segment
                }
                let keep = (*cut as u64) % Model::record_len(payload);
                let file = OpenOptions::new().write(true).open(&path).unwrap();
                file.set_len(pos - start + keep).unwrap();
                model.entries.pop_back();
                model.end = pos;
            }),
            Op::Garbage { bytes } => self.crash(|dir, _| {
                let (_, path) = last_segment(dir);
                let mut file = OpenOptions::new().append(true).open(path).unwrap();
                file.write_all(bytes).unwrap();
            }),
        }
        let stats = self.queue().stats();
        prop_assert_eq!(stats.acked, self.model.acked);
        prop_assert_eq!(stats.end, self.model.end);
        prop_assert_eq!(stats.bytes, self.model.end - self.model.acked);
        prop_assert_eq!(stats.records, self.model.entries.len() as u64);
        Ok(())
    }
}

/// The segment file with the highest start position, and that position.
fn last_segment(dir: &Path) -> (Position, std::path::PathBuf) {
    let path = fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "wal"))
        .max()
        .expect("a segment is always open");
    let start = path.file_stem().unwrap().to_str().unwrap().parse().unwrap();
    (start, path)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(32),
        ..ProptestConfig::default()
    })]

    #[test]
    fn queue_matches_an_in_memory_model(ops in prop::collection::vec(op(), 1..80)) {
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let mut harness = Harness::new();
        for op in &ops {
            harness.apply(op, &runtime)?;
        }
        // Everything unacknowledged is still there after a last restart.
        harness.apply(&Op::Restart, &runtime)?;
        harness.apply(&Op::Read { max: usize::MAX }, &runtime)?;
    }
}
