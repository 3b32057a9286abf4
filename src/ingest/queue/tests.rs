//! Behaviour of the whole queue: appends, reads, acks, recovery and bounds.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::*;

/// On-disk size of a record with a `len`-byte payload.
fn rec(len: u64) -> u64 {
    HEADER_LEN + len
}

fn open(dir: &Path) -> Queue {
    Queue::open(QueueOptions::new(dir)).unwrap()
}

fn open_with(dir: &Path, change: impl FnOnce(&mut QueueOptions)) -> Queue {
    let mut options = QueueOptions::new(dir);
    change(&mut options);
    Queue::open(options).unwrap()
}

fn drain(reader: &mut Reader) -> Vec<Entry> {
    std::iter::from_fn(|| reader.try_next().unwrap()).collect()
}

fn payloads(entries: &[Entry]) -> Vec<&[u8]> {
    entries
        .iter()
        .map(|entry| entry.payload().as_ref())
        .collect()
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "wal"))
        .collect();
    files.sort();
    files
}

fn flip_byte(path: &Path, offset: u64) {
    let mut bytes = fs::read(path).unwrap();
    bytes[offset as usize] ^= 0x55;
    fs::write(path, bytes).unwrap();
}

#[test]
fn handles_can_be_shared_across_tasks() {
    fn send_sync<T: Send + Sync + 'static>() {}
    send_sync::<Queue>();
    send_sync::<Reader>();
}

#[tokio::test]
async fn entries_are_read_back_in_append_order() {
    let dir = tempfile::tempdir().unwrap();
    let queue = open(dir.path());
    assert_eq!(queue.append(b"one").await.unwrap(), 0);
    assert_eq!(queue.append_marker(b"cut").await.unwrap(), rec(3));
    assert_eq!(queue.append(b"").await.unwrap(), 2 * rec(3));

    let entries = drain(&mut queue.reader());
    assert_eq!(
        entries,
        [
            Entry::Data {
                pos: 0,
                payload: Bytes::from_static(b"one")
            },
            Entry::Marker {
                pos: rec(3),
                payload: Bytes::from_static(b"cut")
            },
            Entry::Data {
                pos: 2 * rec(3),
                payload: Bytes::new()
            },
        ]
    );
    assert_eq!(entries[1].next_pos(), entries[2].pos());
}

#[tokio::test]
async fn reopen_resumes_at_the_ack_and_replays_unacked_entries() {
    let dir = tempfile::tempdir().unwrap();
    let queue = open(dir.path());
    for payload in [&b"a"[..], b"b", b"c"] {
        queue.append(payload).await.unwrap();
    }
    queue.append_marker(b"m").await.unwrap();
    queue.append(b"d").await.unwrap();
    queue.ack_blocking(2 * rec(1)).unwrap();
    drop(queue);

    let queue = open(dir.path());
    let entries = drain(&mut queue.reader());
    assert_eq!(payloads(&entries), [&b"c"[..], b"m", b"d"]);
    assert!(matches!(entries[1], Entry::Marker { pos, .. } if pos == 3 * rec(1)));
    assert_eq!(queue.stats().acked, 2 * rec(1));
    assert_eq!(queue.append(b"e").await.unwrap(), 5 * rec(1));
}

#[tokio::test]
async fn ack_inside_an_entry_acknowledges_it_whole() {
    let dir = tempfile::tempdir().unwrap();
    let queue = open(dir.path());
    let first = queue.append(b"first").await.unwrap();
    queue.append(b"second").await.unwrap();
    queue.ack_blocking(first + 1).unwrap();
    assert_eq!(queue.stats().acked, rec(5));
    assert_eq!(payloads(&drain(&mut queue.reader())), [b"second"]);
    drop(queue);
    assert_eq!(
        payloads(&drain(&mut open(dir.path()).reader())),
        [b"second"]
    );
}

/// An ack blocks for two fsyncs; other tasks on the same runtime thread must run meanwhile.
/// Another thread holding the ack lock stands in for a slow fsync.
#[tokio::test(flavor = "current_thread")]
async fn other_tasks_run_while_an_ack_is_blocked() {
    use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
    let dir = tempfile::tempdir().unwrap();
    let queue = open(dir.path());
    queue.append(vec![1; 10]).await.unwrap();
    let end = queue.stats().end;
    let released = Arc::new(AtomicBool::new(false));
    let (locked, wait_locked) = std::sync::mpsc::channel();
    let (release, wait_release) = std::sync::mpsc::channel::<()>();
    let holder = std::thread::spawn({
        let (queue, released) = (queue.clone(), Arc::clone(&released));
        move || {
            let _slow_fsync = queue.inner.acking.lock().unwrap();
            locked.send(()).unwrap();
            // Released once another task ran, or after a while if the ack blocked the
            // runtime's only thread so that nothing else could run.
            let _ = wait_release.recv_timeout(Duration::from_secs(3));
            released.store(true, SeqCst);
        }
    });
    wait_locked.recv().unwrap();
    let ack = tokio::spawn({
        let queue = queue.clone();
        async move { queue.ack(end).await }
    });
    tokio::task::yield_now().await; // the ack task starts and waits for the lock
    let other = tokio::spawn({
        let released = Arc::clone(&released);
        async move { !released.load(SeqCst) }
    });
    let ran_while_blocked = other.await.unwrap();
    release.send(()).unwrap_or_default();
    holder.join().unwrap();
    assert!(ran_while_blocked, "a task waited for the ack's fsync");
    ack.await.unwrap().unwrap();
    assert_eq!(queue.stats().acked, end);
}

#[tokio::test]
async fn ack_beyond_the_end_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let queue = open(dir.path());
    queue.append(b"x").await.unwrap();
    assert!(matches!(
        queue.ack_blocking(rec(1) + 1),
        Err(QueueError::AckBeyondEnd { upto, end }) if upto == rec(1) + 1 && end == rec(1)
    ));
}

#[tokio::test]
async fn torn_tail_is_discarded_and_earlier_records_survive() {
    let dir = tempfile::tempdir().unwrap();
    let queue = open(dir.path());
    for payload in [&b"first"[..], b"second", b"third"] {
        queue.append(payload).await.unwrap();
    }
    drop(queue);
    let segment = &segment_files(dir.path())[0];
    let len = fs::metadata(segment).unwrap().len();
    fs::File::options()
        .write(true)
        .open(segment)
        .unwrap()
        .set_len(len - 3)
        .unwrap();

    let queue = open(dir.path());
    assert_eq!(
        payloads(&drain(&mut queue.reader())),
        [&b"first"[..], b"second"]
    );
    // The cut record's position is taken again: it was never published.
    assert_eq!(queue.append(b"again").await.unwrap(), rec(5) + rec(6));
    assert_eq!(
        payloads(&drain(&mut queue.reader())),
        [&b"first"[..], b"second", b"again"]
    );
}

#[tokio::test]
async fn garbage_after_the_last_record_is_discarded() {
    let dir = tempfile::tempdir().unwrap();
    let queue = open(dir.path());
    queue.append(b"kept").await.unwrap();
    drop(queue);
    let segment = &segment_files(dir.path())[0];
    let mut bytes = fs::read(segment).unwrap();
    bytes.extend_from_slice(&[0xFF; 40]);
    fs::write(segment, bytes).unwrap();

    let queue = open(dir.path());
    assert_eq!(payloads(&drain(&mut queue.reader())), [b"kept"]);
    assert_eq!(fs::metadata(segment).unwrap().len(), rec(4));
}

#[tokio::test]
async fn corruption_before_the_tail_is_an_error_naming_the_segment() {
    let dir = tempfile::tempdir().unwrap();
    let queue = open(dir.path());
    for payload in [&b"first"[..], b"second", b"third"] {
        queue.append(payload).await.unwrap();
    }
    drop(queue);
    let segment = segment_files(dir.path())[0].clone();
    flip_byte(&segment, rec(5) + HEADER_LEN + 2); // inside "second"

    let error = Queue::open(QueueOptions::new(dir.path())).unwrap_err();
    assert!(
        matches!(&error, QueueError::Corrupt { path, offset, reason }
            if *path == segment && *offset == rec(5) && *reason == "crc mismatch"),
        "{error}"
    );
    assert!(error.to_string().contains("00000000000000000000.wal"));
}

#[tokio::test]
async fn damaged_earlier_segment_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let queue = open_with(dir.path(), |o| o.segment_bytes = rec(10));
    for _ in 0..3 {
        queue.append(&[7; 10]).await.unwrap();
    }
    drop(queue);
    let segments = segment_files(dir.path());
    assert_eq!(segments.len(), 3);
    flip_byte(&segments[1], HEADER_LEN + 9); // the last byte of a complete segment

    let error = Queue::open(QueueOptions::new(dir.path())).unwrap_err();
    assert!(
        matches!(&error, QueueError::Corrupt { path, offset: 0, .. } if *path == segments[1]),
        "{error}"
    );
}

#[tokio::test]
async fn full_at_the_bound_until_acked() {
    let dir = tempfile::tempdir().unwrap();
    let queue = open_with(dir.path(), |o| o.max_bytes = 3 * rec(100));
    for _ in 0..3 {
        queue.append(&[1; 100]).await.unwrap();
    }
    assert!(matches!(
        queue.append(&[1; 100]).await,
        Err(QueueError::Full { bytes, max_bytes }) if bytes == 3 * rec(100) && max_bytes == 3 * rec(100)
    ));
    // A marker records a cut point of data already accepted: never refused.
    let marker = queue.append_marker(b"cut").await.unwrap();
    assert!(matches!(
        queue.append(&[1; 1]).await,
        Err(QueueError::Full { .. })
    ));

    queue.ack_blocking(marker + 1).unwrap();
    queue.append(&[1; 100]).await.unwrap();
    assert_eq!(queue.stats().bytes, rec(100));
}

#[tokio::test]
async fn segments_roll_at_the_size_and_are_deleted_once_acked() {
    let dir = tempfile::tempdir().unwrap();
    let queue = open_with(dir.path(), |o| o.segment_bytes = 2 * rec(100));
    let mut positions = Vec::new();
    for _ in 0..5 {
        positions.push(queue.append(&[9; 100]).await.unwrap());
    }
    let names: Vec<_> = segment_files(dir.path())
        .iter()
        .map(|path| path.file_name().unwrap().to_str().unwrap().to_owned())
        .collect();
    let start = |i: u64| format!("{:020}.wal", i * rec(100));
    assert_eq!(names, [start(0), start(2), start(4)]);
    assert_eq!(queue.stats().disk_bytes, 5 * rec(100));

    queue.ack_blocking(positions[3]).unwrap(); // inside the second segment: only the first goes
    assert_eq!(segment_files(dir.path()).len(), 2);
    assert!(!dir.path().join(start(0)).exists());
    assert_eq!(queue.stats().disk_bytes, 3 * rec(100));

    queue.ack_blocking(queue.stats().end).unwrap();
    assert_eq!(segment_files(dir.path()), [dir.path().join(start(4))]);
    assert_eq!(drain(&mut queue.reader()), []);
    drop(queue);
    let queue = open(dir.path());
    assert_eq!(queue.append(b"next").await.unwrap(), 5 * rec(100));
}

#[tokio::test]
async fn reader_waits_for_entries_appended_after_it_was_created() {
    let dir = tempfile::tempdir().unwrap();
    let queue = open(dir.path());
    let mut reader = queue.reader();
    assert_eq!(reader.try_next().unwrap(), None);
    let waiting = tokio::spawn(async move {
        let first = reader.next().await.unwrap();
        let second = reader.next().await.unwrap();
        (first, second)
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    queue.append(b"late").await.unwrap();
    queue.append_marker(b"later").await.unwrap();
    let (first, second) = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.payload().as_ref(), b"late");
    assert!(matches!(second, Entry::Marker { .. }));
}

#[tokio::test]
async fn reader_reports_closed_after_the_last_handle_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let queue = open(dir.path());
    queue.append(b"last").await.unwrap();
    let mut reader = queue.reader();
    drop(queue);
    assert_eq!(reader.next().await.unwrap().payload().as_ref(), b"last");
    assert!(matches!(reader.next().await, Err(QueueError::Closed)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_get_distinct_positions_and_are_all_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let queue = open_with(dir.path(), |o| o.segment_bytes = 4096);
    let tasks: Vec<_> = (0..16u8)
        .map(|task| {
            let queue = queue.clone();
            tokio::spawn(async move {
                let mut positions = Vec::new();
                for i in 0..50u8 {
                    positions.push(queue.append(&[task, i]).await.unwrap());
                }
                positions
            })
        })
        .collect();
    let mut positions = Vec::new();
    for task in tasks {
        let mine = task.await.unwrap();
        assert!(mine.is_sorted(), "a task's appends keep their order");
        positions.extend(mine);
    }
    positions.sort_unstable();
    positions.dedup();
    assert_eq!(positions.len(), 16 * 50);

    let entries = drain(&mut queue.reader());
    let read: Vec<Position> = entries.iter().map(Entry::pos).collect();
    assert_eq!(read, positions);
    for task in 0..16u8 {
        let own: Vec<u8> = entries
            .iter()
            .filter(|entry| entry.payload()[0] == task)
            .map(|entry| entry.payload()[1])
            .collect();
        assert_eq!(own, (0..50).collect::<Vec<u8>>());
    }
}

#[tokio::test]
async fn appended_record_survives_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let queue = open(dir.path());
    queue.append(b"durable").await.unwrap();
    // The files as a `kill -9` right now would leave them: the queue is still open.
    let copy = tempfile::tempdir().unwrap();
    for entry in fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        fs::copy(&path, copy.path().join(path.file_name().unwrap())).unwrap();
    }
    let recovered = open(copy.path());
    assert_eq!(payloads(&drain(&mut recovered.reader())), [b"durable"]);
    assert_eq!(recovered.id(), queue.id());
}

const KILL_DIR_VAR: &str = "LOGBOOK_QUEUE_KILL_TEST_DIR";

#[test]
fn records_whose_append_returned_survive_kill_9() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    let dir = tempfile::tempdir().unwrap();
    // The test's path within the crate, as the test harness names it.
    let (_, module) = module_path!().split_once("::").unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", &format!("{module}::append_until_killed")])
        .args(["--ignored", "--nocapture", "--test-threads=1"])
        .env(KILL_DIR_VAR, dir.path())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut returned = Vec::new();
    while returned.len() < 300 {
        let line = lines.next().expect("child appends until killed").unwrap();
        if let Some((pos, payload)) = line.split_once(' ')
            && let Ok(pos) = pos.parse::<Position>()
        {
            returned.push((pos, payload.to_owned()));
        }
    }
    child.kill().unwrap(); // SIGKILL, in the middle of appends
    child.wait().unwrap();
    // Lines printed before the kill are appends that returned too.
    returned.extend(lines.map_while(Result::ok).filter_map(|line| {
        let (pos, payload) = line.split_once(' ')?;
        Some((pos.parse().ok()?, payload.to_owned()))
    }));

    let queue = open(dir.path());
    let stored: std::collections::HashMap<Position, Bytes> = drain(&mut queue.reader())
        .into_iter()
        .map(|entry| (entry.pos(), entry.payload().clone()))
        .collect();
    for (pos, payload) in &returned {
        assert_eq!(stored.get(pos).map(Bytes::as_ref), Some(payload.as_bytes()));
    }
}

/// The child process of `records_whose_append_returned_survive_kill_9`: appends from 4 tasks
/// until killed, printing `<position> <payload>` once each append has returned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "child process of records_whose_append_returned_survive_kill_9"]
async fn append_until_killed() {
    let Some(dir) = std::env::var_os(KILL_DIR_VAR) else {
        return;
    };
    let queue = open(Path::new(&dir));
    let tasks: Vec<_> = (0..4)
        .map(|task| {
            let queue = queue.clone();
            tokio::spawn(async move {
                for i in 0.. {
                    let payload = format!("{task}-{i}-{}", "x".repeat(200));
                    let pos = queue.append(payload.as_bytes()).await.unwrap();
                    println!("{pos} {payload}");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
}

#[tokio::test]
async fn lost_tail_below_the_ack_does_not_reuse_positions() {
    let dir = tempfile::tempdir().unwrap();
    let queue = open(dir.path());
    queue.append(b"stored").await.unwrap();
    queue.append(b"stored too").await.unwrap();
    queue.ack_blocking(rec(6) + 1).unwrap();
    drop(queue);
    // As after a power loss that kept the ack but not the unsynced segment.
    let segment = &segment_files(dir.path())[0];
    fs::File::options()
        .write(true)
        .open(segment)
        .unwrap()
        .set_len(rec(6))
        .unwrap();

    let queue = open(dir.path());
    let acked = rec(6) + rec(10);
    assert_eq!(queue.stats().end, acked);
    assert_eq!(queue.append(b"new").await.unwrap(), acked);
    assert_eq!(payloads(&drain(&mut queue.reader())), [b"new"]);
}

#[tokio::test]
async fn queue_id_persists_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let id = open(dir.path()).id();
    assert_eq!(open(dir.path()).id(), id);
    let other = tempfile::tempdir().unwrap();
    assert_ne!(open(other.path()).id(), id);
}

#[tokio::test]
async fn second_open_of_a_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _queue = open(dir.path());
    assert!(matches!(
        Queue::open(QueueOptions::new(dir.path())),
        Err(QueueError::Locked { .. })
    ));
}

#[tokio::test]
async fn stats_follow_appends_and_acks() {
    let dir = tempfile::tempdir().unwrap();
    let queue = open(dir.path());
    let empty = queue.stats();
    assert_eq!((empty.bytes, empty.records, empty.end), (0, 0, 0));
    assert_eq!(empty.oldest_unacked_age, None);

    let before = SystemTime::now();
    let first = queue.append(&[0; 10]).await.unwrap();
    queue.append_marker(&[0; 3]).await.unwrap();
    queue.append(&[0; 20]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(30)).await;
    let stats = queue.stats();
    assert_eq!(stats.bytes, rec(10) + rec(3) + rec(20));
    assert_eq!(stats.disk_bytes, stats.bytes);
    assert_eq!((stats.records, stats.acked, stats.end), (3, 0, stats.bytes));
    let age = stats.oldest_unacked_age.unwrap();
    assert!(age >= Duration::from_millis(20), "{age:?}");
    assert!(age <= before.elapsed().unwrap() + Duration::from_millis(1));

    queue.ack_blocking(first + 1).unwrap();
    let stats = queue.stats();
    assert_eq!((stats.bytes, stats.records), (rec(3) + rec(20), 2));
    assert_eq!(stats.acked, rec(10));
    drop(queue);

    let stats = open(dir.path()).stats();
    assert_eq!(
        (stats.bytes, stats.records, stats.acked),
        (rec(3) + rec(20), 2, rec(10))
    );
    assert!(stats.oldest_unacked_age.is_some());
}

#[tokio::test]
async fn relaxed_policies_keep_records_across_reopen() {
    for fsync in [
        FsyncPolicy::Interval(Duration::from_millis(5)),
        FsyncPolicy::Never,
    ] {
        let dir = tempfile::tempdir().unwrap();
        let queue = open_with(dir.path(), |o| o.fsync = fsync);
        queue.append(b"a").await.unwrap();
        queue.append_marker(b"m").await.unwrap();
        queue.append(b"b").await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await; // lets the interval sync fire
        drop(queue);
        let entries = drain(&mut open(dir.path()).reader());
        assert_eq!(payloads(&entries), [&b"a"[..], b"m", b"b"], "{fsync:?}");
    }
}

/// Throughput of 1 KiB appends with `FsyncPolicy::Always` from 8 tasks; prints, asserts
/// nothing about speed. `cargo test --lib queue -- --ignored --nocapture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement"]
async fn measure_append_throughput() {
    const TASKS: usize = 8;
    const PER_TASK: usize = 2_000;
    let dir = tempfile::tempdir().unwrap();
    let queue = open(dir.path());
    let started = Instant::now();
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let queue = queue.clone();
            tokio::spawn(async move {
                for _ in 0..PER_TASK {
                    queue.append(&[0xAB; 1024]).await.unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let elapsed = started.elapsed();
    let appends = (TASKS * PER_TASK) as f64;
    println!(
        "{appends} appends of 1 KiB from {TASKS} tasks in {elapsed:?}: {:.0} appends/s, {:.1} MiB/s",
        appends / elapsed.as_secs_f64(),
        appends / 1024.0 / elapsed.as_secs_f64()
    );
}
