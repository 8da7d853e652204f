//! Snapshots of the state machine, one file per snapshot: `<dir>/snap/snap-<slot:016x>.snap`.
//!
//! ```text
//! [magic "SYNODSNP"][version: u32 LE][slot: u64 LE][len: u64 LE][crc32c: u32 LE][data: len]
//! ```
//!
//! The checksum covers the header fields before it and the data, so a flipped bit anywhere is
//! caught. A snapshot is written to a `.tmp` file, synced, renamed into place and the
//! directory synced: a crash leaves either no snapshot or a whole one, never a partial file
//! under a snapshot's name. Leftover `.tmp` files are deleted on open.

use crate::error::StorageError;
use crate::fsutil;
use crate::mem_snapshots::{self, MemSnapshotDir};
use bytes::Bytes;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use synod_paxos::Slot;

const MAGIC: [u8; 8] = *b"SYNODSNP";
const VERSION: u32 = 1;
/// Magic, version, slot, length, checksum.
pub const HEADER_LEN: usize = 8 + 4 + 8 + 8 + 4;

/// A snapshot's identity: the slot it was taken at (every slot up to it is applied in it) and
/// the size of its data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnapshotMeta {
    pub slot: Slot,
    pub size: u64,
}

/// A verified snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub meta: SnapshotMeta,
    pub data: Bytes,
}

/// The header (checksum included) of a snapshot of `data` at `slot`.
pub fn header(slot: Slot, data: &[u8]) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..8].copy_from_slice(&MAGIC);
    h[8..12].copy_from_slice(&VERSION.to_le_bytes());
    h[12..20].copy_from_slice(&slot.to_le_bytes());
    h[20..28].copy_from_slice(&(data.len() as u64).to_le_bytes());
    let crc = crc32c::crc32c_append(crc32c::crc32c(&h[..28]), data);
    h[28..].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Verifies a whole snapshot file's contents; returns its slot and the data's byte range.
/// Never panics, whatever `buf` holds.
pub fn decode(buf: &[u8]) -> Result<(Slot, std::ops::Range<usize>), String> {
    let h = buf
        .get(..HEADER_LEN)
        .ok_or_else(|| format!("{} bytes, shorter than the header", buf.len()))?;
    let u64_at = |i: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&h[i..i + 8]);
        u64::from_le_bytes(b)
    };
    let u32_at = |i: usize| u32::from_le_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
    if h[..8] != MAGIC {
        return Err("bad magic".into());
    }
    if u32_at(8) != VERSION {
        return Err(format!("unsupported version {}", u32_at(8)));
    }
    let (slot, len) = (u64_at(12), u64_at(20));
    let data = &buf[HEADER_LEN..];
    if data.len() as u64 != len {
        return Err(format!(
            "header says {len} data bytes, file holds {}",
            data.len()
        ));
    }
    if crc32c::crc32c_append(crc32c::crc32c(&h[..28]), data) != u32_at(28) {
        return Err("checksum mismatch".into());
    }
    Ok((slot, HEADER_LEN..buf.len()))
}

/// The snapshots kept in one directory.
#[derive(Debug)]
pub struct SnapshotStore {
    dir: PathBuf,
    /// Verified at open or written since, oldest first.
    retained: Vec<SnapshotMeta>,
    keep: usize,
}

fn file_name(slot: Slot) -> String {
    format!("snap-{slot:016x}.snap")
}

impl SnapshotStore {
    /// Opens (creating) `dir`. Every snapshot is verified; a damaged one is renamed to
    /// `*.corrupt` (kept for inspection, never served) and reported in the second value.
    /// With `read_only`, nothing on disk changes (no directory created, no leftover removed,
    /// nothing set aside or pruned) and the store is only good for reading.
    pub fn open(
        dir: &Path,
        keep: usize,
        read_only: bool,
    ) -> Result<(SnapshotStore, Vec<(PathBuf, String)>), StorageError> {
        let mut store = SnapshotStore {
            dir: dir.to_path_buf(),
            retained: Vec::new(),
            keep: keep.max(1),
        };
        if read_only && !dir.exists() {
            return Ok((store, Vec::new()));
        }
        if !read_only {
            fsutil::ensure_dir(dir)?;
        }
        let mut damaged = Vec::new();
        let mut changed = false;
        for name in fsutil::file_names(dir)? {
            let path = dir.join(&name);
            if name.ends_with(".snap.tmp") && !read_only {
                // A save that crashed before its rename: never a snapshot.
                fs::remove_file(&path).map_err(StorageError::io(&path, "remove"))?;
                changed = true;
                continue;
            }
            let Some(slot) = fsutil::parse_hex_name(&name, "snap-", ".snap") else {
                continue;
            };
            match store.verify(slot) {
                Ok(meta) => store.retained.push(meta),
                Err(StorageError::SnapshotCorrupt { path, reason }) => {
                    if !read_only {
                        let aside = dir.join(format!("{name}.corrupt"));
                        fs::rename(&path, &aside).map_err(StorageError::io(&path, "rename"))?;
                        changed = true;
                    }
                    damaged.push((path, reason));
                }
                Err(e) => return Err(e),
            }
        }
        store.retained.sort_by_key(|m| m.slot);
        if !read_only {
            changed |= store.prune()?;
        }
        if changed {
            fsutil::sync_dir(dir)?;
        }
        damaged.reverse();
        Ok((store, damaged))
    }

    fn path(&self, slot: Slot) -> PathBuf {
        self.dir.join(file_name(slot))
    }

    /// Reads and verifies the snapshot at `slot`.
    fn read(&self, slot: Slot) -> Result<Snapshot, StorageError> {
        let path = self.path(slot);
        let buf = fs::read(&path).map_err(StorageError::io(&path, "read"))?;
        let corrupt = |reason: String| StorageError::SnapshotCorrupt {
            path: path.clone(),
            reason,
        };
        let (held, range) = decode(&buf).map_err(corrupt)?;
        if held != slot {
            return Err(corrupt(format!(
                "named for slot {slot} but holds slot {held}"
            )));
        }
        let data = Bytes::from(buf).slice(range);
        Ok(Snapshot {
            meta: SnapshotMeta {
                slot,
                size: data.len() as u64,
            },
            data,
        })
    }

    fn verify(&self, slot: Slot) -> Result<SnapshotMeta, StorageError> {
        self.read(slot).map(|s| s.meta)
    }

    pub fn newest(&self) -> Option<SnapshotMeta> {
        self.retained.last().copied()
    }

    pub fn retained_slots(&self) -> Vec<Slot> {
        self.retained.iter().map(|m| m.slot).collect()
    }

    /// The newest snapshot, read back and verified now: damage since open is reported, not
    /// served.
    pub fn latest(&self) -> Result<Option<Snapshot>, StorageError> {
        self.newest().map(|m| self.read(m.slot)).transpose()
    }

    /// Writes a snapshot crash-safely, then drops the oldest beyond the number kept.
    pub fn save(&mut self, slot: Slot, data: &[u8]) -> Result<SnapshotMeta, StorageError> {
        if let Some(newest) = self.newest().filter(|n| n.slot >= slot) {
            return Err(StorageError::SnapshotNotNewer {
                slot,
                newest: newest.slot,
            });
        }
        let meta = self.writer().write(slot, data)?;
        self.adopt(meta)
    }

    /// A handle that writes snapshot files from another thread (`adopt` them here after).
    pub fn writer(&self) -> SnapshotWriter {
        SnapshotWriter {
            target: Target::Dir(self.dir.clone()),
        }
    }

    /// Takes a snapshot file `SnapshotWriter::write` made durable into the store, then drops
    /// the oldest beyond the number kept. A file not newer than the newest snapshot is
    /// deleted and refused (a snapshot received from a peer overtook it).
    pub fn adopt(&mut self, meta: SnapshotMeta) -> Result<SnapshotMeta, StorageError> {
        if let Some(newest) = self.newest().filter(|n| n.slot >= meta.slot) {
            if newest.slot != meta.slot {
                let path = self.path(meta.slot);
                fs::remove_file(&path).map_err(StorageError::io(&path, "remove"))?;
            }
            return Err(StorageError::SnapshotNotNewer {
                slot: meta.slot,
                newest: newest.slot,
            });
        }
        self.retained.push(meta);
        if self.prune()? {
            fsutil::sync_dir(&self.dir)?;
        }
        Ok(meta)
    }

    /// Deletes the oldest snapshots beyond `keep`. True if any was deleted.
    ///
    /// (Files written by a `SnapshotWriter` but never adopted, say because the process
    /// crashed in between, are valid snapshots: recovery finds them like any other.)
    fn prune(&mut self) -> Result<bool, StorageError> {
        let extra = self.retained.len().saturating_sub(self.keep);
        for meta in self.retained.drain(..extra) {
            let path = self.dir.join(file_name(meta.slot));
            fs::remove_file(&path).map_err(StorageError::io(&path, "remove"))?;
        }
        Ok(extra > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn encoded(slot: Slot, data: &[u8]) -> Vec<u8> {
        let mut out = header(slot, data).to_vec();
        out.extend_from_slice(data);
        out
    }

    #[test]
    fn every_single_bit_flip_is_detected() {
        let good = encoded(0x1234, b"state machine bytes");
        assert_eq!(decode(&good).unwrap().0, 0x1234);
        for bit in 0..good.len() * 8 {
            let mut bad = good.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(decode(&bad).is_err(), "flip of bit {bit} went unnoticed");
        }
        for cut in 0..good.len() {
            assert!(decode(&good[..cut]).is_err());
        }
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode(&bytes);
        }

        #[test]
        fn snapshots_round_trip(slot in any::<u64>(), data in proptest::collection::vec(any::<u8>(), 0..512)) {
            let buf = encoded(slot, &data);
            let (s, range) = decode(&buf).unwrap();
            prop_assert_eq!(s, slot);
            prop_assert_eq!(&buf[range], &data[..]);
        }
    }
}

/// Writes snapshot files crash-safely (temporary file, fsync, rename, directory fsync) on
/// whatever thread holds it, so that a large snapshot does not hold up the log's group
/// commits; the storage that made it `adopt`s the result. A file it wrote is durable when
/// `write` returns, but it is not the newest snapshot until adopted; after a crash in between,
/// recovery finds it like any saved one.
#[derive(Clone, Debug)]
pub struct SnapshotWriter {
    target: Target,
}

#[derive(Clone, Debug)]
enum Target {
    /// A `DiskStorage`'s snapshot directory.
    Dir(PathBuf),
    /// A `MemStorage`'s snapshot files: those of the storage it came from, until that
    /// storage crashes (then every write is refused).
    Mem(Arc<Mutex<MemSnapshotDir>>),
}

impl SnapshotWriter {
    pub(crate) fn mem(dir: Arc<Mutex<MemSnapshotDir>>) -> SnapshotWriter {
        SnapshotWriter {
            target: Target::Mem(dir),
        }
    }

    /// Writes the snapshot of every slot up to `slot` and makes it durable. A file of the
    /// same slot is replaced.
    pub fn write(&self, slot: Slot, data: &[u8]) -> Result<SnapshotMeta, StorageError> {
        match &self.target {
            Target::Dir(dir) => write_file(dir, slot, data),
            Target::Mem(dir) => mem_snapshots::write(dir, slot, data),
        }
    }
}

fn write_file(dir: &Path, slot: Slot, data: &[u8]) -> Result<SnapshotMeta, StorageError> {
    let path = dir.join(file_name(slot));
    let tmp = dir.join(format!("{}.tmp", file_name(slot)));
    let write = |f: &mut File| -> std::io::Result<()> {
        f.write_all(&header(slot, data))?;
        f.write_all(data)?;
        f.sync_all()
    };
    File::create(&tmp)
        .and_then(|mut f| write(&mut f))
        .map_err(StorageError::io(&tmp, "write snapshot"))?;
    fs::rename(&tmp, &path).map_err(StorageError::io(&tmp, "rename"))?;
    fsutil::sync_dir(dir)?;
    Ok(SnapshotMeta {
        slot,
        size: data.len() as u64,
    })
}
