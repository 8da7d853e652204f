//! The disk side of the `lost-tail` fault: damaging the synced tail of a stopped member's
//! write-ahead log, and telling when the member has recovered from its peers.
//!
//! What this relies on (docs/STORAGE.md; crates/storage/src/segment.rs and disk.rs):
//! - segments are `<data-dir>/log/wal/wal-<index:016x>.log`, so their names sort oldest
//!   first;
//! - a segment is preallocated: a 32-byte header, frames, zeros up to its fixed size. One
//!   prepared ahead and never written holds only zeros after its header, so the newest segment
//!   *holding data* is the newest with a non-zero byte after the header, and its data ends at
//!   its last non-zero byte (the last frame's);
//! - while a member has not finished recovering from a lost tail, `<data-dir>/log/wal/LOST_TAIL`
//!   exists (written before the log is repaired, removed once the end of the recovery is
//!   persisted), and its `Status` lists an error saying it is recovering.

use crate::schedule::TailDamage;
use etcd_client::{Client, ConnectOptions};
use std::fs::{self, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

/// A segment's header; the storage writes no data before its end.
const SEGMENT_HEADER_LEN: usize = 32;
const MARKER: &str = "LOST_TAIL";
/// How often a member recovering from a lost tail is asked whether it is done.
const POLL: Duration = Duration::from_millis(100);

pub fn wal_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("log").join("wal")
}

/// The segments in `wal`, oldest first (none if the directory is missing).
fn segments(wal: &Path) -> io::Result<Vec<PathBuf>> {
    let entries = match fs::read_dir(wal) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut files = Vec::new();
    for entry in entries {
        let path = entry?.path();
        if path.extension().is_some_and(|x| x == "log") {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Just after the last non-zero byte past the header: where the segment's data ends.
fn data_end(bytes: &[u8]) -> Option<usize> {
    let last = bytes.iter().rposition(|&b| b != 0)?;
    (last >= SEGMENT_HEADER_LEN).then_some(last + 1)
}

/// Damages the newest segment holding data in the log of the member whose data directory is
/// `data_dir` (which must not be running), and says what it did.
pub fn damage(data_dir: &Path, how: TailDamage) -> io::Result<String> {
    let wal = wal_dir(data_dir);
    for path in segments(&wal)?.iter().rev() {
        let bytes = fs::read(path)?;
        let Some(end) = data_end(&bytes) else {
            continue;
        };
        let name = path
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        let data = end - SEGMENT_HEADER_LEN;
        return match how {
            TailDamage::Truncate { keep_permille } => {
                // At least one byte of the data goes, and (unless there is only one) one stays.
                let keep =
                    (SEGMENT_HEADER_LEN + 1 + (data - 1) * usize::from(keep_permille) / 1000)
                        .min(end - 1);
                OpenOptions::new()
                    .write(true)
                    .open(path)?
                    .set_len(keep as u64)?;
                Ok(format!(
                    "{name} cut from {} to {keep} bytes (its data ended at byte {end})",
                    bytes.len()
                ))
            }
            TailDamage::Delete => {
                fs::remove_file(path)?;
                Ok(format!("{name} deleted ({data} bytes of data)"))
            }
            TailDamage::Flip { back } => {
                let at = (end - 1)
                    .saturating_sub(usize::from(back))
                    .max(SEGMENT_HEADER_LEN);
                let flipped = bytes[at] ^ 0x40;
                OpenOptions::new()
                    .write(true)
                    .open(path)?
                    .write_all_at(&[flipped], at as u64)?;
                Ok(format!(
                    "{name}: byte {at} flipped from {:#04x} to {flipped:#04x} (its data ended \
                     at byte {end})",
                    bytes[at]
                ))
            }
        };
    }
    Ok(format!(
        "nothing damaged: no segment in {} holds data",
        wal.display()
    ))
}

/// Whether the member whose data directory is `data_dir`, serving at `endpoint`, has finished
/// recovering: it answers `Status` without an error about a recovery, and (asked after it
/// answered, so after its storage was opened) the storage's marker is gone.
async fn recovered(endpoint: &str, data_dir: &Path) -> bool {
    let within = Duration::from_secs(1);
    let options = ConnectOptions::new()
        .with_connect_timeout(within)
        .with_timeout(within);
    let status = async {
        let mut c = Client::connect([endpoint], Some(options)).await.ok()?;
        c.status().await.ok()
    };
    let Ok(Some(status)) = tokio::time::timeout(within * 2, status).await else {
        return false;
    };
    let recovering = status
        .errors()
        .iter()
        .any(|e| e.to_lowercase().contains("recover"));
    !recovering && !marker_present(data_dir)
}

/// Whether the storage still records an unfinished recovery from a lost tail.
pub fn marker_present(data_dir: &Path) -> bool {
    wal_dir(data_dir).join(MARKER).exists()
}

/// A member whose log tail the harness destroyed.
#[derive(Clone, Debug)]
pub struct LostTail {
    pub member: usize,
    /// What was done to its log.
    pub damage: String,
    /// When it was started again after the damage.
    pub restarted: Option<Instant>,
    /// When the harness first saw it recovered (polled every 100 ms).
    pub recovered: Option<Instant>,
    /// Taken out of the cluster since: it stops by itself, nobody waits for its recovery.
    pub removed: bool,
    /// Reported as not recovering (with no fault in force): not waited for again.
    pub stuck: bool,
}

impl LostTail {
    /// From its restart to its recovery (later kills of it included).
    pub fn recovery_time(&self) -> Option<Duration> {
        Some(self.recovered?.saturating_duration_since(self.restarted?))
    }

    fn pending(&self) -> bool {
        self.recovered.is_none() && !self.removed
    }
}

/// Every lost tail of a run, and a watcher per damaged member that notes when it recovered.
#[derive(Debug, Default)]
pub struct Tails {
    inner: Arc<Mutex<Vec<LostTail>>>,
}

fn lock(inner: &Mutex<Vec<LostTail>>) -> MutexGuard<'_, Vec<LostTail>> {
    inner.lock().unwrap_or_else(|p| p.into_inner())
}

impl Tails {
    pub fn damaged(&self, member: usize, damage: String) {
        lock(&self.inner).push(LostTail {
            member,
            damage,
            restarted: None,
            recovered: None,
            removed: false,
            stuck: false,
        });
    }

    /// `member` was started: if that is the first start after its tail was lost, watch it
    /// recover (until it has, or the run is over).
    pub fn restarted(&self, member: usize, endpoint: String, data_dir: PathBuf) {
        let mut all = lock(&self.inner);
        let Some(entry) = all
            .iter()
            .rposition(|t| t.member == member && t.restarted.is_none())
        else {
            return;
        };
        all[entry].restarted = Some(Instant::now());
        let weak: Weak<Mutex<Vec<LostTail>>> = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(POLL).await;
                if weak.strong_count() == 0 {
                    return;
                }
                if recovered(&endpoint, &data_dir).await {
                    if let Some(inner) = weak.upgrade() {
                        lock(&inner)[entry].recovered = Some(Instant::now());
                    }
                    return;
                }
            }
        });
    }

    pub fn removed(&self, member: usize) {
        for t in lock(&self.inner).iter_mut().filter(|t| t.member == member) {
            t.removed = true;
        }
    }

    /// Members still recovering (or not restarted yet) from a lost tail, and whether one of
    /// them was already reported stuck.
    pub fn pending(&self) -> (Vec<usize>, bool) {
        let all = lock(&self.inner);
        let pending = all.iter().filter(|t| t.pending());
        (
            pending.clone().map(|t| t.member).collect(),
            pending.clone().any(|t| t.stuck),
        )
    }

    /// Waits until no member is recovering from a lost tail any more, or `until`; returns
    /// those still recovering then (bar those already reported stuck), now marked stuck.
    pub async fn wait_recovered(&self, until: Instant) -> Vec<usize> {
        loop {
            let (pending, _) = self.pending();
            if pending.is_empty() {
                return pending;
            }
            if Instant::now() >= until {
                let mut all = lock(&self.inner);
                let mut stuck = Vec::new();
                for t in all.iter_mut().filter(|t| t.pending() && !t.stuck) {
                    t.stuck = true;
                    stuck.push(t.member);
                }
                return stuck;
            }
            tokio::time::sleep(POLL).await;
        }
    }

    pub fn all(&self) -> Vec<LostTail> {
        lock(&self.inner).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(data: &[u8], size: usize) -> Vec<u8> {
        let mut s = vec![0xAB; SEGMENT_HEADER_LEN];
        s.extend_from_slice(data);
        s.resize(size, 0);
        s
    }

    /// The newest segment holding data is damaged, not a prepared one after it, and the
    /// damage lands in its data.
    #[test]
    fn damages_the_newest_segment_holding_data() {
        let dir = tempfile::tempdir().unwrap();
        let wal = wal_dir(dir.path());
        fs::create_dir_all(&wal).unwrap();
        let old = wal.join("wal-0000000000000001.log");
        let newest = wal.join("wal-0000000000000002.log");
        let prepared = wal.join("wal-0000000000000003.log");
        let data: Vec<u8> = (1..=100).collect();
        fs::write(&old, segment(&data, 512)).unwrap();
        fs::write(&newest, segment(&data, 512)).unwrap();
        fs::write(&prepared, segment(&[], 512)).unwrap();

        let what = damage(dir.path(), TailDamage::Flip { back: 3 }).unwrap();
        let bytes = fs::read(&newest).unwrap();
        let at = SEGMENT_HEADER_LEN + 100 - 1 - 3;
        assert_eq!(bytes[at], data[96] ^ 0x40, "{what}");
        assert_eq!(fs::read(&old).unwrap(), segment(&data, 512));
        assert_eq!(fs::read(&prepared).unwrap(), segment(&[], 512));

        damage(dir.path(), TailDamage::Truncate { keep_permille: 999 }).unwrap();
        let len = fs::metadata(&newest).unwrap().len() as usize;
        assert_eq!(len, SEGMENT_HEADER_LEN + 100 - 1);
        damage(dir.path(), TailDamage::Truncate { keep_permille: 0 }).unwrap();
        let len = fs::metadata(&newest).unwrap().len() as usize;
        assert_eq!(len, SEGMENT_HEADER_LEN + 1);

        damage(dir.path(), TailDamage::Delete).unwrap();
        assert!(!newest.exists() && old.exists() && prepared.exists());
    }

    #[test]
    fn a_log_without_data_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let what = damage(dir.path(), TailDamage::Delete).unwrap();
        assert!(what.starts_with("nothing damaged"), "{what}");
        fs::create_dir_all(wal_dir(dir.path())).unwrap();
        let only = wal_dir(dir.path()).join("wal-0000000000000001.log");
        fs::write(&only, segment(&[], 512)).unwrap();
        let what = damage(dir.path(), TailDamage::Delete).unwrap();
        assert!(
            what.starts_with("nothing damaged") && only.exists(),
            "{what}"
        );
    }
}
