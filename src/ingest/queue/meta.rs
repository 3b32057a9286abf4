//! The small files next to the segments: the directory lock, the queue id and the acknowledged
//! position.

use std::fs::{self, File, TryLockError};
use std::hash::{BuildHasher, Hasher};
use std::io::Write;
use std::path::Path;
use std::time::SystemTime;

use super::segment::sync_dir;
use super::{Position, QueueError, io_at};

const LOCK_FILE: &str = "lock";
const ID_FILE: &str = "queue-id";
const ACK_FILE: &str = "ack";

/// Takes an exclusive lock on the directory, held as long as the returned file is open, so two
/// processes never append to the same log.
pub(crate) fn lock(dir: &Path) -> Result<File, QueueError> {
    let path = dir.join(LOCK_FILE);
    let file = File::create(&path).map_err(io_at(&path))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => Err(QueueError::Locked {
            dir: dir.to_path_buf(),
        }),
        Err(TryLockError::Error(error)) => Err(io_at(&path)(error)),
    }
}

/// The id stored in `queue-id` (16 hex digits), created at first open.
pub(crate) fn load_or_create_id(dir: &Path) -> Result<u64, QueueError> {
    let path = dir.join(ID_FILE);
    match fs::read_to_string(&path) {
        Ok(text) => u64::from_str_radix(text.trim(), 16).map_err(|_| QueueError::Corrupt {
            path,
            offset: 0,
            reason: "queue id is not 16 hex digits",
        }),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let id = random_u64();
            write_atomically(dir, ID_FILE, format!("{id:016x}\n").as_bytes())?;
            Ok(id)
        }
        Err(error) => Err(io_at(&path)(error)),
    }
}

/// The acknowledged position: 0 when nothing was ever acknowledged.
pub(crate) fn read_ack(dir: &Path) -> Result<Position, QueueError> {
    let path = dir.join(ACK_FILE);
    let bytes = match fs::read(&path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(error) => return Err(io_at(&path)(error)),
    };
    let corrupt = || QueueError::Corrupt {
        path: path.clone(),
        offset: 0,
        reason: "ack file is not a position with its crc",
    };
    let (pos, crc) = bytes.split_at_checked(8).ok_or_else(corrupt)?;
    if crc.len() != 4 || crc32fast::hash(pos).to_le_bytes() != crc {
        return Err(corrupt());
    }
    Ok(u64::from_le_bytes(pos.try_into().expect("8 bytes")))
}

/// Persists the acknowledged position: 8 bytes little-endian followed by their CRC-32.
pub(crate) fn write_ack(dir: &Path, pos: Position) -> Result<(), QueueError> {
    let mut bytes = pos.to_le_bytes().to_vec();
    bytes.extend_from_slice(&crc32fast::hash(&bytes).to_le_bytes());
    write_atomically(dir, ACK_FILE, &bytes)
}

/// Write to a temporary file, fsync, rename over `name`, fsync the directory: after a crash the
/// file holds either the old or the new content.
fn write_atomically(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), QueueError> {
    let tmp = dir.join(format!("{name}.tmp"));
    let mut file = File::create(&tmp).map_err(io_at(&tmp))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(io_at(&tmp))?;
    let path = dir.join(name);
    fs::rename(&tmp, &path).map_err(io_at(&path))?;
    sync_dir(dir)
}

/// 64 random bits without another dependency: the std hasher's keys are seeded from the OS
/// random source; time and pid only make each call's input distinct.
fn random_u64() -> u64 {
    let mut hasher = std::hash::RandomState::new().build_hasher();
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos());
    hasher.write_u128(nanos);
    hasher.write_u32(std::process::id());
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ack_round_trips_and_defaults_to_zero() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_ack(dir.path()).unwrap(), 0);
        write_ack(dir.path(), 123_456).unwrap();
        assert_eq!(read_ack(dir.path()).unwrap(), 123_456);
        assert!(!dir.path().join("ack.tmp").exists());
    }

    #[test]
    fn damaged_ack_file_is_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        write_ack(dir.path(), 99).unwrap();
        let path = dir.path().join(ACK_FILE);
        let mut bytes = fs::read(&path).unwrap();
        bytes[0] ^= 1;
        fs::write(&path, bytes).unwrap();
        assert!(matches!(
            read_ack(dir.path()),
            Err(QueueError::Corrupt { path: p, .. }) if p == path
        ));
    }

    #[test]
    fn id_is_created_once() {
        let dir = tempfile::tempdir().unwrap();
        let id = load_or_create_id(dir.path()).unwrap();
        assert_eq!(load_or_create_id(dir.path()).unwrap(), id);
        let other = tempfile::tempdir().unwrap();
        assert_ne!(load_or_create_id(other.path()).unwrap(), id);
    }

    #[test]
    fn second_lock_on_a_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let held = lock(dir.path()).unwrap();
        assert!(matches!(lock(dir.path()), Err(QueueError::Locked { .. })));
        drop(held);
        lock(dir.path()).unwrap();
    }
}
