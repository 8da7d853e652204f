//! Running one script on a real etcd and on Synod side by side (tests/etcd_compare.rs): the
//! two servers, each request sent to both, and their answers compared as a client sees
//! them.
//!
//! Answers are compared as the text of their protobuf messages (etcd-client's `Debug`),
//! with the header fields that name the server left out (cluster and member ids, and the
//! term: etcd's raft term, Synod's round), so every other field must be equal, revisions
//! included. Errors are compared as gRPC code and message.

pub mod leases;

use etcd_client::{Client, ConnectOptions, Error, WatchOptions, WatchStream};
use std::fmt::Debug;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::process::Command;
use std::time::{Duration, Instant};
use synod_testkit::{Cluster, ClusterSpec, Tool};

/// The etcd release Synod answers as (and whose golden values docs/design/WATCH_LEASE.md
/// 1.8 records).
pub const ETCD_VERSION: &str = "3.5.30";

/// etcd's default timing, given to both, so that everything derived from it (the minimum
/// lease TTL) is the same.
const TIMING: [&str; 2] = ["--heartbeat-interval=100", "--election-timeout=1000"];

/// How long a server gets to elect itself and answer.
const READY_WAIT_MAX: Duration = Duration::from_secs(30);

/// How long a watch response that must come may take.
const RESPONSE_WAIT_MAX: Duration = Duration::from_secs(10);

/// How long to listen for a watch response that must not come.
pub const QUIET: Duration = Duration::from_millis(400);

/// A request's answer to come, for requests built by functions.
pub type Answer<T> = Pin<Box<dyn Future<Output = Result<T, Error>>>>;

/// etcd 3.5.30 as `ETCD_BIN` (or the PATH) names it; fails the test saying how to get it.
fn etcd_binary() -> PathBuf {
    let how = "run scripts/fetch-etcd.sh and set ETCD_BIN to the etcd it prints \
               (scripts/test.sh does both)";
    let bin = match Tool::ETCD.find() {
        Ok(bin) => bin,
        Err(e) => panic!("the comparison needs etcd {ETCD_VERSION}: {how} ({e})"),
    };
    let out = Command::new(&bin)
        .arg("--version")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
    let text = String::from_utf8_lossy(&out.stdout);
    let version = text.lines().next().unwrap_or("").trim();
    assert_eq!(
        version,
        format!("etcd Version: {ETCD_VERSION}"),
        "{} is not etcd {ETCD_VERSION}: {how}",
        bin.display()
    );
    bin
}

fn spec(binary: PathBuf, name: &str) -> ClusterSpec {
    let mut spec = ClusterSpec::new(binary, 1);
    spec.token_prefix = format!("compare-{name}");
    spec.dir_prefix = format!("compare-{name}-");
    spec.flags = TIMING.iter().map(|s| s.to_string()).collect();
    spec
}

/// A client of the one member of `cluster`, once it leads.
pub async fn ready(cluster: &Cluster) -> Client {
    let endpoint = cluster.members[0].endpoint();
    let options = ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(2))
        .with_timeout(Duration::from_secs(5));
    let deadline = Instant::now() + READY_WAIT_MAX;
    loop {
        if let Ok(mut c) = Client::connect([&endpoint], Some(options.clone())).await {
            if c.status().await.is_ok_and(|s| s.leader() != 0) {
                return c;
            }
        }
        if Instant::now() >= deadline {
            cluster.dump_logs();
            panic!("{endpoint} has no leader within {READY_WAIT_MAX:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One etcd and one Synod, both a fresh single member, and a client of each.
pub struct Pair {
    etcd_cluster: Cluster,
    /// Held for the member's life: dropping it stops the member.
    #[allow(dead_code)]
    synod_cluster: Cluster,
    pub etcd: Client,
    pub synod: Client,
}

impl Pair {
    pub async fn start() -> Pair {
        // Before anything starts: a missing or wrong etcd fails the test at once.
        let etcd_bin = etcd_binary();
        let etcd_cluster = Cluster::start(&spec(etcd_bin, "etcd")).expect("start etcd");
        let synod_bin = PathBuf::from(env!("CARGO_BIN_EXE_synod"));
        let synod_cluster = Cluster::start(&spec(synod_bin, "synod")).expect("start synod");
        let etcd = ready(&etcd_cluster).await;
        let synod = ready(&synod_cluster).await;
        Pair {
            etcd_cluster,
            synod_cluster,
            etcd,
            synod,
        }
    }

    /// Stops etcd and starts it again on its data directory (what it kept only in memory
    /// is gone).
    pub async fn restart_etcd(&mut self) {
        self.etcd_cluster
            .stop(0, Duration::from_secs(10))
            .expect("stop etcd");
        self.etcd_cluster.spawn(0).expect("start etcd again");
        self.etcd = ready(&self.etcd_cluster).await;
    }

    /// Both answers to `op`, as shown.
    pub async fn both<T, F, Fut>(&self, op: F) -> (String, String)
    where
        T: Debug,
        F: Fn(Client) -> Fut,
        Fut: Future<Output = Result<T, Error>>,
    {
        let etcd = shown(op(self.etcd.clone()).await);
        let synod = shown(op(self.synod.clone()).await);
        (etcd, synod)
    }

    /// Sends `op` to both, asserts they answered alike, and returns the answer.
    pub async fn same<T, F, Fut>(&self, what: &str, op: F) -> String
    where
        T: Debug,
        F: Fn(Client) -> Fut,
        Fut: Future<Output = Result<T, Error>>,
    {
        let (etcd, synod) = self.both(op).await;
        assert_eq!(synod, etcd, "{what}: Synod (left) and etcd (right) differ");
        etcd
    }

    /// Opens a watch stream on each with the same first watcher.
    pub async fn watch(&self, key: &str, options: WatchOptions) -> Watches {
        let open = |mut c: Client| {
            let options = options.clone();
            async move { c.watch(key, Some(options)).await.expect("open a watch") }
        };
        Watches {
            etcd: open(self.etcd.clone()).await,
            synod: open(self.synod.clone()).await,
        }
    }
}

/// A watch stream on each server, driven alike.
pub struct Watches {
    etcd: WatchStream,
    synod: WatchStream,
}

impl Watches {
    pub async fn create(&mut self, key: &str, options: WatchOptions) {
        for s in [&mut self.etcd, &mut self.synod] {
            s.watch(key, Some(options.clone())).await.expect("create");
        }
    }

    pub async fn cancel(&mut self, watch_id: i64) {
        for s in [&mut self.etcd, &mut self.synod] {
            s.cancel(watch_id).await.expect("cancel");
        }
    }

    pub async fn progress(&mut self) {
        for s in [&mut self.etcd, &mut self.synod] {
            s.request_progress().await.expect("request progress");
        }
    }

    /// Reads `n` responses from each stream, then listens for [`QUIET`] for more (there
    /// must be none), and asserts both sent the same; returns them.
    pub async fn expect(&mut self, what: &str, n: usize) -> Vec<String> {
        let (etcd, synod) = tokio::join!(receive(&mut self.etcd, n), receive(&mut self.synod, n));
        assert_eq!(
            synod, etcd,
            "{what}: Synod's watch responses (left) differ from etcd's (right)"
        );
        assert_eq!(etcd.len(), n, "{what}: etcd sent {etcd:#?}");
        etcd
    }

    /// [`Watches::expect`] for responses of several watchers to one revision, which etcd
    /// sends in no defined order: each watcher's responses, in order, must be the same.
    pub async fn expect_per_watcher(&mut self, what: &str, n: usize) -> Vec<String> {
        let (mut etcd, mut synod) =
            tokio::join!(receive(&mut self.etcd, n), receive(&mut self.synod, n));
        for got in [&mut etcd, &mut synod] {
            got.sort_by_key(|r| number(r, "watch_id"));
        }
        assert_eq!(
            synod, etcd,
            "{what}: Synod's watch responses (left) differ from etcd's (right)"
        );
        assert_eq!(etcd.len(), n, "{what}: etcd sent {etcd:#?}");
        etcd
    }
}

/// `n` responses (or fewer, if the stream ends or they do not come), and any that follow
/// within [`QUIET`].
async fn receive(stream: &mut WatchStream, n: usize) -> Vec<String> {
    let mut got = Vec::new();
    loop {
        let wait = if got.len() < n {
            RESPONSE_WAIT_MAX
        } else {
            QUIET
        };
        match tokio::time::timeout(wait, stream.message()).await {
            Ok(Ok(Some(r))) => got.push(anonymous(format!("{:?}", r.0))),
            Ok(Ok(None)) => {
                got.push("the stream ended".into());
                return got;
            }
            Ok(Err(e)) => {
                got.push(shown::<()>(Err(e)));
                return got;
            }
            Err(_) => return got,
        }
    }
}

/// An answer as a client sees it: the response's fields, or the error's code and message.
pub fn shown<T: Debug>(r: Result<T, Error>) -> String {
    match r {
        Ok(v) => anonymous(format!("{v:?}")),
        Err(Error::GRpcStatus(s)) => format!("error {:?}: {}", s.code(), s.message()),
        Err(e) => format!("error {e}"),
    }
}

/// The text of a message without the header fields that name the server.
fn anonymous(text: String) -> String {
    ["cluster_id: ", "member_id: ", "raft_term: "]
        .iter()
        .fold(text, |t, field| blank_numbers_after(&t, field))
}

/// `text` with the number after every `field` replaced by `_`.
fn blank_numbers_after(text: &str, field: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(field) {
        let (before, after) = rest.split_at(at + field.len());
        out.push_str(before);
        out.push('_');
        rest = after.trim_start_matches(|c: char| c.is_ascii_digit());
    }
    out.push_str(rest);
    out
}

/// The number after `field: ` in a shown answer (the first one).
pub fn number(shown: &str, field: &str) -> i64 {
    let pattern = format!("{field}: ");
    let at = shown
        .find(&pattern)
        .unwrap_or_else(|| panic!("no {field} in {shown}"));
    let digits: String = shown[at + pattern.len()..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '-')
        .collect();
    digits
        .parse()
        .unwrap_or_else(|_| panic!("no number after {field} in {shown}"))
}

#[test]
fn headers_lose_what_names_the_server() {
    let text = "ResponseHeader { cluster_id: 123, member_id: 45, revision: 6, raft_term: 7 }";
    assert_eq!(
        anonymous(text.into()),
        "ResponseHeader { cluster_id: _, member_id: _, revision: 6, raft_term: _ }"
    );
    assert_eq!(number(text, "revision"), 6);
}
