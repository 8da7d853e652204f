//! The synced record, `<dir>/wal/synced`: the seq of a frame known durable, kept outside the
//! segments so that it survives the loss of the newest one. If the log's good frames end below
//! it, synced data was lost (docs/STORAGE.md, "Recovery").
//!
//! ```text
//! two slots, at offsets 0 and 512, each:
//! [magic "SYNODREC"][version u32 = 1][counter u64][seq u64][crc32c of the 28 bytes before: u32]
//! ```
//!
//! Updates overwrite the two slots in turn, each in its own sector, so an interrupted update
//! leaves the other slot whole; the valid slot with the higher counter is the record. The
//! record only ever lags the log (it is written after the fdatasync that made its seq
//! durable), so it never makes a torn, unsynced tail look like a loss.
//!
//! It is updated off the write path, by a thread that wakes every [`RECORD_INTERVAL`] and
//! writes the newest synced seq if it moved (one small overwrite and one fdatasync of this
//! file): no extra fsync per group commit, and the record trails the log by at most that
//! interval plus one fdatasync. Clean close and `finish_peer_recovery` bring it up to date.

use crate::error::StorageError;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

pub const FILE_NAME: &str = "synced";
const MAGIC: [u8; 8] = *b"SYNODREC";
const VERSION: u32 = 1;
const SLOT_LEN: usize = 32;
/// Each slot in its own sector.
const SLOT_STRIDE: u64 = 512;
/// How often the record catches up with the log.
pub const RECORD_INTERVAL: Duration = Duration::from_millis(50);

fn encode(counter: u64, seq: u64) -> [u8; SLOT_LEN] {
    let mut s = [0u8; SLOT_LEN];
    s[..8].copy_from_slice(&MAGIC);
    s[8..12].copy_from_slice(&VERSION.to_le_bytes());
    s[12..20].copy_from_slice(&counter.to_le_bytes());
    s[20..28].copy_from_slice(&seq.to_le_bytes());
    let crc = crc32c::crc32c(&s[..28]);
    s[28..].copy_from_slice(&crc.to_le_bytes());
    s
}

/// `(counter, seq)` of a valid slot.
fn decode(s: &[u8]) -> Option<(u64, u64)> {
    let s = s.get(..SLOT_LEN)?;
    let u64_at = |i: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&s[i..i + 8]);
        u64::from_le_bytes(b)
    };
    let ok = s[..8] == MAGIC
        && s[8..12] == VERSION.to_le_bytes()
        && crc32c::crc32c(&s[..28]).to_le_bytes() == s[28..32];
    ok.then(|| (u64_at(12), u64_at(20)))
}

/// What the record says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordState {
    Missing,
    /// Neither slot is valid: damaged.
    Unreadable,
    Synced(u64),
}

pub fn read(dir: &Path) -> Result<RecordState, StorageError> {
    let path = dir.join(FILE_NAME);
    let data = match std::fs::read(&path) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(RecordState::Missing),
        Err(e) => return Err(StorageError::io(&path, "read")(e)),
    };
    let a = decode(&data);
    let b = data.get(SLOT_STRIDE as usize..).and_then(decode);
    Ok(match a.into_iter().chain(b).max() {
        Some((_, seq)) => RecordState::Synced(seq),
        None => RecordState::Unreadable,
    })
}

/// The open record file.
#[derive(Debug)]
pub struct Record {
    path: PathBuf,
    file: File,
    counter: u64,
    seq: u64,
}

impl Record {
    /// Writes a fresh record saying `seq` (both slots) and makes it durable; the caller syncs
    /// the directory.
    pub fn create(dir: &Path, seq: u64) -> Result<Record, StorageError> {
        let path = dir.join(FILE_NAME);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map_err(StorageError::io(&path, "create"))?;
        let mut both = vec![0u8; SLOT_STRIDE as usize + SLOT_LEN];
        both[..SLOT_LEN].copy_from_slice(&encode(1, seq));
        both[SLOT_STRIDE as usize..].copy_from_slice(&encode(0, seq));
        file.write_all_at(&both, 0)
            .and_then(|()| file.sync_all())
            .map_err(StorageError::io(&path, "write synced record"))?;
        Ok(Record {
            path,
            file,
            counter: 1,
            seq,
        })
    }

    /// Opens the record, which [`read`] found valid and saying `seq`.
    pub fn open(dir: &Path, seq: u64) -> Result<Record, StorageError> {
        let path = dir.join(FILE_NAME);
        let data = std::fs::read(&path).map_err(StorageError::io(&path, "read"))?;
        let counter = [
            decode(&data),
            data.get(SLOT_STRIDE as usize..).and_then(decode),
        ]
        .into_iter()
        .flatten()
        .map(|(c, _)| c)
        .max()
        .unwrap_or(0);
        let file = OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(StorageError::io(&path, "open"))?;
        Ok(Record {
            path,
            file,
            counter,
            seq,
        })
    }

    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Durably records `seq` (which may be lower than before: after a loss was repaired).
    pub fn write(&mut self, seq: u64) -> Result<(), StorageError> {
        let counter = self.counter + 1;
        let offset = (counter % 2) * SLOT_STRIDE;
        self.file
            .write_all_at(&encode(counter, seq), offset)
            .and_then(|()| self.file.sync_data())
            .map_err(StorageError::io(&self.path, "write synced record"))?;
        self.counter = counter;
        self.seq = seq;
        Ok(())
    }
}

#[derive(Debug)]
struct Shared {
    /// The newest seq the log made durable.
    synced: AtomicU64,
    record: Mutex<Record>,
    stop: Mutex<bool>,
    wake: Condvar,
    /// The thread's failure, for the writer to report.
    error: Mutex<Option<String>>,
}

/// The record kept up to date by a background thread (see the module docs).
#[derive(Debug)]
pub struct RecordWriter {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl RecordWriter {
    pub fn start(record: Record) -> Result<RecordWriter, StorageError> {
        let shared = Arc::new(Shared {
            synced: AtomicU64::new(record.seq),
            record: Mutex::new(record),
            stop: Mutex::new(false),
            wake: Condvar::new(),
            error: Mutex::new(None),
        });
        let for_thread = shared.clone();
        let thread = std::thread::Builder::new()
            .name("wal-synced-record".into())
            .spawn(move || run(&for_thread))
            .map_err(|source| StorageError::Io {
                path: PathBuf::from(FILE_NAME),
                op: "start the synced-record thread",
                source,
            })?;
        Ok(RecordWriter {
            shared,
            thread: Some(thread),
        })
    }

    /// The log made everything up to `seq` durable (cheap: one atomic store).
    pub fn publish(&self, seq: u64) {
        self.shared.synced.fetch_max(seq, Ordering::Release);
    }

    /// A failure of the background thread, once.
    pub fn take_error(&self) -> Option<String> {
        lock(&self.shared.error).take()
    }

    /// Writes the newest published seq now (if it moved) and returns when it is durable.
    pub fn flush(&self) -> Result<(), StorageError> {
        catch_up(&self.shared)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn catch_up(shared: &Shared) -> Result<(), StorageError> {
    let mut record = lock(&shared.record);
    let seq = shared.synced.load(Ordering::Acquire);
    if seq > record.seq() {
        record.write(seq)?;
    }
    Ok(())
}

fn run(shared: &Shared) {
    let mut stop = lock(&shared.stop);
    while !*stop {
        stop = shared
            .wake
            .wait_timeout(stop, RECORD_INTERVAL)
            .unwrap_or_else(PoisonError::into_inner)
            .0;
        if *stop {
            break;
        }
        drop(stop);
        if let Err(e) = catch_up(shared) {
            *lock(&shared.error) = Some(e.to_string());
            return;
        }
        stop = lock(&shared.stop);
    }
}

impl Drop for RecordWriter {
    /// A clean close: the record is brought up to date (best effort; a failure here only
    /// narrows what the next open can detect).
    fn drop(&mut self) {
        *lock(&self.shared.stop) = true;
        self.shared.wake.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        let _ = catch_up(&self.shared);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newer_valid_slot_wins_and_a_torn_update_leaves_the_older() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        assert_eq!(read(dir).unwrap(), RecordState::Missing);
        let mut r = Record::create(dir, 0).unwrap();
        assert_eq!(read(dir).unwrap(), RecordState::Synced(0));
        r.write(5).unwrap();
        r.write(9).unwrap();
        assert_eq!(read(dir).unwrap(), RecordState::Synced(9));
        // Tear the newest slot: the other one (5) remains.
        let path = dir.join(FILE_NAME);
        let mut data = std::fs::read(&path).unwrap();
        let newest = (r.counter % 2 * SLOT_STRIDE) as usize;
        data[newest + 21] ^= 0xff;
        std::fs::write(&path, &data).unwrap();
        assert_eq!(read(dir).unwrap(), RecordState::Synced(5));
        let other = SLOT_STRIDE as usize - newest;
        data[other + 3] ^= 0xff;
        std::fs::write(&path, &data).unwrap();
        assert_eq!(read(dir).unwrap(), RecordState::Unreadable);
    }

    #[test]
    fn the_writer_catches_up_and_flushes_on_drop() {
        let tmp = tempfile::tempdir().unwrap();
        let w = RecordWriter::start(Record::create(tmp.path(), 0).unwrap()).unwrap();
        w.publish(3);
        std::thread::sleep(RECORD_INTERVAL * 3);
        assert_eq!(read(tmp.path()).unwrap(), RecordState::Synced(3));
        w.publish(7);
        drop(w);
        assert_eq!(read(tmp.path()).unwrap(), RecordState::Synced(7));
    }
}
