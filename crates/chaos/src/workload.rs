//! The register workload: closed-loop clients doing reads, puts and compare-and-sets on a few
//! keys, each request to a random member, every one recorded for the linearizability check.

use crate::clients::{classify, Failure, Members, Roster};
use crate::history::Recorder;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use synod_check::{Op, Response};
use synod_testkit::rng::Rng;

#[derive(Clone, Debug)]
pub struct WorkloadSpec {
    pub register_clients: usize,
    pub bank_clients: usize,
    /// Registers `r/1..=keys`.
    pub keys: u64,
    pub accounts: u64,
    pub initial_balance: u64,
    /// Percent of register operations that are reads; of the writes, percent that are
    /// compare-and-sets (the rest are puts).
    pub read_pct: u64,
    pub cas_pct: u64,
    /// Each client waits up to this long (uniformly) between operations.
    pub think_max: Duration,
    /// A request not answered within this has an unknown outcome.
    pub op_timeout: Duration,
    /// (member, count): extra clients that only read, all at that member. The lease
    /// scenario reads where it isolates, steadily, whatever the other clients are stuck on.
    pub pinned_readers: Option<(usize, usize)>,
}

impl Default for WorkloadSpec {
    fn default() -> WorkloadSpec {
        WorkloadSpec {
            register_clients: 6,
            bank_clients: 2,
            keys: 4,
            accounts: 5,
            initial_balance: 100,
            read_pct: 50,
            cas_pct: 50,
            think_max: Duration::from_millis(20),
            op_timeout: Duration::from_secs(2),
            pinned_readers: None,
        }
    }
}

/// State the workers share with the run.
#[derive(Debug)]
pub struct Shared {
    pub recorder: Recorder,
    pub bank: crate::bank::BankLog,
    pub stop: AtomicBool,
    /// Errors a correct server never gives to these requests, and malformed values.
    pub anomalies: Mutex<Vec<String>>,
}

impl Shared {
    pub fn new() -> Arc<Shared> {
        Arc::new(Shared {
            recorder: Recorder::default(),
            bank: Default::default(),
            stop: AtomicBool::new(false),
            anomalies: Mutex::new(Vec::new()),
        })
    }

    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    pub fn anomaly(&self, what: String) {
        self.anomalies
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(what);
    }
}

/// One register client, until `shared.stop`; `pinned`: a read-only client of one member.
pub async fn register_worker(
    id: u64,
    roster: Arc<Roster>,
    spec: WorkloadSpec,
    shared: Arc<Shared>,
    mut rng: Rng,
    pinned: Option<usize>,
) {
    let mut members = Members::over(roster, spec.op_timeout);
    // The last value seen per key: what compare-and-sets expect, so that some succeed.
    let mut seen: BTreeMap<u64, Option<u64>> = BTreeMap::new();
    let mut seq = 0u64;
    while !shared.stopped() {
        seq += 1;
        let key = rng.range(1, spec.keys);
        let value = (id << 32) | seq;
        let op = if pinned.is_some() || rng.below(100) < spec.read_pct {
            Op::Get { key }
        } else if rng.below(100) < spec.cas_pct {
            let expect = match seen.get(&key) {
                Some(&v) if rng.chance(0.8) => v,
                _ => None,
            };
            Op::cas(key, expect, value)
        } else {
            Op::Put { key, value }
        };
        let node = pinned.unwrap_or_else(|| members.pick(&mut rng));
        let timeout = spec.op_timeout;
        let outcome = run_one(id, &op, node, &mut members, timeout, &shared).await;
        if let Outcome::Answered(result) = outcome {
            match (&op, result) {
                (Op::Get { .. }, Response::Get { read, .. }) => {
                    seen.insert(key, read.value);
                }
                (Op::Put { value, .. }, _) => {
                    seen.insert(key, Some(*value));
                }
                (
                    Op::Txn(_),
                    Response::Txn {
                        succeeded: true, ..
                    },
                ) => {
                    seen.insert(key, Some(value));
                }
                _ => {}
            }
        }
        let think = rng.below(spec.think_max.as_micros() as u64 + 1);
        tokio::time::sleep(Duration::from_micros(think)).await;
    }
}

/// The client id of the harness's own requests (bank setup, recovery probes, final reads).
pub const HARNESS_CLIENT: u64 = 0;

/// How a request ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Answered(Response),
    /// Definitely no effect (or a read: no effect either way).
    Failed,
    /// It may have taken effect, or may still.
    Unknown,
}

impl Outcome {
    pub fn answer(self) -> Option<Response> {
        match self {
            Outcome::Answered(r) => Some(r),
            Outcome::Failed | Outcome::Unknown => None,
        }
    }
}

/// Sends one operation to member `node` and records it.
pub async fn run_one(
    client_id: u64,
    op: &Op,
    node: usize,
    members: &mut Members,
    timeout: Duration,
    shared: &Shared,
) -> Outcome {
    let recorder = &shared.recorder;
    let Some(client) = members.client(node).await else {
        // Not even connected: nothing was sent.
        members.failed(node);
        return Outcome::Failed;
    };
    let index = recorder.invoke(client_id, op.clone(), node);
    match tokio::time::timeout(timeout, crate::etcd::execute(client, op)).await {
        Ok(Ok(Ok(result))) => {
            recorder.complete(index, result.clone());
            Outcome::Answered(result)
        }
        Ok(Ok(Err(malformed))) => {
            shared.anomaly(format!("member {node}: {malformed}"));
            recorder.unknown(index);
            Outcome::Unknown
        }
        Ok(Err(e)) => {
            let (failure, unexpected) = classify(&e);
            if let Some(u) = unexpected {
                shared.anomaly(format!("member {node}, {op:?}: {u}"));
            }
            members.failed(node);
            // A read that failed changed nothing, whatever the error.
            if failure == Failure::Definite || op.is_read() {
                recorder.failed(index);
                Outcome::Failed
            } else {
                recorder.unknown(index);
                Outcome::Unknown
            }
        }
        Err(_elapsed) => {
            members.failed(node);
            if op.is_read() {
                recorder.failed(index);
                Outcome::Failed
            } else {
                recorder.unknown(index);
                Outcome::Unknown
            }
        }
    }
}
