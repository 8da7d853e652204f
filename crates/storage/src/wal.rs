//! The segmented write-ahead log: frames written into the newest of a chain of preallocated
//! segments, many batches per fdatasync (group commit), rotation into a segment prepared ahead,
//! and deletion of old segments once a snapshot covers them.
//!
//! Writes are buffered in memory and handed to the kernel in one `pwrite` per sync (or when the
//! buffer grows past a limit), so a group of batches costs one system call and one fdatasync.
//! Every file the log needs while running is opened ahead (the active segment, the next one,
//! the directory, the synced record), so a full descriptor table never stops it rotating.

use crate::batch::{self, Batch};
use crate::error::StorageError;
use crate::frame;
use crate::fsutil::{self, DirHandle};
use crate::loss;
use crate::record::{Record, RecordState, RecordWriter};
use crate::recover::{self, Active, Cut, SegmentInfo};
use crate::recovered::Recovered;
use crate::segment::{self, HEADER_LEN, SEAL_FRAME_MAX};
use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use synod_paxos::{HardState, Slot};

/// Buffered frames are handed to the kernel once they exceed this, even before a sync, to
/// bound the memory a long group can take.
const BUFFER_BYTES_MAX: usize = 1 << 20;
/// Smallest segment: room for the header, a rotation's hard state and a seal, and some frames.
pub const SEGMENT_BYTES_MIN: u64 = 512;
/// Zeros written per call when clearing a cut-off tail.
const ZERO_CHUNK_BYTES: usize = 1 << 20;
/// After failing to prepare the next segment (say, no descriptor or no space), wait this long
/// before trying again on a sync; rotation itself always tries.
const PREPARE_RETRY: Duration = Duration::from_secs(1);

/// A segment created, preallocated and made durable ahead of need.
#[derive(Debug)]
struct Prepared {
    index: u64,
    path: PathBuf,
    file: File,
    size: u64,
}

#[derive(Debug)]
pub struct Wal {
    dir: DirHandle,
    /// Oldest first; the last one is being written.
    segments: Vec<SegmentInfo>,
    active: File,
    active_size: u64,
    /// End of the frames in the active segment, buffered ones included.
    pos: u64,
    /// End of what was handed to the kernel.
    written: u64,
    /// The segment the next rotation moves to.
    spare: Option<Prepared>,
    /// When to try again after preparing `spare` failed.
    prepare_retry_at: Option<Instant>,
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
    record: RecordWriter,
}

impl Wal {
    /// Opens (creating) the log in `dir`, replaying every frame into `recovered`: a torn tail
    /// is cut off; a lost synced tail is reported in `recovered`, marked durably, copied aside
    /// and cut off (see [`crate::Recovered::lost_tail`]).
    pub fn open(
        dir: &Path,
        segment_bytes_max: u64,
        recovered: &mut Recovered,
    ) -> Result<Wal, StorageError> {
        fsutil::ensure_dir(dir)?;
        let dirh = DirHandle::open(dir)?;
        let plan = recover::scan(dir, recovered)?;
        let segment_bytes_max = segment_bytes_max.max(SEGMENT_BYTES_MIN);

        // The marker goes first, so a crash during the repair still reports the loss.
        let damaged: Vec<(PathBuf, PathBuf)> = plan
            .evidence
            .iter()
            .chain(&plan.replace_active)
            .map(|p| (p.clone(), damaged_name(p)))
            .collect();
        if plan.new_loss {
            if let Some(lost) = recovered.report.lost_tail.as_mut() {
                lost.set_aside = damaged.iter().map(|(_, to)| to.clone()).collect();
                loss::write_marker(&dirh, lost)?;
            }
        }
        for (from, to) in &damaged {
            if Some(from) == plan.replace_active.as_ref() {
                fs::rename(from, to).map_err(StorageError::io(from, "set aside"))?;
            } else {
                fs::copy(from, to)
                    .and_then(|_| File::open(to)?.sync_all())
                    .map_err(StorageError::io(to, "copy aside"))?;
            }
        }
        if let Some(cut) = &plan.cut {
            clear_tail(cut)?;
        }
        for path in &plan.remove {
            fs::remove_file(path).map_err(StorageError::io(path, "remove unused segment"))?;
        }
        if !damaged.is_empty() || !plan.remove.is_empty() {
            dirh.sync()?;
        }

        let kept = plan.next_seq - 1;
        let record = match plan.record {
            RecordState::Synced(seq) if seq <= kept => Record::open(dir, seq)?,
            _ => {
                // New, unreadable, or above what survived a loss: it says what is kept now.
                let record = Record::create(dir, kept)?;
                dirh.sync()?;
                record
            }
        };

        let active_path = dir.join(segment::file_name(plan.active_index));
        let (active, active_size, pos, has_frames) = match plan.active {
            Active::Reuse {
                size,
                end,
                has_frames,
            } => {
                let file = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(&active_path)
                    .map_err(StorageError::io(&active_path, "open"))?;
                // What recovery read may still sit in the page cache only (after a process
                // crash): make it durable before anything depends on it.
                file.sync_data()
                    .map_err(StorageError::io(&active_path, "fdatasync"))?;
                (file, size, end, has_frames)
            }
            Active::Create => {
                let p = prepare(&dirh, plan.active_index, segment_bytes_max)?;
                (p.file, p.size, HEADER_LEN as u64, false)
            }
        };
        let mut segments = plan.segments;
        if segments.last().map(|s| s.index) != Some(plan.active_index) {
            segments.push(SegmentInfo {
                index: plan.active_index,
                path: active_path,
                first_seq: plan.next_seq,
                highest_slot: 0,
            });
        }
        let spare_index = plan.active_index + 1;
        let spare = match plan.spare {
            Some(size) => {
                let path = dir.join(segment::file_name(spare_index));
                OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(&path)
                    .ok()
                    .map(|file| Prepared {
                        index: spare_index,
                        path,
                        file,
                        size,
                    })
            }
            None => None,
        };
        let record = RecordWriter::start(record)?;
        record.publish(kept);
        let mut wal = Wal {
            dir: dirh,
            segments,
            active,
            active_size,
            pos,
            written: pos,
            spare,
            prepare_retry_at: None,
            buf: Vec::new(),
            scratch: Vec::new(),
            next_seq: plan.next_seq,
            synced_seq: kept,
            hard_state: recovered.hard_state,
            segment_bytes_max,
            poisoned: None,
            record,
        };
        wal.ensure_spare(true);
        if !has_frames && wal.hard_state != HardState::default() {
            // A segment's first frame carries the hard state, so deleting the segments before
            // it never loses the promise (a crash may have lost the one rotation wrote).
            wal.write(&Batch::new(Some(wal.hard_state), Vec::new()))?;
        }
        Ok(wal)
    }

    /// The seq the oldest remaining segment starts at: 1 unless the log was compacted.
    pub fn first_seq(&self) -> u64 {
        self.segments.first().map_or(1, |s| s.first_seq)
    }

    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    fn active_index(&self) -> u64 {
        self.segments.last().map_or(1, |s| s.index)
    }

    fn check_usable(&mut self) -> Result<(), StorageError> {
        if let Some(reason) = self.record.take_error() {
            self.poisoned.get_or_insert(reason);
        }
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
        self.encode(batch)?;
        let frame_len = (frame::HEADER_LEN + self.scratch.len()) as u64;
        if self.pos + frame_len + SEAL_FRAME_MAX as u64 > self.active_size {
            self.rotate(frame_len)?;
            self.encode(batch)?;
        }
        self.push_frame(batch)
    }

    /// Encodes `batch` as the next frame's payload into `scratch`.
    fn encode(&mut self, batch: &Batch) -> Result<(), StorageError> {
        self.scratch.clear();
        batch::encode(self.next_seq, self.synced_seq, batch, &mut self.scratch);
        if self.scratch.len() > frame::PAYLOAD_MAX {
            return Err(StorageError::BatchTooLarge {
                bytes: self.scratch.len(),
                max: frame::PAYLOAD_MAX,
            });
        }
        Ok(())
    }

    /// Appends the frame encoded in `scratch` (holding `batch`) to the buffer.
    fn push_frame(&mut self, batch: &Batch) -> Result<(), StorageError> {
        let before = self.buf.len();
        frame::encode(&self.scratch, &mut self.buf);
        self.pos += (self.buf.len() - before) as u64;
        self.next_seq += 1;
        if let Some(hs) = batch.hard_state {
            self.hard_state = hs;
        }
        let top = batch.records.iter().map(|r| r.slot).max().unwrap_or(0);
        if let Some(active) = self.segments.last_mut() {
            active.highest_slot = active.highest_slot.max(top);
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
        let result = self.active.write_all_at(&self.buf, self.written);
        self.written += self.buf.len() as u64;
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
        self.sync_active()?;
        self.ensure_spare(false);
        Ok(())
    }

    fn sync_active(&mut self) -> Result<(), StorageError> {
        self.flush()?;
        if self.synced_seq + 1 == self.next_seq {
            return Ok(());
        }
        self.active
            .sync_data()
            .map_err(|e| self.poison(e, "fdatasync"))?;
        self.synced_seq = self.next_seq - 1;
        self.record.publish(self.synced_seq);
        Ok(())
    }

    /// Prepares the next segment if there is none. A failure is not an error here (the
    /// current segment may have plenty of room): it is retried later, and only a rotation
    /// that finds no prepared segment and cannot make one fails.
    fn ensure_spare(&mut self, now: bool) {
        if self.spare.is_some()
            || (!now && self.prepare_retry_at.is_some_and(|t| Instant::now() < t))
        {
            return;
        }
        match prepare(&self.dir, self.active_index() + 1, self.segment_bytes_max) {
            Ok(p) => {
                self.spare = Some(p);
                self.prepare_retry_at = None;
            }
            Err(_) => self.prepare_retry_at = Some(Instant::now() + PREPARE_RETRY),
        }
    }

    /// Moves to the prepared segment, making room for a frame of `frame_len` bytes after the
    /// hard state that opens it. The full segment is sealed (its last frame names the next
    /// one) and synced with the last group; the seal is written only once the next segment is
    /// durable, so a sealed newest segment always means its successor was lost.
    fn rotate(&mut self, frame_len: u64) -> Result<(), StorageError> {
        let carrier = Batch::new(Some(self.hard_state), Vec::new());
        let mut worst = Vec::new();
        batch::encode(u64::MAX, u64::MAX - 1, &carrier, &mut worst);
        // Seqs in the frame may take a few more varint bytes once re-encoded after the seal.
        let needed = HEADER_LEN as u64
            + (frame::HEADER_LEN + worst.len()) as u64
            + frame_len
            + 2 * 10
            + SEAL_FRAME_MAX as u64;
        // Nothing has changed yet: failing to get a segment leaves the log as it was.
        let mut next = match self.spare.take() {
            Some(p) => p,
            None => prepare(&self.dir, self.active_index() + 1, self.segment_bytes_max)?,
        };
        if next.size < needed {
            let size = needed.next_multiple_of(4096).max(self.segment_bytes_max);
            grow(&next, size)?;
            next.size = size;
        }
        self.scratch.clear();
        batch::encode_seal(
            self.next_seq,
            self.synced_seq,
            next.index,
            &mut self.scratch,
        );
        frame::encode(&self.scratch, &mut self.buf);
        self.pos += (frame::HEADER_LEN + self.scratch.len()) as u64;
        self.next_seq += 1;
        self.sync_active()?;

        self.active = next.file;
        self.active_size = next.size;
        self.pos = HEADER_LEN as u64;
        self.written = self.pos;
        self.segments.push(SegmentInfo {
            index: next.index,
            path: next.path,
            first_seq: self.next_seq,
            highest_slot: 0,
        });
        self.encode(&carrier)?;
        self.push_frame(&carrier)?;
        self.ensure_spare(true);
        Ok(())
    }

    /// Deletes the oldest segments whose every record is at or below `bound` (never the
    /// active one). Returns how many were deleted.
    pub fn compact(&mut self, bound: Slot) -> Result<usize, StorageError> {
        // The rotation frames that carry the hard state past the deleted segments must be
        // durable before anything is deleted.
        self.sync()?;
        let deletable = self.segments[..self.segments.len() - 1]
            .iter()
            .take_while(|s| s.highest_slot <= bound)
            .count();
        for segment in self.segments.drain(..deletable) {
            fs::remove_file(&segment.path).map_err(StorageError::io(&segment.path, "remove"))?;
            // One at a time, oldest first, so a crash leaves a contiguous suffix of segments.
            self.dir.sync()?;
        }
        Ok(deletable)
    }

    /// Syncs everything written, brings the synced record up to date, then durably removes
    /// the loss marker.
    pub fn finish_peer_recovery(&mut self) -> Result<(), StorageError> {
        let marked = self.dir.path().join(loss::MARKER_NAME).exists();
        if self.next_seq == 1 && marked {
            // A log that is still empty after its loss (it was lost whole) would look lost
            // again next time: one frame with the hard state shows it exists.
            let carrier = Batch::new(Some(self.hard_state), Vec::new());
            self.encode(&carrier)?;
            self.push_frame(&carrier)?;
        }
        self.sync()?;
        self.record.flush()?;
        loss::remove_marker(&self.dir)
    }
}

/// Creates segment `index` at its full `size`: header, preallocated space, all durable
/// (file and name) before it is returned. A file left by an earlier attempt is replaced.
fn prepare(dir: &DirHandle, index: u64, size: u64) -> Result<Prepared, StorageError> {
    let path = dir.path().join(segment::file_name(index));
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .map_err(StorageError::io(&path, "create segment"))?;
    file.write_all_at(&segment::encode_header(index, size), 0)
        .map_err(StorageError::io(&path, "write segment header"))?;
    fsutil::allocate(&file, &path, size)?;
    file.sync_all()
        .map_err(StorageError::io(&path, "sync segment"))?;
    dir.sync()?;
    Ok(Prepared {
        index,
        path,
        file,
        size,
    })
}

/// Enlarges a prepared (unused) segment for a batch bigger than a segment.
fn grow(p: &Prepared, size: u64) -> Result<(), StorageError> {
    fsutil::allocate(&p.file, &p.path, size)?;
    p.file
        .write_all_at(&segment::encode_header(p.index, size), 0)
        .and_then(|()| p.file.sync_all())
        .map_err(StorageError::io(&p.path, "grow segment"))
}

/// Zeroes a cut-off tail and restores the segment's size, durably, so the next frame starts
/// right after the last good one and unwritten space reads as zeros again.
fn clear_tail(cut: &Cut) -> Result<(), StorageError> {
    let file = OpenOptions::new()
        .write(true)
        .open(&cut.path)
        .map_err(StorageError::io(&cut.path, "open"))?;
    let zeros = vec![0u8; ZERO_CHUNK_BYTES.min((cut.to - cut.from) as usize)];
    let mut at = cut.from;
    while at < cut.to {
        let n = zeros.len().min((cut.to - at) as usize);
        file.write_all_at(&zeros[..n], at)
            .map_err(StorageError::io(&cut.path, "clear cut-off tail"))?;
        at += n as u64;
    }
    let len = file
        .metadata()
        .map_err(StorageError::io(&cut.path, "stat"))?
        .len();
    if len < cut.size {
        fsutil::allocate(&file, &cut.path, cut.size)?;
    }
    file.sync_all()
        .map_err(StorageError::io(&cut.path, "sync cut segment"))
}

/// `<path>.damaged`, or `<path>.damaged-<n>` if that is taken (never overwrite evidence).
fn damaged_name(path: &Path) -> PathBuf {
    let base = format!("{}.damaged", path.display());
    (1..)
        .map(|n| match n {
            1 => PathBuf::from(&base),
            n => PathBuf::from(format!("{base}-{n}")),
        })
        .find(|p| !p.exists())
        .unwrap_or_else(|| PathBuf::from(base))
}
