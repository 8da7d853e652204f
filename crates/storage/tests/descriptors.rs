//! The log rotates with the process's descriptor table full (say, many idle client
//! connections): every file it needs for that is opened ahead, and a rotation frees the full
//! segment's descriptor before it prepares the next one. Where a descriptor is needed and
//! cannot be had, that is an error, never a panic. (A test binary of its own: it exhausts the
//! process's descriptors.)

mod common;

use common::{batches, Model};
use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
use std::fs::File;
use synod_storage::{DiskStorage, Options, Storage, StorageError};
use tempfile::TempDir;

/// Opens descriptors until there are none left.
fn take_every_descriptor(hog: &mut Vec<File>) {
    loop {
        match File::open("/dev/null") {
            Ok(f) => hog.push(f),
            Err(e) => {
                let emfile = rustix::io::Errno::MFILE.raw_os_error();
                assert_eq!(e.raw_os_error(), Some(emfile), "{e}");
                return;
            }
        }
    }
}

#[test]
fn the_log_rotates_with_no_descriptor_left() {
    let tmp = TempDir::new_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let dir = tmp.path().join("data");
    let options = Options {
        segment_bytes_max: 4096,
        snapshots_kept: 2,
    };
    let all = batches(31, 400);
    let mut s = DiskStorage::open(&dir, options).unwrap();
    s.append(&all[0]).unwrap();
    let segments = s.segment_count();

    // A small limit, so filling the table is quick.
    let limit = getrlimit(Resource::Nofile);
    let small = Rlimit {
        current: Some(256.min(limit.maximum.unwrap_or(256))),
        maximum: limit.maximum,
    };
    setrlimit(Resource::Nofile, small).unwrap();
    let mut hog = Vec::new();
    take_every_descriptor(&mut hog);
    // Anything the log lets go of is taken at once, as a busy server would.
    for b in &all[1..] {
        s.append(b).unwrap();
        take_every_descriptor(&mut hog);
    }
    assert!(
        s.segment_count() > segments + 5,
        "rotated {} times",
        s.segment_count() - segments
    );
    s.compact(0).unwrap();

    // Opening needs descriptors: without any, that is an error.
    let other = tmp.path().join("other");
    std::fs::create_dir_all(other.join("wal")).unwrap();
    match DiskStorage::open(&other, options) {
        Err(e @ StorageError::Io { .. }) => assert!(e.to_string().contains("open"), "{e}"),
        other => panic!("expected an I/O error, got {other:?}"),
    }

    drop(hog);
    setrlimit(Resource::Nofile, limit).unwrap();
    drop(s);
    let s = DiskStorage::open(&dir, options).unwrap();
    assert_eq!(
        s.recovered().durable_state(),
        Model::after(&all).durable_state(0)
    );
    assert!(s.recovered().lost_tail().is_none());
}
