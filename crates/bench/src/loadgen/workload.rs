//! What one operation of each workload is, and the keys and values it uses.

use clap::ValueEnum;
use etcd_client::{
    Compare, CompareOp, GetOptions, KvClient, SortOrder, SortTarget, Txn, TxnOp, TxnOpResponse,
};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fmt;
use synod_testkit::rng::Rng;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Workload {
    /// Put a value under a random key.
    Put,
    /// Linearizable get of a random key (etcd: ReadIndex; Synod: leader lease).
    Get,
    /// Serializable get: any member answers from its own state.
    GetSerializable,
    /// Linearizable gets and puts, --read-percent of them gets.
    Mix,
    /// Compare-and-set: a Txn that puts the key if its mod revision is the one this client
    /// last saw, else reads it (and remembers the revision for its next try). Each client
    /// works on its own slice of the keyspace, as optimistic-concurrency users mostly do, so
    /// after its first touch of a key (which fails, learning the revision) a CAS succeeds.
    Txn,
    /// Linearizable gets of random keys (measured), while one more client, on a connection
    /// of its own to the first endpoint (the leader in `compare`), runs read-only Txns of
    /// [`HEAVY_TXN_RANGES`] ranges over the whole keyspace sorted by value, back to back (not
    /// measured; counted): how much one client's heavy reads slow everyone else's gets.
    HeavyReadInterference,
}

/// Ranges in one heavy Txn of `heavy-read-interference`: etcd's default `--max-txn-ops`.
pub const HEAVY_TXN_RANGES: usize = 128;

impl Workload {
    pub fn name(self) -> &'static str {
        match self {
            Workload::Put => "put",
            Workload::Get => "get",
            Workload::GetSerializable => "get-serializable",
            Workload::Mix => "mix",
            Workload::Txn => "txn",
            Workload::HeavyReadInterference => "heavy-read-interference",
        }
    }

    /// Clients that run beside the measured ones, unmeasured (the heavy reader).
    pub fn background_clients(self) -> usize {
        match self {
            Workload::HeavyReadInterference => 1,
            _ => 0,
        }
    }

    /// Whether the workload reads keys, so the keyspace should exist first.
    pub fn reads(self) -> bool {
        matches!(
            self,
            Workload::Get
                | Workload::GetSerializable
                | Workload::Mix
                | Workload::HeavyReadInterference
        )
    }
}

impl fmt::Display for Workload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkloadParams {
    pub key_size: usize,
    pub value_size: usize,
    pub keyspace: u64,
    pub read_percent: u8,
}

impl WorkloadParams {
    pub fn validate(&self) -> Result<(), String> {
        if self.keyspace == 0 {
            return Err("--keyspace must be at least 1".into());
        }
        let digits = (self.keyspace - 1).to_string().len();
        if self.key_size < 1 + digits {
            return Err(format!(
                "--key-size {} is too small for --keyspace {}: keys need {} bytes",
                self.key_size,
                self.keyspace,
                1 + digits
            ));
        }
        Ok(())
    }

    /// Key number `index`: `k` and the zero-padded number, `key_size` bytes in all, so every
    /// key has the same size and keys sort by number.
    pub fn key(&self, index: u64) -> Vec<u8> {
        format!("k{:0width$}", index, width = self.key_size - 1).into_bytes()
    }
}

/// What a completed operation reports besides its latency.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Done,
    /// A compare-and-set Txn; `true` if its compare held and it wrote.
    Cas(bool),
    /// A background client's operation: counted apart, not in the latencies.
    Background,
}

/// One closed-loop client's state.
#[derive(Debug)]
pub struct ClientOps {
    workload: Workload,
    params: WorkloadParams,
    rng: Rng,
    /// This client's number and how many there are: the Txn workload's key slice.
    client: u64,
    clients: u64,
    /// Printable bytes, so that logs and etcdctl output stay readable.
    value: Vec<u8>,
    /// Txn only: the mod revision this client last saw per key (0 = absent, which is what
    /// etcd compares a missing key's revision as).
    revisions: HashMap<u64, i64>,
    /// A background client (see [`Workload::background_clients`]).
    background: bool,
}

impl ClientOps {
    /// Client number `client` of `clients`.
    pub fn new(workload: Workload, params: WorkloadParams, client: u64, clients: u64) -> ClientOps {
        let mut rng = Rng::new(client + 1);
        let value = (0..params.value_size)
            .map(|_| b'a' + rng.below(26) as u8)
            .collect();
        ClientOps {
            workload,
            params,
            rng,
            client,
            clients: clients.max(1),
            value,
            revisions: HashMap::new(),
            background: false,
        }
    }

    /// The workload's background client (the heavy reader of `heavy-read-interference`).
    pub fn background(workload: Workload, params: WorkloadParams) -> ClientOps {
        let mut ops = ClientOps::new(workload, params, 0, 1);
        ops.background = true;
        ops
    }

    /// Whether this is a background client (unmeasured).
    pub fn is_background(&self) -> bool {
        self.background
    }

    /// The value this client writes.
    pub fn value_bytes(&self) -> &[u8] {
        &self.value
    }

    /// Issues one operation and waits for its answer.
    pub async fn execute(&mut self, kv: &mut KvClient) -> Result<Outcome, etcd_client::Error> {
        if self.background {
            kv.txn(heavy_txn()).await?;
            return Ok(Outcome::Background);
        }
        let index = self.pick_key();
        let key = self.params.key(index);
        match self.workload {
            Workload::Put => self.put(kv, key).await,
            Workload::Get | Workload::HeavyReadInterference => get(kv, key, false).await,
            Workload::GetSerializable => get(kv, key, true).await,
            Workload::Mix => {
                if self.rng.below(100) < u64::from(self.params.read_percent) {
                    get(kv, key, false).await
                } else {
                    self.put(kv, key).await
                }
            }
            Workload::Txn => self.compare_and_set(kv, index, key).await,
        }
    }

    /// A key number, uniform over the keyspace, or for Txn over this client's slice of it
    /// (numbers congruent to the client's modulo the clients; the whole keyspace if there
    /// are more clients than keys).
    fn pick_key(&mut self) -> u64 {
        let keyspace = self.params.keyspace;
        if self.workload != Workload::Txn || self.clients > keyspace {
            return self.rng.below(keyspace);
        }
        let slice = (keyspace - self.client).div_ceil(self.clients);
        self.client + self.clients * self.rng.below(slice)
    }

    async fn put(&self, kv: &mut KvClient, key: Vec<u8>) -> Result<Outcome, etcd_client::Error> {
        kv.put(key, self.value.clone(), None).await?;
        Ok(Outcome::Done)
    }

    async fn compare_and_set(
        &mut self,
        kv: &mut KvClient,
        index: u64,
        key: Vec<u8>,
    ) -> Result<Outcome, etcd_client::Error> {
        let expected = self.revisions.get(&index).copied().unwrap_or(0);
        let txn = Txn::new()
            .when(vec![Compare::mod_revision(
                key.clone(),
                CompareOp::Equal,
                expected,
            )])
            .and_then(vec![TxnOp::put(key.clone(), self.value.clone(), None)])
            .or_else(vec![TxnOp::get(key, None)]);
        let response = kv.txn(txn).await?;
        let seen = if response.succeeded() {
            // The put's revision is the store's revision after the Txn.
            response.header().map(|h| h.revision())
        } else {
            response.op_responses().into_iter().find_map(|r| match r {
                TxnOpResponse::Get(get) => {
                    Some(get.kvs().first().map(|kv| kv.mod_revision()).unwrap_or(0))
                }
                _ => None,
            })
        };
        if let Some(revision) = seen {
            self.revisions.insert(index, revision);
        }
        Ok(Outcome::Cas(response.succeeded()))
    }
}

/// [`HEAVY_TXN_RANGES`] ranges over every key (they all start with `k`), each sorted by
/// value so that it reads and sorts them all, keeping one key: a request of about 1 KB that
/// costs the server a pass over the keyspace per range.
fn heavy_txn() -> Txn {
    let range = || {
        let options = GetOptions::new()
            .with_prefix()
            .with_sort(SortTarget::Value, SortOrder::Descend)
            .with_limit(1);
        TxnOp::get("k", Some(options))
    };
    Txn::new().and_then((0..HEAVY_TXN_RANGES).map(|_| range()).collect::<Vec<_>>())
}

async fn get(
    kv: &mut KvClient,
    key: Vec<u8>,
    serializable: bool,
) -> Result<Outcome, etcd_client::Error> {
    let options = serializable.then(|| GetOptions::new().with_serializable());
    kv.get(key, options).await?;
    Ok(Outcome::Done)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(key_size: usize, keyspace: u64) -> WorkloadParams {
        WorkloadParams {
            key_size,
            value_size: 8,
            keyspace,
            read_percent: 50,
        }
    }

    #[test]
    fn keys_have_the_asked_size_and_sort_by_number() {
        let p = params(16, 10_000);
        assert_eq!(p.key(0), b"k000000000000000");
        assert_eq!(p.key(9_999), b"k000000000009999");
        assert!(p.key(9) < p.key(10));
        assert!(p.validate().is_ok());
    }

    #[test]
    fn keys_must_fit_the_keyspace() {
        assert!(params(4, 1_000).validate().is_ok());
        assert!(params(4, 1_001).validate().is_err());
        assert!(params(16, 0).validate().is_err());
    }

    #[test]
    fn txn_clients_keep_to_their_own_keys() {
        for (client, clients, keyspace) in [(0, 4, 10), (3, 4, 10), (1, 3, 3), (2, 64, 10_000)] {
            let mut ops = ClientOps::new(Workload::Txn, params(16, keyspace), client, clients);
            let mut seen = std::collections::HashSet::new();
            for _ in 0..10_000 {
                let k = ops.pick_key();
                assert!(k < keyspace);
                assert_eq!(k % clients, client);
                seen.insert(k);
            }
            let slice = (keyspace - client).div_ceil(clients);
            // Small slices are covered whole; a large one is at least spread wide.
            if slice <= 10 {
                assert_eq!(seen.len() as u64, slice);
            } else {
                assert!(seen.len() >= 100, "{}", seen.len());
            }
        }
        // More clients than keys: everyone shares.
        let mut ops = ClientOps::new(Workload::Txn, params(16, 2), 5, 8);
        assert!(ops.pick_key() < 2);
        // Other workloads use the whole keyspace.
        let mut ops = ClientOps::new(Workload::Put, params(16, 1000), 1, 4);
        assert!((0..1000).any(|_| ops.pick_key() % 4 != 1));
    }

    #[test]
    fn values_have_the_asked_size() {
        let ops = ClientOps::new(Workload::Put, params(16, 10), 3, 4);
        assert_eq!(ops.value.len(), 8);
        assert!(ops.value.iter().all(u8::is_ascii_lowercase));
    }
}
