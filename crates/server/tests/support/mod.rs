//! A real cluster of `synod` processes on loopback, for end-to-end tests.

#![allow(dead_code)] // each test binary uses part of it

use etcd_client::{Client, ConnectOptions, Txn, TxnOp};
use std::ops::{Deref, DerefMut};
use std::path::PathBuf;
use std::process::ExitStatus;
use std::sync::Arc;
use std::time::{Duration, Instant};
use synod_testkit::ClusterSpec;

pub const HEARTBEAT_MS: u64 = 20;
pub const ELECTION_MS: u64 = 200;
/// How long a member gets to exit after SIGTERM.
const STOP_WAIT_MAX: Duration = Duration::from_secs(10);

/// The test kit's cluster of `synod` processes with the tests' timing and logging, whose
/// operations panic instead of returning errors.
#[derive(Debug)]
pub struct Cluster(synod_testkit::Cluster);

impl Cluster {
    pub fn start(n: usize) -> Cluster {
        Cluster::start_with(n, &[])
    }

    pub fn start_with(n: usize, extra_flags: &[&str]) -> Cluster {
        let mut spec = ClusterSpec::new(PathBuf::from(env!("CARGO_BIN_EXE_synod")), n);
        spec.token_prefix = "e2e".into();
        spec.flags = vec![
            format!("--heartbeat-interval={HEARTBEAT_MS}"),
            format!("--election-timeout={ELECTION_MS}"),
            "--log-level=info,synod_server=debug".into(),
        ];
        spec.flags.extend(extra_flags.iter().map(|s| s.to_string()));
        Cluster(synod_testkit::Cluster::start(&spec).expect("start the cluster"))
    }

    /// Starts member `i` (again).
    pub fn spawn(&mut self, i: usize) {
        self.0.spawn(i).expect("start synod");
    }

    /// SIGTERM, and wait for a clean exit.
    pub fn stop(&mut self, i: usize) -> ExitStatus {
        self.0.stop(i, STOP_WAIT_MAX).expect("stop the member")
    }

    /// A new member's name and peer URL, not started: add it with `etcdctl member add` (or
    /// the client) first, then `spawn` it.
    pub fn prepare_join(&mut self, name: &str, peers: &[usize]) -> usize {
        self.0.prepare_join(name, peers).expect("prepare a member")
    }
}

impl Deref for Cluster {
    type Target = synod_testkit::Cluster;

    fn deref(&self) -> &synod_testkit::Cluster {
        &self.0
    }
}

impl DerefMut for Cluster {
    fn deref_mut(&mut self) -> &mut synod_testkit::Cluster {
        &mut self.0
    }
}

pub async fn client(endpoints: &[String]) -> Client {
    let options = ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(2))
        .with_timeout(Duration::from_secs(5));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match Client::connect(endpoints, Some(options.clone())).await {
            Ok(c) => return c,
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "cannot connect to {endpoints:?}: {e}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Waits until some member reports a leader that every running member agrees on; returns
/// the leader's index.
pub async fn wait_leader(cluster: &mut Cluster, within: Duration) -> usize {
    let deadline = Instant::now() + within;
    loop {
        let mut seen = Vec::new();
        for i in 0..cluster.members.len() {
            if !cluster.members[i].is_running() {
                continue;
            }
            let ep = cluster.members[i].endpoint();
            if let Ok(mut c) = Client::connect(
                [ep],
                Some(ConnectOptions::new().with_timeout(Duration::from_millis(500))),
            )
            .await
            {
                if let Ok(s) = c.status().await {
                    seen.push(s.leader());
                }
            }
        }
        let running = (0..cluster.members.len())
            .filter(|&i| cluster.members[i].is_running())
            .count();
        if seen.len() == running && !seen.is_empty() && seen.iter().all(|&l| l != 0 && l == seen[0])
        {
            let leader_id = seen[0];
            let mut statuses = Vec::new();
            for i in 0..cluster.members.len() {
                if !cluster.members[i].is_running() {
                    continue;
                }
                let mut c = client(&[cluster.members[i].endpoint()]).await;
                if let Ok(s) = c.status().await {
                    if s.header().map(|h| h.member_id()) == Some(leader_id) {
                        statuses.push(i);
                    }
                }
            }
            if let Some(&i) = statuses.first() {
                return i;
            }
        }
        if Instant::now() >= deadline {
            cluster.dump_logs();
            panic!("no agreed leader within {within:?} (saw {seen:x?})");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A put that retries while the cluster is between leaders (errors whose outcome is
/// unknown: a retried put of the same key and value is idempotent, so that is safe here).
/// Machines running these tests are often loaded, and elections then happen.
pub async fn put_retry(c: &mut Client, key: String, value: String) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match c.put(key.clone(), value.clone(), None).await {
            Ok(_) => return,
            Err(e) => {
                let transient = matches!(&e, etcd_client::Error::GRpcStatus(s)
                    if s.code() == tonic::Code::Unavailable
                        || s.code() == tonic::Code::ResourceExhausted);
                assert!(transient && Instant::now() < deadline, "put {key}: {e}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

/// How long [`eventually`] polls: for what should happen within a few reconnect back-offs
/// (2 s at most each) on a loaded machine.
pub const EVENTUALLY_WAIT_MAX: Duration = Duration::from_secs(30);

/// Polls `cond` until it holds, or fails the test after [`EVENTUALLY_WAIT_MAX`] saying `what`
/// (with the end of every member's log).
pub async fn eventually(cluster: &Cluster, what: &str, mut cond: impl FnMut(&Cluster) -> bool) {
    let deadline = Instant::now() + EVENTUALLY_WAIT_MAX;
    while !cond(cluster) {
        if Instant::now() >= deadline {
            cluster.dump_logs();
            panic!("timed out waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// GET over HTTP/1.1 on a fresh connection; the whole answer (status line, headers, body).
pub fn http_get(endpoint: &str, path: &str) -> String {
    synod_testkit::http::get(endpoint, path).expect("HTTP GET")
}

/// Writes `batches` Txns from `loaders` clients at once, the puts of Txn `b` being
/// `batch(b)`; each client writes every `loaders`-th Txn.
pub async fn load_txns<F>(endpoints: &[String], batches: usize, loaders: usize, batch: F)
where
    F: Fn(usize) -> Vec<TxnOp> + Send + Sync + 'static,
{
    let started = Instant::now();
    let batch = Arc::new(batch);
    let tasks: Vec<_> = (0..loaders)
        .map(|t| {
            let (endpoints, batch) = (endpoints.to_vec(), batch.clone());
            tokio::spawn(async move {
                let mut c = client(&endpoints).await;
                for b in (t..batches).step_by(loaders) {
                    c.txn(Txn::new().and_then(batch(b)))
                        .await
                        .expect("load a batch");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("a loader");
    }
    eprintln!("wrote {batches} Txns in {:?}", started.elapsed());
}

/// What a client doing gets back to back saw.
#[derive(Debug)]
pub struct GetProbe {
    pub gets: usize,
    /// The slowest get.
    pub worst: Duration,
    /// Failed gets, and gets that found no value.
    pub errors: Vec<String>,
}

impl GetProbe {
    /// Every get answered with a value, none slower than `bound`; `during` says what else
    /// went on.
    pub fn assert_served_within(&self, bound: Duration, during: &str) {
        let errors = &self.errors;
        assert!(
            errors.is_empty(),
            "{} gets failed, e.g. {:?}",
            errors.len(),
            &errors[..errors.len().min(3)]
        );
        assert!(
            self.worst < bound,
            "a get took {:?} while {during} (bound {bound:?})",
            self.worst
        );
    }
}

/// Gets, back to back for `run`, of `key(n)` for the n-th get, each expected to find a value.
pub async fn probe_gets(
    endpoints: &[String],
    run: Duration,
    key: impl Fn(usize) -> String,
) -> GetProbe {
    let mut c = client(endpoints).await;
    let mut probe = GetProbe {
        gets: 0,
        worst: Duration::ZERO,
        errors: Vec::new(),
    };
    let started = Instant::now();
    while started.elapsed() < run {
        let k = key(probe.gets);
        let sent = Instant::now();
        match c.get(k.clone(), None).await {
            Ok(r) if r.kvs().len() == 1 => {}
            Ok(r) => probe.errors.push(format!("{k}: {} values", r.kvs().len())),
            Err(e) => probe.errors.push(e.to_string()),
        }
        probe.worst = probe.worst.max(sent.elapsed());
        probe.gets += 1;
    }
    eprintln!(
        "{} gets, slowest {:?}, {} failed {:?}",
        probe.gets,
        probe.worst,
        probe.errors.len(),
        probe.errors.first()
    );
    probe
}
