//! Reading a log directory at open: replays every good frame into [`Recovered`] and decides,
//! without changing anything, what the log's end is (clean, a torn unsynced tail, or a lost
//! synced tail) and what must be repaired. [`crate::wal::Wal::open`] carries out the plan;
//! `DiskStorage::inspect` only reports it.
//!
//! The chain of segments: every segment but the newest one holding data ends with a seal naming
//! the next index. After the newest one holding data come at most the segment it is sealed
//! into (when sealed) and one prepared spare, both holding only zeros after their header.

use crate::error::StorageError;
use crate::fsutil;
use crate::loss::{self, LossKind, LossReport};
use crate::record::{self, RecordState};
use crate::recovered::{Recovered, TornTail};
use crate::segment::{self, Header, HeaderError, Stop};
use std::fs;
use std::path::{Path, PathBuf};
use synod_paxos::Slot;

#[derive(Clone, Debug)]
pub struct SegmentInfo {
    pub index: u64,
    pub path: PathBuf,
    /// The seq of its first frame.
    pub first_seq: u64,
    /// The highest slot of any record in the segment: it may be deleted only once a snapshot
    /// covers this slot.
    pub highest_slot: Slot,
}

/// What becomes of the segment appended to next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Active {
    /// Append to the existing file at `end`.
    Reuse {
        size: u64,
        end: u64,
        has_frames: bool,
    },
    /// Create it (fresh log, or the old file is set aside).
    Create,
}

/// Bytes of the active segment to zero (a torn or lost tail), and its size to restore.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cut {
    pub path: PathBuf,
    pub from: u64,
    pub to: u64,
    pub size: u64,
}

#[derive(Debug)]
pub struct Plan {
    /// Segments kept, oldest first; the active one is last unless it is to be created.
    pub segments: Vec<SegmentInfo>,
    pub active_index: u64,
    pub active: Active,
    /// The seq the next frame carries.
    pub next_seq: u64,
    pub cut: Option<Cut>,
    /// Segments to copy aside as evidence before the repair (a loss only).
    pub evidence: Vec<PathBuf>,
    /// The active segment's file is beyond use (damaged header): moved aside as evidence.
    pub replace_active: Option<PathBuf>,
    /// A prepared, unused segment at `active_index + 1` to keep as the spare: its size.
    pub spare: Option<u64>,
    /// Unused segments to delete.
    pub remove: Vec<PathBuf>,
    pub record: RecordState,
    /// The loss was found now (rather than reported again from the marker).
    pub new_loss: bool,
}

impl Plan {
    /// The seq the log starts at: 1 unless it was compacted.
    pub fn first_seq(&self) -> u64 {
        self.segments.first().map_or(self.next_seq, |s| s.first_seq)
    }
}

/// A prepared segment after the newest one holding data.
#[derive(Debug)]
struct Unused {
    index: u64,
    path: PathBuf,
    header: Result<Header, HeaderError>,
    len: u64,
}

impl Unused {
    /// Whole and of the size its header says: fit to be appended to.
    fn usable(&self) -> Option<u64> {
        match self.header {
            Ok(h) if h.index == self.index && h.size == self.len => Some(h.size),
            _ => None,
        }
    }
}

/// The newest segment holding data, as scanned.
#[derive(Debug)]
enum Tail {
    Scanned {
        index: u64,
        path: PathBuf,
        header: Header,
        len: u64,
        scan: segment::Scan,
    },
    /// Its header is damaged: nothing in it can be trusted.
    Dropped {
        index: u64,
        path: PathBuf,
        why: &'static str,
    },
}

fn read(path: &Path) -> Result<Vec<u8>, StorageError> {
    fs::read(path).map_err(StorageError::io(path, "read"))
}

fn old_format(path: &Path) -> StorageError {
    unsupported(
        path,
        "a segment without a header, written by a Synod release before the preallocated log \
         format"
            .into(),
    )
}

fn unsupported(path: &Path, what: String) -> StorageError {
    StorageError::UnsupportedFormat {
        path: path.to_path_buf(),
        reason: what,
    }
}

/// Replays the log in `dir` into `recovered` and plans its repair; changes nothing on disk.
pub fn scan(dir: &Path, recovered: &mut Recovered) -> Result<Plan, StorageError> {
    let exists = dir.is_dir();
    let mut indices: Vec<u64> = if exists {
        fsutil::file_names(dir)?
            .iter()
            .filter_map(|n| segment::parse_name(n))
            .collect()
    } else {
        Vec::new()
    };
    indices.sort_unstable();
    let marker = if exists {
        loss::read_marker(dir)?
    } else {
        None
    };
    let record = if exists {
        record::read(dir)?
    } else {
        RecordState::Missing
    };

    // Segments without data at the end (prepared, never written), read newest first: one
    // file in memory at a time.
    let mut unused = Vec::new();
    let mut newest_data = None;
    while let Some(&index) = indices.last() {
        let path = dir.join(segment::file_name(index));
        let data = read(&path)?;
        if segment::has_data(&data) {
            newest_data = Some(data);
            break;
        }
        let header = segment::decode_header(&data);
        if header == Err(HeaderError::OldFormat) {
            return Err(old_format(&path));
        }
        unused.push(Unused {
            index,
            header,
            len: data.len() as u64,
            path,
        });
        indices.pop();
    }
    unused.reverse();

    let mut segments = Vec::new();
    let mut expected: Option<u64> = None;
    let mut tail = None;
    for (i, &index) in indices.iter().enumerate() {
        let path = dir.join(segment::file_name(index));
        let last = i + 1 == indices.len();
        let data = match newest_data.take().filter(|_| last) {
            Some(d) => d,
            None => read(&path)?,
        };
        if i > 0 && index != indices[i - 1] + 1 {
            return Err(StorageError::corrupt(
                &path,
                0,
                format!(
                    "segment {index} follows segment {}: the segments in between are missing",
                    indices[i - 1]
                ),
            ));
        }
        let header = match segment::decode_header(&data) {
            Ok(h) => h,
            Err(HeaderError::OldFormat) => return Err(old_format(&path)),
            Err(HeaderError::Version(v)) => {
                return Err(unsupported(&path, format!("segment format version {v}")))
            }
            Err(HeaderError::Damaged(why)) if last => {
                tail = Some(Tail::Dropped { index, path, why });
                break;
            }
            Err(HeaderError::Damaged(why)) => {
                return Err(StorageError::corrupt(
                    &path,
                    0,
                    format!("segment header: {why}"),
                ))
            }
        };
        let len = data.len() as u64;
        if header.index != index {
            return Err(StorageError::corrupt(
                &path,
                0,
                format!("the header names segment {}", header.index),
            ));
        }
        if len > header.size || (len < header.size && !last) {
            return Err(StorageError::corrupt(
                &path,
                len.min(header.size),
                format!(
                    "the segment is {len} bytes, its header says {}",
                    header.size
                ),
            ));
        }
        let scan = segment::scan(&path, &data, expected, |offset, logged| match logged.seal {
            Some(_) => Ok(()),
            None => recovered.replay(&logged.batch, &path, offset),
        })?;
        if !last {
            check_sealed(&path, index, &scan)?;
        }
        segments.push(SegmentInfo {
            index,
            path: path.clone(),
            first_seq: scan.first_seq.unwrap_or(scan.next_seq),
            highest_slot: scan.highest_slot,
        });
        expected = Some(scan.next_seq);
        if last {
            tail = Some(Tail::Scanned {
                index,
                path,
                header,
                len,
                scan,
            });
        }
    }

    let mut plan = Plan {
        segments,
        active_index: unused.first().map_or(1, |u| u.index),
        active: Active::Create,
        next_seq: expected.unwrap_or(1),
        cut: None,
        evidence: Vec::new(),
        replace_active: None,
        spare: None,
        remove: Vec::new(),
        record,
        new_loss: false,
    };
    let mut lost = None;
    let had_data = tail.is_some();
    match tail {
        None => {
            plan.next_seq = 1;
            let recorded = matches!(record, RecordState::Synced(s) if s > 0);
            // (With the marker, this is the repaired state of an earlier loss: reported below.)
            if (recovered.snapshot.is_some() || recorded) && marker.is_none() {
                lost = Some(loss_at(
                    LossKind::LogMissing,
                    dir,
                    0,
                    "no log segment holds data, yet snapshots or the synced record show there \
                     was a log"
                        .into(),
                ));
            }
            if let Some(size) = unused.first().and_then(Unused::usable) {
                plan.active = Active::Reuse {
                    size,
                    end: segment::HEADER_LEN as u64,
                    has_frames: false,
                };
            }
        }
        Some(Tail::Dropped { index, path, why }) => {
            plan.active_index = index;
            plan.replace_active = Some(path.clone());
            lost = Some(loss_at(
                LossKind::DamagedFrame,
                &path,
                0,
                format!(
                    "the newest segment's header is damaged ({why}): none of it can be trusted"
                ),
            ));
        }
        Some(Tail::Scanned {
            index,
            path,
            header,
            len,
            scan,
        }) => {
            let dirty_end = match &scan.stop {
                Stop::Damaged {
                    witness: Some(_),
                    reason,
                    ..
                } => return Err(StorageError::corrupt(&path, scan.end, reason.clone())),
                Stop::Damaged { dirty_end, .. } | Stop::Torn { dirty_end } => *dirty_end,
                Stop::Clean => scan.end,
            };
            if len < header.size {
                lost = Some(loss_at(
                    LossKind::TruncatedSegment,
                    &path,
                    scan.end,
                    format!(
                        "the newest segment is {len} bytes where {} were preallocated: its \
                         tail was cut off",
                        header.size
                    ),
                ));
            } else if let Stop::Damaged { reason, .. } = &scan.stop {
                lost = Some(loss_at(
                    LossKind::DamagedFrame,
                    &path,
                    scan.end,
                    reason.clone(),
                ));
            } else if let Stop::Torn { dirty_end } = scan.stop {
                recovered.report.torn_tail = Some(TornTail {
                    path: path.clone(),
                    offset: scan.end,
                    bytes_dropped: dirty_end - scan.end,
                });
            }
            match scan.seal {
                Some(next) if next != index + 1 => {
                    return Err(StorageError::corrupt(
                        &path,
                        scan.end,
                        format!(
                            "the seal names segment {next} as the next, not {}",
                            index + 1
                        ),
                    ))
                }
                Some(next) => {
                    plan.active_index = next;
                    match unused.first().filter(|u| u.index == next) {
                        Some(u) => {
                            if let Some(size) = u.usable() {
                                plan.active = Active::Reuse {
                                    size,
                                    end: segment::HEADER_LEN as u64,
                                    has_frames: false,
                                };
                            }
                        }
                        None if lost.is_none() => {
                            lost = Some(loss_at(
                                LossKind::MissingSegment,
                                &dir.join(segment::file_name(next)),
                                0,
                                format!(
                                    "segment {index} is sealed and names segment {next} as \
                                     the next, which is gone"
                                ),
                            ));
                        }
                        None => {}
                    }
                }
                None => {
                    plan.active_index = index;
                    plan.active = Active::Reuse {
                        size: header.size,
                        end: scan.end,
                        has_frames: scan.first_seq.is_some(),
                    };
                    if len < header.size || dirty_end > scan.end {
                        plan.cut = Some(Cut {
                            path: path.clone(),
                            from: scan.end,
                            to: dirty_end.min(len).max(scan.end),
                            size: header.size,
                        });
                    }
                }
            }
            if lost.is_some() && plan.cut.is_some() {
                plan.evidence.push(path);
            }
        }
    }
    if matches!(plan.active, Active::Create) {
        // The file at the active index (if any) is re-created.
        plan.segments.retain(|s| s.index != plan.active_index);
    }

    // Prepared segments: the next one is prepared only once the one before it is in use, so
    // one beyond the active segment's successor means a segment in use was lost.
    for u in &unused {
        if u.index > plan.active_index + 1 && lost.is_none() {
            lost = Some(loss_at(
                LossKind::MissingSegment,
                &u.path,
                0,
                format!(
                    "segment {} was prepared, so segment {} was in use, yet the log ends in \
                     segment {} without a seal naming it",
                    u.index,
                    u.index - 1,
                    plan.active_index
                ),
            ));
        }
        let is_active = u.index == plan.active_index && plan.active != Active::Create;
        let spare = u.index == plan.active_index + 1 && u.usable().is_some();
        if spare {
            plan.spare = u.usable();
        } else if !is_active {
            plan.remove.push(u.path.clone());
        }
    }

    let kept_upto = plan.next_seq - 1;
    if lost.is_none() && had_data {
        lost = match record {
            RecordState::Synced(s) if s > kept_upto => Some(loss_at(
                LossKind::BelowSyncedRecord,
                &plan
                    .segments
                    .last()
                    .map_or_else(|| dir.to_path_buf(), |s| s.path.clone()),
                match &plan.active {
                    Active::Reuse { end, .. } => *end,
                    Active::Create => 0,
                },
                format!(
                    "the synced record says frame seq {s} was durable, but the log's good \
                     frames end at seq {kept_upto}"
                ),
            )),
            RecordState::Synced(_) => None,
            RecordState::Missing | RecordState::Unreadable => Some(loss_at(
                LossKind::SyncedRecordUnreadable,
                &dir.join(record::FILE_NAME),
                0,
                "the synced record is missing or unreadable: how far the log was synced is \
                 unknown"
                    .into(),
            )),
        };
    }
    plan.new_loss = lost.is_some();
    let lost = lost.or_else(|| marker.map(|text| loss::unrecovered(dir, text, kept_upto)));
    recovered.report.lost_tail = lost.map(|mut l| {
        l.kept_upto = kept_upto;
        l
    });
    Ok(plan)
}

fn loss_at(kind: LossKind, path: &Path, offset: u64, detail: String) -> LossReport {
    LossReport {
        kind,
        path: path.to_path_buf(),
        offset,
        kept_upto: 0,
        detail,
        set_aside: Vec::new(),
    }
}

/// A segment followed by one holding data must end with a seal naming it, with nothing bad
/// before: it was synced whole before the next one was written.
fn check_sealed(path: &Path, index: u64, scan: &segment::Scan) -> Result<(), StorageError> {
    let reason = match (&scan.stop, scan.seal) {
        (Stop::Clean, Some(next)) if next == index + 1 => return Ok(()),
        (Stop::Clean, Some(next)) => format!("the seal names segment {next}, not {}", index + 1),
        (Stop::Clean, None) => {
            "the segment ends without a seal, yet a later segment holds data".into()
        }
        (Stop::Torn { .. }, _) => {
            "a frame is incomplete or damaged in a segment that was synced whole".into()
        }
        (Stop::Damaged { reason, .. }, _) => {
            format!("{reason}, in a segment that was synced whole")
        }
    };
    Err(StorageError::corrupt(path, scan.end, reason))
}
