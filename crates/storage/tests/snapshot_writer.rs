//! Snapshot files written off the log's thread (`Storage::snapshot_writer`) and adopted
//! after: durable once written, found after a crash before adoption, refused (and removed)
//! when a newer snapshot overtook them.

use synod_storage::{DiskStorage, Options, Storage, StorageError};

#[test]
fn written_then_adopted_snapshots_are_the_newest_and_survive_a_crash_before_adoption() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = DiskStorage::open(dir.path(), Options::default()).unwrap();
    let writer = s
        .snapshot_writer()
        .expect("disk storage writes snapshot files");
    let meta = std::thread::spawn(move || writer.write(10, b"at ten").unwrap())
        .join()
        .unwrap();
    assert!(s.latest_snapshot().unwrap().is_none(), "not adopted yet");
    s.adopt_snapshot(meta).unwrap();
    assert_eq!(&s.latest_snapshot().unwrap().unwrap().data[..], b"at ten");

    // Written, then a crash before the log's thread adopted it: recovery finds it.
    let meta = s
        .snapshot_writer()
        .unwrap()
        .write(20, b"at twenty")
        .unwrap();
    assert_eq!(meta.slot, 20);
    drop(s);
    let s = DiskStorage::open(dir.path(), Options::default()).unwrap();
    let latest = s.latest_snapshot().unwrap().unwrap();
    assert_eq!(
        (latest.meta.slot, &latest.data[..]),
        (20, &b"at twenty"[..])
    );
}

#[test]
fn an_overtaken_snapshot_file_is_refused_and_removed() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = DiskStorage::open(dir.path(), Options::default()).unwrap();
    let meta = s.snapshot_writer().unwrap().write(10, b"ours").unwrap();
    // A snapshot received from a peer, newer, was saved meanwhile.
    s.save_snapshot(30, b"from a peer").unwrap();
    assert!(matches!(
        s.adopt_snapshot(meta),
        Err(StorageError::SnapshotNotNewer {
            slot: 10,
            newest: 30
        })
    ));
    drop(s);
    let s = DiskStorage::open(dir.path(), Options::default()).unwrap();
    assert_eq!(s.latest_snapshot().unwrap().unwrap().meta.slot, 30);
    let files: Vec<String> = walk(dir.path());
    assert!(
        !files.iter().any(|f| f.contains("10")),
        "the overtaken file is gone: {files:?}"
    );
}

fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            out.extend(walk(&e.path()));
        } else {
            out.push(e.file_name().to_string_lossy().to_string());
        }
    }
    out
}
