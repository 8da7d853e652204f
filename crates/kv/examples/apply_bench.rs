//! How fast the state machine applies puts, serves point gets and takes snapshots.
//!
//! Applies `puts` encoded put commands through `KvStore::apply_encoded`, as a replica's core
//! thread does (one client, increasing sequence numbers), with synod-bench's put workload:
//! 16-byte keys drawn uniformly from `keys`, 256-byte values. Every `snapshot_every` puts it
//! takes a snapshot, as `--snapshot-count` makes the server do: the view is taken on the
//! applying thread (that is what stalls the core) and encoded on another thread while the
//! puts go on (what the server does with it). Nothing ever compacts, so the store and its
//! snapshots grow with every put, as in the benchmark. Then it times `gets` point gets.
//!
//! ```sh
//! cargo run --release -p synod-kv --example apply_bench -- [puts] [snapshot_every] [keys] [gets] [mode]
//! # defaults: 1000000 100000 10000 1000000 1
//! ```
//!
//! `mode`: 1 encodes while the puts go on, as the server does; 0 waits for each encoding to
//! finish before applying more, so the puts run with no view alive (the store's own cost);
//! 2 waits too, but keeps a second view alive through each interval, so the puts pay all
//! the copy-on-write a view can cause, without an encoder competing for the CPU.
//!
//! Per snapshot interval it prints the puts per CPU-second of the applying thread in that
//! interval (apply only: CPU time rather than wall time, so a busy machine disturbs it less),
//! the wall time the snapshot took on the applying thread ("take") and the previous one's
//! encoding on its own thread ("encode").

use bytes::Bytes;
use std::time::{Duration, Instant};
use synod_kv::{encode_request, KvStore, PutRequest, RangeRequest, Request};

/// Payloads are encoded up front (encoding is the proposer's work, not the state machine's)
/// and reused round-robin; their keys are still uniform.
const PAYLOADS: usize = 1 << 16;

fn arg(n: usize, default: u64) -> u64 {
    std::env::args()
        .nth(n)
        .map(|a| a.parse().expect("arguments are integers"))
        .unwrap_or(default)
}

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

/// CPU time this thread has run (Linux's schedstat, in ns): unlike wall time, it hardly
/// depends on what else the machine is doing. Zero where unavailable.
fn thread_cpu() -> Duration {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .map_or(Duration::ZERO, Duration::from_nanos)
}

fn key(i: u64) -> Bytes {
    Bytes::from(format!("k{i:015}"))
}

/// Takes a snapshot of `store` on this thread; returns how long that took and the work left
/// for another thread (which returns the encoded size).
fn take(store: &KvStore) -> (Duration, impl FnOnce() -> usize + Send + 'static) {
    let started = Instant::now();
    let view = store.snapshot_view();
    (started.elapsed(), move || view.encode().len())
}

fn main() {
    let puts = arg(1, 1_000_000);
    let snapshot_every = arg(2, 100_000).max(1);
    let keys = arg(3, 10_000).max(1);
    let gets = arg(4, 1_000_000);
    let mode = arg(5, 1);
    let mut held = None;
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let value = Bytes::from(vec![b'v'; 256]);
    let payloads: Vec<Bytes> = (0..PAYLOADS)
        .map(|_| {
            encode_request(&Request::Put(PutRequest::new(
                key(rng.below(keys)),
                value.clone(),
            )))
        })
        .collect();

    let mut store = KvStore::new();
    let mut applied = 0u64;
    let mut apply_time = Duration::ZERO;
    let mut apply_cpu = Duration::ZERO;
    let mut take_time = Duration::ZERO;
    let mut encoder: Option<std::thread::JoinHandle<(usize, Duration)>> = None;
    println!(
        "{puts} puts, a snapshot every {snapshot_every}, {keys} keys, 256-byte values\n\
         interval  puts/cpu-s take ms   encode ms  snapshot MB"
    );
    let mut interval = 0;
    while applied < puts {
        let n = snapshot_every.min(puts - applied);
        let started = Instant::now();
        let cpu = thread_cpu();
        for _ in 0..n {
            applied += 1;
            let payload = &payloads[applied as usize % PAYLOADS];
            store
                .apply_encoded(1, applied, payload)
                .expect("a put succeeds");
        }
        let took = started.elapsed();
        let took_cpu = thread_cpu().saturating_sub(cpu);
        apply_time += took;
        apply_cpu += took_cpu;
        interval += 1;
        let rate = n as f64 / took_cpu.as_secs_f64();
        // The previous snapshot's encoder ran during this interval; report it now.
        let prev = encoder.take().map(|h| h.join().expect("encoder"));
        if n < snapshot_every {
            println!("{interval:>8}  {rate:>9.0}");
            break;
        }
        if mode == 2 {
            held = Some(store.snapshot_view());
        }
        let (took_here, encode) = take(&store);
        take_time += took_here;
        let handle = std::thread::Builder::new()
            .name("encoder".into())
            .spawn(move || {
                let started = Instant::now();
                let bytes = encode();
                (bytes, started.elapsed())
            })
            .expect("a thread starts");
        if mode != 1 {
            // Wait for it: the next interval then measures the puts alone, including
            // what they pay for the snapshot (copy-on-write), without the encoder's
            // competition for CPU and memory bandwidth.
            while !handle.is_finished() {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        encoder = Some(handle);
        match prev {
            Some((bytes, t)) => println!(
                "{interval:>8}  {rate:>9.0}  {:>8.3}  (prev {:>7.1})  {:>8.1}",
                took_here.as_secs_f64() * 1e3,
                t.as_secs_f64() * 1e3,
                bytes as f64 / 1e6
            ),
            None => println!(
                "{interval:>8}  {rate:>9.0}  {:>8.3}",
                took_here.as_secs_f64() * 1e3
            ),
        }
    }
    drop(held);
    if let Some(h) = encoder.take() {
        let (bytes, t) = h.join().expect("encoder");
        println!(
            "last snapshot: encode {:.1} ms, {:.1} MB",
            t.as_secs_f64() * 1e3,
            bytes as f64 / 1e6
        );
    }

    let reads: Vec<RangeRequest> = (0..PAYLOADS)
        .map(|_| RangeRequest::key(key(rng.below(keys))))
        .collect();
    let started = thread_cpu();
    let mut found = 0usize;
    for i in 0..gets as usize {
        found += store.range(&reads[i % PAYLOADS]).expect("a get").kvs.len();
    }
    let get_cpu = thread_cpu().saturating_sub(started);
    assert!(gets == 0 || found > 0);

    println!(
        "puts per CPU-second (apply only): {:.0}\n\
         puts/s (wall, apply only): {:.0}\n\
         puts/s (wall, with the snapshot takes on the applying thread): {:.0}\n\
         snapshot takes on the applying thread: {:.3} ms in all\n\
         point gets per CPU-second: {:.0}\n\
         store: {} keys, revision {}, ~{:.1} MB",
        applied as f64 / apply_cpu.as_secs_f64(),
        applied as f64 / apply_time.as_secs_f64(),
        applied as f64 / (apply_time + take_time).as_secs_f64(),
        take_time.as_secs_f64() * 1e3,
        gets as f64 / get_cpu.as_secs_f64(),
        store.key_count(),
        store.revision(),
        store.size_bytes() as f64 / 1e6,
    );
}
