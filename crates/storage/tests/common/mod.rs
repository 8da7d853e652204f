//! Shared by the storage tests: a reference model of what recovery must yield, and a
//! deterministic generator of batches.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Arc;
use synod_paxos::{Ballot, Command, DurableState, HardState, LogRecord, Slot, Value};
use synod_storage::Batch;

/// What recovery must yield after a sequence of batches: the latest hard state and the
/// latest record per slot above the snapshot.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Model {
    pub hard_state: HardState,
    pub records: BTreeMap<Slot, LogRecord>,
}

impl Model {
    pub fn apply(&mut self, batch: &Batch) {
        if let Some(hs) = batch.hard_state {
            self.hard_state = hs;
        }
        for r in &batch.records {
            self.records.insert(r.slot, r.clone());
        }
    }

    pub fn after(batches: &[Batch]) -> Model {
        let mut m = Model::default();
        batches.iter().for_each(|b| m.apply(b));
        m
    }

    pub fn durable_state(&self, snapshot_slot: Slot) -> DurableState {
        DurableState {
            hard_state: self.hard_state,
            records: self
                .records
                .range(snapshot_slot + 1..)
                .map(|(_, r)| r.clone())
                .collect(),
            snapshot: None,
        }
    }
}

/// A small deterministic PRNG (xorshift64*), so failures replay.
#[derive(Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

pub fn record(slot: Slot, round: u64, payload_len: usize, chosen: bool) -> LogRecord {
    LogRecord {
        slot,
        ballot: Ballot::new(round, 1 + slot % 3),
        value: Arc::new(Value::Commands(vec![Command::new(
            slot,
            round,
            vec![(slot as u8) ^ (round as u8); payload_len],
        )])),
        chosen,
    }
}

/// `n` batches like an acceptor writes them: mostly new slots in order, some rewrites of
/// recent slots under a higher ballot, a hard state in some, its promise never decreasing.
pub fn batches(seed: u64, n: usize) -> Vec<Batch> {
    let mut rng = Rng::new(seed);
    let mut next_slot = 1;
    let mut round = 1;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let mut records = Vec::new();
        for _ in 0..rng.below(4) {
            let slot = if next_slot > 3 && rng.below(4) == 0 {
                next_slot - 1 - rng.below(3)
            } else {
                next_slot += 1;
                next_slot - 1
            };
            records.push(record(
                slot,
                round,
                rng.below(48) as usize,
                rng.below(5) == 0,
            ));
        }
        let hard_state = (records.is_empty() || rng.below(3) == 0).then(|| {
            round += rng.below(2);
            HardState {
                promised: Ballot::new(round, 1 + rng.below(3)),
                commit: next_slot.saturating_sub(2),
            }
        });
        // A higher round may tie with a lower node id; keep the promise monotonic.
        let hard_state = hard_state.map(|mut hs| {
            if let Some(prev) = out.iter().rev().find_map(|b: &Batch| b.hard_state) {
                hs.promised = hs.promised.max(prev.promised);
            }
            hs
        });
        out.push(Batch::new(hard_state, records));
    }
    out
}

/// The segment file layout, as the tests see it (docs/STORAGE.md, "Segments").
pub const SEGMENT_HEADER_LEN: usize = 32;

/// The log segments of a data directory, oldest first.
pub fn wal_segments(data_dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(data_dir.join("wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    files.sort();
    files
}

/// The newest segment holding frames (after it come only prepared, unused segments).
pub fn newest_data_segment(data_dir: &std::path::Path) -> std::path::PathBuf {
    wal_segments(data_dir)
        .into_iter()
        .rev()
        .find(|p| {
            let data = std::fs::read(p).unwrap();
            data[SEGMENT_HEADER_LEN.min(data.len())..]
                .iter()
                .any(|&b| b != 0)
        })
        .expect("a segment with data")
}

/// Where each whole frame of a segment's contents ends, in order.
pub fn frame_ends(bytes: &[u8]) -> Vec<usize> {
    let mut ends = Vec::new();
    let mut pos = SEGMENT_HEADER_LEN;
    while pos + 12 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[pos..pos + 4].try_into().unwrap()) as usize;
        let len_ok = crc32c::crc32c(&bytes[pos..pos + 4]).to_le_bytes() == bytes[pos + 4..pos + 8];
        if !len_ok || pos + 12 + len > bytes.len() {
            break;
        }
        pos += 12 + len;
        ends.push(pos);
    }
    ends
}

/// Overwrites bytes in place (keeping the file's size, as a preallocated segment keeps it).
pub fn overwrite(path: &std::path::Path, offset: usize, bytes: &[u8]) {
    use std::os::unix::fs::FileExt;
    let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    file.write_all_at(bytes, offset as u64).unwrap();
}
