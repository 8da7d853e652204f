//! The segmented write-ahead log: frames appended to the newest segment, many batches per
//! fdatasync (group commit), rotation to a new segment past a size, and deletion of old
//! segments once a snapshot covers them.
//!
//! Writes are buffered in memory and handed to the kernel in one `write` per sync (or when the
//! buffer grows past a limit), so a group of batches costs one system call and one fdatasync.

use crate::batch::{self, Batch};
use crate::error::StorageError;
use crate::frame;
use crate::fsutil;
use crate::recovered::{Recovered, TornTail};
use crate::segment;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use synod_paxos::{HardState, Slot};

/// Buffered frames are handed to the kernel once they exceed this, even before a sync, to
/// bound the memory a long group can take.
const BUFFER_BYTES_MAX: usize = 1 << 20;

#[derive(Debug)]
struct SegmentInfo {
    first_seq: u64,
    path: PathBuf,
    /// The highest slot of any record in the segment: it may be deleted only once a snapshot
    /// covers this slot.
    max_slot: Slot,
}

#[derive(Debug)]
pub struct Wal {
    dir: PathBuf,
    /// Oldest first; the last one is being appended to.
    segments: Vec<SegmentInfo>,
    active: File,
    /// Bytes in the active segment, buffered ones included.
    active_len: u64,
    /// Encoded frames not yet handed to the kernel.
    buf: Vec<u8>,
    scratch: Vec<u8>,
    next_seq: u64,
    /// The last seq known durable.
    synced_seq: u64,
    /// The latest hard state written (buffered included): the promise may never go below it,
    /// and every new segment starts with it.
    hard_state: HardState,
    segment_bytes_max: u64,
    /// Set by a failed write or sync: the state of the file is unknown from then on.
    poisoned: Option<String>,
}

impl Wal {
    /// Opens (creating) the log in `dir`, replaying every frame into `recovered` and cutting
    /// off a torn tail.
    pub fn open(
        dir: &Path,
        segment_bytes_max: u64,
        recovered: &mut Recovered,
    ) -> Result<Wal, StorageError> {
        fsutil::ensure_dir(dir)?;
        let mut scan = scan_dir(dir, recovered)?;
        if scan.segments.is_empty() {
            scan.segments.push(SegmentInfo {
                first_seq: 1,
                path: create_segment(dir, 1)?,
                max_slot: 0,
            });
        }
        if let Some(torn) = &recovered.report.torn_tail {
            truncate(&torn.path, torn.offset)?;
        }
        let active_path = &scan.segments[scan.segments.len() - 1].path;
        let active = OpenOptions::new()
            .append(true)
            .open(active_path)
            .map_err(StorageError::io(active_path, "open"))?;
        Ok(Wal {
            dir: dir.to_path_buf(),
            segments: scan.segments,
            active,
            active_len: scan.end.valid_len,
            buf: Vec::new(),
            scratch: Vec::new(),
            next_seq: scan.end.next_seq,
            synced_seq: scan.end.next_seq - 1,
            hard_state: recovered.hard_state,
            segment_bytes_max,
            poisoned: None,
        })
    }

    /// The seq the oldest remaining segment starts at: 1 unless the log was compacted.
    pub fn first_seq(&self) -> u64 {
        self.segments.first().map_or(1, |s| s.first_seq)
    }

    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    fn check_usable(&self) -> Result<(), StorageError> {
        match &self.poisoned {
            Some(reason) => Err(StorageError::Poisoned {
                reason: reason.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Buffers one batch; durable only after the next [`Wal::sync`].
    pub fn write(&mut self, batch: &Batch) -> Result<(), StorageError> {
        self.check_usable()?;
        if batch.is_empty() {
            return Ok(());
        }
        if let Some(hs) = batch.hard_state {
            if hs.promised < self.hard_state.promised {
                return Err(StorageError::PromiseRegressed {
                    current: self.hard_state.promised,
                    attempted: hs.promised,
                });
            }
        }
        if self.active_len >= self.segment_bytes_max {
            self.rotate()?;
        }
        self.append_frame(batch)
    }

    fn append_frame(&mut self, batch: &Batch) -> Result<(), StorageError> {
        self.scratch.clear();
        batch::encode(self.next_seq, self.synced_seq, batch, &mut self.scratch);
        if self.scratch.len() > frame::PAYLOAD_MAX {
            return Err(StorageError::BatchTooLarge {
                bytes: self.scratch.len(),
                max: frame::PAYLOAD_MAX,
            });
        }
        let before = self.buf.len();
        frame::encode(&self.scratch, &mut self.buf);
        self.active_len += (self.buf.len() - before) as u64;
        self.next_seq += 1;
        if let Some(hs) = batch.hard_state {
            self.hard_state = hs;
        }
        let top = batch.records.iter().map(|r| r.slot).max().unwrap_or(0);
        if let Some(active) = self.segments.last_mut() {
            active.max_slot = active.max_slot.max(top);
        }
        if self.buf.len() >= BUFFER_BYTES_MAX {
            self.flush()?;
        }
        Ok(())
    }

    /// Hands the buffered frames to the kernel (no sync).
    fn flush(&mut self) -> Result<(), StorageError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let result = self.active.write_all(&self.buf);
        self.buf.clear();
        result.map_err(|e| self.poison(e, "write"))
    }

    fn poison(&mut self, source: std::io::Error, op: &'static str) -> StorageError {
        let path = self
            .segments
            .last()
            .map(|s| s.path.clone())
            .unwrap_or_default();
        self.poisoned = Some(format!("{op} {}: {source}", path.display()));
        StorageError::Io { path, op, source }
    }

    /// Makes every batch written so far durable: one write and one fdatasync for all of them.
    pub fn sync(&mut self) -> Result<(), StorageError> {
        self.check_usable()?;
        self.flush()?;
        if self.synced_seq + 1 == self.next_seq {
            return Ok(());
        }
        self.active
            .sync_data()
            .map_err(|e| self.poison(e, "fdatasync"))?;
        self.synced_seq = self.next_seq - 1;
        Ok(())
    }

    /// Starts a new segment. The old one is synced first, so only the newest segment can ever
    /// hold a torn write; the new one opens with the current hard state, so deleting older
    /// segments never loses the promise.
    fn rotate(&mut self) -> Result<(), StorageError> {
        self.sync()?;
        let first_seq = self.next_seq;
        let path = create_segment(&self.dir, first_seq)?;
        self.active = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(StorageError::io(&path, "open"))?;
        self.segments.push(SegmentInfo {
            first_seq,
            path,
            max_slot: 0,
        });
        self.active_len = 0;
        let hard_state = Batch::new(Some(self.hard_state), Vec::new());
        self.append_frame(&hard_state)
    }

    /// Deletes the oldest segments whose every record is at or below `bound` (never the
    /// active one). Returns how many were deleted.
    pub fn compact(&mut self, bound: Slot) -> Result<usize, StorageError> {
        // The rotation frames that carry the hard state past the deleted segments must be
        // durable before anything is deleted.
        self.sync()?;
        let deletable = self.segments[..self.segments.len() - 1]
            .iter()
            .take_while(|s| s.max_slot <= bound)
            .count();
        for segment in self.segments.drain(..deletable) {
            fs::remove_file(&segment.path).map_err(StorageError::io(&segment.path, "remove"))?;
            // One at a time, oldest first, so a crash leaves a contiguous suffix of segments.
            fsutil::sync_dir(&self.dir)?;
        }
        Ok(deletable)
    }
}

/// What a read-only pass over the log found.
#[derive(Debug)]
pub struct DirScan {
    segments: Vec<SegmentInfo>,
    end: segment::ScanEnd,
}

/// Replays every segment in `dir` into `recovered` without changing anything on disk. A torn
/// tail is reported in `recovered.report` (for [`Wal::open`] to cut off).
pub fn scan_dir(dir: &Path, recovered: &mut Recovered) -> Result<DirScan, StorageError> {
    let mut firsts: Vec<u64> = fsutil::file_names(dir)?
        .iter()
        .filter_map(|n| segment::parse_name(n))
        .collect();
    firsts.sort_unstable();
    if firsts.is_empty() && recovered.snapshot.is_some() {
        // The log always keeps its newest segment; without any, the promise is gone.
        return Err(StorageError::corrupt(
            dir,
            0,
            "no log segment, yet snapshots exist: the promise and accepted values are lost",
        ));
    }
    let mut segments = Vec::with_capacity(firsts.len());
    let mut end = segment::ScanEnd {
        valid_len: 0,
        next_seq: firsts.first().copied().unwrap_or(1),
        torn: false,
    };
    for (i, &first_seq) in firsts.iter().enumerate() {
        let path = dir.join(segment::file_name(first_seq));
        if first_seq != end.next_seq {
            return Err(StorageError::corrupt(
                &path,
                0,
                format!(
                    "segment starts at seq {first_seq} but the previous one ends before seq {} \
                     (a segment is missing or misnamed)",
                    end.next_seq
                ),
            ));
        }
        let data = fs::read(&path).map_err(StorageError::io(&path, "read"))?;
        let mut max_slot = 0;
        let last = i + 1 == firsts.len();
        end = segment::scan(&path, &data, first_seq, last, |offset, logged| {
            let top = logged.batch.records.iter().map(|r| r.slot).max();
            max_slot = max_slot.max(top.unwrap_or(0));
            recovered.replay(&logged.batch, &path, offset)
        })?;
        if end.torn {
            recovered.report.torn_tail = Some(TornTail {
                path: path.clone(),
                offset: end.valid_len,
                bytes_dropped: data.len() as u64 - end.valid_len,
            });
        }
        segments.push(SegmentInfo {
            first_seq,
            path,
            max_slot,
        });
    }
    Ok(DirScan { segments, end })
}

impl DirScan {
    /// The seq the oldest segment starts at: 1 unless the log was compacted.
    pub fn first_seq(&self) -> u64 {
        self.segments.first().map_or(1, |s| s.first_seq)
    }
}

fn create_segment(dir: &Path, first_seq: u64) -> Result<PathBuf, StorageError> {
    let path = dir.join(segment::file_name(first_seq));
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(StorageError::io(&path, "create segment"))?;
    fsutil::sync_dir(dir)?;
    Ok(path)
}

/// Cuts a torn tail off, durably, so the next append starts on a frame boundary.
fn truncate(path: &Path, len: u64) -> Result<(), StorageError> {
    OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|f| {
            f.set_len(len)?;
            f.sync_all()
        })
        .map_err(StorageError::io(path, "truncate torn tail"))
}
