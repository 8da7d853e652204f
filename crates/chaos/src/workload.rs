//! The register workload: closed-loop clients doing reads, puts and compare-and-sets on a few
//! keys, each request to a random member, every one recorded for the linearizability check.

use crate::clients::{classify, Failure, Members, Roster};
use crate::history::{decode_value, encode_value, register_key, Recorder};
use etcd_client::{Client, Compare, CompareOp, Txn, TxnOp};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use synod_sim::kv::{KvOp, KvResult};
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
            KvOp::Get { key }
        } else if rng.below(100) < spec.cas_pct {
            let expect = match seen.get(&key) {
                Some(&v) if rng.chance(0.8) => v,
                _ => None,
            };
            KvOp::Cas {
                key,
                expect,
                new: value,
            }
        } else {
            KvOp::Put { key, value }
        };
        let node = pinned.unwrap_or_else(|| members.pick(&mut rng));
        if let Some(result) = run_one(id, op, node, &mut members, &spec, &shared).await {
            match (op, result) {
                (KvOp::Get { .. }, KvResult::Value(v)) => {
                    seen.insert(key, v);
                }
                (KvOp::Put { value, .. }, _) => {
                    seen.insert(key, Some(value));
                }
                (KvOp::Cas { new, .. }, KvResult::Swapped(true)) => {
                    seen.insert(key, Some(new));
                }
                _ => {}
            }
        }
        let think = rng.below(spec.think_max.as_micros() as u64 + 1);
        tokio::time::sleep(Duration::from_micros(think)).await;
    }
}

/// Sends one operation to member `node` and records it; returns its result if it has one.
pub async fn run_one(
    client_id: u64,
    op: KvOp,
    node: usize,
    members: &mut Members,
    spec: &WorkloadSpec,
    shared: &Shared,
) -> Option<KvResult> {
    let recorder = &shared.recorder;
    let Some(client) = members.client(node).await else {
        // Not even connected: nothing was sent.
        members.failed(node);
        return None;
    };
    let index = recorder.invoke(client_id, op, node);
    match tokio::time::timeout(spec.op_timeout, execute(client, op)).await {
        Ok(Ok(Ok(result))) => {
            recorder.complete(index, result);
            Some(result)
        }
        Ok(Ok(Err(malformed))) => {
            shared.anomaly(format!("member {node}: {malformed}"));
            recorder.unknown(index);
            None
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
            } else {
                recorder.unknown(index);
            }
            None
        }
        Err(_elapsed) => {
            members.failed(node);
            if op.is_read() {
                recorder.failed(index);
            } else {
                recorder.unknown(index);
            }
            None
        }
    }
}

/// The etcd request for one model operation. The inner error is a malformed answer.
async fn execute(
    mut client: Client,
    op: KvOp,
) -> Result<Result<KvResult, String>, etcd_client::Error> {
    Ok(match op {
        KvOp::Get { key } => {
            let r = client.get(register_key(key), None).await?;
            match r.kvs().first() {
                None => Ok(KvResult::Value(None)),
                Some(kv) => decode_value(kv.value()).map(|v| KvResult::Value(Some(v))),
            }
        }
        KvOp::Put { key, value } => {
            client
                .put(register_key(key), encode_value(value), None)
                .await?;
            Ok(KvResult::Written)
        }
        KvOp::Cas { key, expect, new } => {
            let k = register_key(key);
            let compare = match expect {
                Some(v) => Compare::value(k.clone(), CompareOp::Equal, encode_value(v)),
                None => Compare::version(k.clone(), CompareOp::Equal, 0),
            };
            let txn = Txn::new()
                .when([compare])
                .and_then([TxnOp::put(k, encode_value(new), None)]);
            let r = client.txn(txn).await?;
            Ok(KvResult::Swapped(r.succeeded()))
        }
    })
}
