//! Group-commit throughput of the write-ahead log against the raw fdatasync rate of the same
//! directory, measured in the same run.
//!
//! ```text
//! cargo run --release -p synod-storage --bin wal_bench -- [--dir PATH] [--seconds S]
//!     [--value-bytes N] [--batches 1,4,16,64,256,1024]
//! ```
//!
//! The default directory is a fresh one under the current directory (not /tmp, which is
//! often tmpfs, where fdatasync costs nothing and the numbers mean nothing). It is deleted at
//! the end. The file system it lives on is printed, because the figures depend on it.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use synod_paxos::{Ballot, Command, HardState, LogRecord, Value};
use synod_storage::{Batch, DiskStorage, Options, Storage};

#[derive(Debug)]
struct Args {
    dir: Option<PathBuf>,
    seconds: f64,
    value_bytes: usize,
    batches: Vec<usize>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        dir: None,
        seconds: 2.0,
        value_bytes: 256,
        batches: vec![1, 4, 16, 64, 256, 1024],
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--dir" => args.dir = Some(PathBuf::from(value()?)),
            "--seconds" => args.seconds = value()?.parse().map_err(|e| format!("{e}"))?,
            "--value-bytes" => args.value_bytes = value()?.parse().map_err(|e| format!("{e}"))?,
            "--batches" => {
                args.batches = value()?
                    .split(',')
                    .map(|s| s.trim().parse::<usize>().map_err(|e| format!("{e}")))
                    .collect::<Result<_, _>>()?
            }
            "-h" | "--help" => {
                return Err(
                    "usage: wal_bench [--dir PATH] [--seconds S] [--value-bytes N] \
                            [--batches 1,4,16,...]"
                        .into(),
                )
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(args)
}

/// The file system holding `path`, from /proc/mounts (the longest mount point above it).
fn file_system(path: &Path) -> String {
    let path = fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let mounts = fs::read_to_string("/proc/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|line| {
            let mut f = line.split_whitespace();
            let (dev, point, fs_type) = (f.next()?, f.next()?, f.next()?);
            path.starts_with(point)
                .then(|| (point.len(), format!("{fs_type} ({dev} on {point})")))
        })
        .max_by_key(|(len, _)| *len)
        .map_or_else(|| "unknown".into(), |(_, desc)| desc)
}

/// Appends 4 KiB and fdatasyncs, in a loop: the floor every durable write pays.
fn raw_fdatasync_rate(dir: &Path, seconds: f64) -> std::io::Result<f64> {
    let path = dir.join("raw-fdatasync.dat");
    let mut file = OpenOptions::new().create(true).append(true).open(&path)?;
    let block = vec![0xA5u8; 4096];
    let (start, mut n) = (Instant::now(), 0u64);
    while start.elapsed().as_secs_f64() < seconds {
        file.write_all(&block)?;
        file.sync_data()?;
        n += 1;
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    fs::remove_file(&path)?;
    Ok(rate)
}

struct WalRun {
    syncs_per_s: f64,
    records_per_s: f64,
    mb_per_s: f64,
    latency: Duration,
}

/// Appends batches of `batch` records (one write + one fdatasync each) for `seconds`.
fn wal_rate(dir: &Path, batch: usize, value_bytes: usize, seconds: f64) -> Result<WalRun, String> {
    let mut s = DiskStorage::open(dir, Options::default()).map_err(|e| e.to_string())?;
    let value = Arc::new(Value::Commands(vec![Command::new(
        7,
        1,
        vec![0x5Au8; value_bytes],
    )]));
    let ballot = Ballot::new(1, 1);
    let (start, mut syncs, mut next_slot) = (Instant::now(), 0u64, 1u64);
    while start.elapsed().as_secs_f64() < seconds {
        let records = (next_slot..next_slot + batch as u64)
            .map(|slot| LogRecord {
                slot,
                ballot,
                value: value.clone(),
                chosen: false,
            })
            .collect();
        next_slot += batch as u64;
        let hard_state = HardState {
            promised: ballot,
            commit: next_slot.saturating_sub(batch as u64 * 2),
        };
        s.append(&Batch::new(Some(hard_state), records))
            .map_err(|e| e.to_string())?;
        syncs += 1;
    }
    let elapsed = start.elapsed();
    let records = syncs * batch as u64;
    Ok(WalRun {
        syncs_per_s: syncs as f64 / elapsed.as_secs_f64(),
        records_per_s: records as f64 / elapsed.as_secs_f64(),
        mb_per_s: (records * value_bytes as u64) as f64 / elapsed.as_secs_f64() / 1e6,
        latency: elapsed / syncs.max(1) as u32,
    })
}

fn run(args: &Args, dir: &Path) -> Result<(), String> {
    println!("directory:   {}", dir.display());
    println!("file system: {}", file_system(dir));
    println!(
        "records of {} value bytes; {} s per measurement\n",
        args.value_bytes, args.seconds
    );
    // The disk's rate drifts (shared virtual disks especially), so each WAL run is paired
    // with a raw measurement taken right before it, and the ratio uses that pair.
    let mut rows = Vec::new();
    for (i, &batch) in args.batches.iter().enumerate() {
        let raw = raw_fdatasync_rate(dir, args.seconds / 2.0).map_err(|e| e.to_string())?;
        let wal_dir = dir.join(format!("wal-{i}"));
        rows.push((
            batch,
            raw,
            wal_rate(&wal_dir, batch, args.value_bytes, args.seconds)?,
        ));
        fs::remove_dir_all(&wal_dir).map_err(|e| e.to_string())?;
    }
    println!(
        "{:>7} {:>8} {:>10} {:>7} {:>12} {:>9} {:>10}",
        "batch", "raw/s", "syncs/s", "÷ raw", "records/s", "MB/s", "latency"
    );
    for (batch, raw, r) in rows {
        println!(
            "{batch:>7} {raw:>8.0} {:>10.0} {:>7.2} {:>12.0} {:>9.2} {:>8.2}ms",
            r.syncs_per_s,
            r.syncs_per_s / raw,
            r.records_per_s,
            r.mb_per_s,
            r.latency.as_secs_f64() * 1e3
        );
    }
    println!(
        "\nraw/s: write 4 KiB + fdatasync on a plain file in the same directory, measured \
         just before each row; ÷ raw = WAL syncs/s over it"
    );
    Ok(())
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let base = args.dir.clone().unwrap_or_else(|| PathBuf::from("."));
    let dir = base.join(format!("wal-bench-{}", std::process::id()));
    if let Err(e) = fs::create_dir_all(&dir) {
        eprintln!("cannot create {}: {e}", dir.display());
        std::process::exit(1);
    }
    let result = run(&args, &dir);
    let _ = fs::remove_dir_all(&dir);
    if let Err(e) = result {
        eprintln!("wal_bench: {e}");
        std::process::exit(1);
    }
}
