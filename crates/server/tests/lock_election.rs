//! End to end: etcd's Lock and Election services as the etcd-client crate calls them, on a
//! 3-member cluster (callers on the leader and on followers), and etcdctl's `lock` and
//! `elect`, which build the same recipes on the client side over KV, Lease and Watch.

mod support;

use etcd_client::{
    Client, ConnectOptions, Error, GetOptions, LeaderKey, LockOptions, ProclaimOptions,
    ResignOptions,
};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use support::{client, wait_leader, Cluster};
use synod_testkit::Tool;
use tokio::task::JoinHandle;

/// How long a call that should be waiting is given to (wrongly) return.
const STILL_WAITING: Duration = Duration::from_millis(600);

/// The gRPC code and message of a failed call.
fn status_of(e: Error) -> (tonic::Code, String) {
    match e {
        Error::GRpcStatus(s) => (s.code(), s.message().to_owned()),
        other => panic!("not a gRPC status: {other}"),
    }
}

/// The keys under `prefix`, in key order.
async fn keys(c: &mut Client, prefix: &str) -> Vec<String> {
    let got = c
        .get(prefix, Some(GetOptions::new().with_prefix()))
        .await
        .unwrap();
    got.kvs()
        .iter()
        .map(|kv| kv.key_str().unwrap().to_owned())
        .collect()
}

/// Asserts that `task` has not finished, and then that it finishes within 10 s.
async fn finishes_only_after<T>(
    task: &mut JoinHandle<T>,
    release: impl std::future::Future<Output = ()>,
) -> T {
    tokio::time::sleep(STILL_WAITING).await;
    assert!(!task.is_finished(), "returned before the holder let go");
    release.await;
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("returns once the holder lets go")
        .expect("the task ran")
}

fn leader_of(won: &etcd_client::CampaignResponse) -> LeaderKey {
    won.leader()
        .expect("a campaign answers its leader key")
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_and_election_services_on_three_members() {
    let mut cluster = Cluster::start(3);
    let leader = wait_leader(&mut cluster, Duration::from_secs(20)).await;
    let follower = (leader + 1) % 3;
    let mut on_leader = client(&[cluster.members[leader].endpoint()]).await;
    let on_follower = client(&[cluster.members[follower].endpoint()]).await;

    lock_waits_for_unlock(&mut on_leader, on_follower.clone()).await;
    lock_errors_and_headers(&mut on_leader).await;
    abandoned_lock_leaves_the_queue(&cluster, &mut on_leader).await;
    election_rules(&mut on_leader, on_follower.clone()).await;
}

/// A second Lock, on a follower, returns only after the first is unlocked.
async fn lock_waits_for_unlock(holder: &mut Client, mut waiter: Client) {
    // Lease 0: the member grants a session lease of its own.
    let first = holder.lock("job", None).await.unwrap();
    let first_key = first.key().to_vec();
    assert!(first_key.starts_with(b"job/"));
    let first_rev = first.header().unwrap().revision();
    let mut second = tokio::spawn(async move { waiter.lock("job", None).await });
    let unlocked = {
        let mut holder = holder.clone();
        let key = first_key.clone();
        finishes_only_after(&mut second, async move {
            let r = holder.unlock(key).await.unwrap();
            assert!(r.header().unwrap().revision() > first_rev);
        })
    }
    .await
    .unwrap();
    assert_ne!(unlocked.key(), &first_key[..]);
    assert!(unlocked.key().starts_with(b"job/"));
    let after = holder
        .get("job/", Some(GetOptions::new().with_prefix()))
        .await
        .unwrap();
    assert_eq!(after.kvs().len(), 1, "only the new holder's key");
    assert_eq!(after.kvs()[0].key(), unlocked.key());
    assert_eq!(
        unlocked.header().unwrap().revision(),
        after.header().unwrap().revision()
    );
    holder.unlock(unlocked.key()).await.unwrap();
}

async fn lock_errors_and_headers(c: &mut Client) {
    // An unknown lease: etcd's store error, as code Unknown.
    let e = c
        .lock("job", Some(LockOptions::new().with_lease(0x1234)))
        .await
        .unwrap_err();
    assert_eq!(
        status_of(e),
        (
            tonic::Code::Unknown,
            "etcdserver: requested lease not found".into()
        )
    );
    // Unlock of a key that does not exist succeeds, at the current revision.
    let now = c
        .get("nothing", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();
    let r = c.unlock("job/ffff").await.unwrap();
    assert_eq!(r.header().unwrap().revision(), now);
    // Headers name this cluster and member.
    let status = c.status().await.unwrap();
    let header = r.header().unwrap();
    assert_eq!(header.member_id(), status.header().unwrap().member_id());
    assert_eq!(header.cluster_id(), status.header().unwrap().cluster_id());
}

/// A waiter whose client gives up (its deadline passes) takes its key out of the queue.
async fn abandoned_lock_leaves_the_queue(cluster: &Cluster, c: &mut Client) {
    let held = c.lock("q", None).await.unwrap();
    let held_key = String::from_utf8(held.key().to_vec()).unwrap();
    let impatient = Client::connect(
        [cluster.members[0].endpoint()],
        Some(ConnectOptions::new().with_timeout(Duration::from_secs(2))),
    )
    .await
    .unwrap();
    let waiting = tokio::spawn(async move { impatient.lock_client().lock("q", None).await });
    until(c, "q/", |keys| keys.len() == 2, "the waiter queues its key").await;
    let (code, _) = status_of(waiting.await.unwrap().unwrap_err());
    assert!(
        matches!(code, tonic::Code::DeadlineExceeded | tonic::Code::Cancelled),
        "{code:?}"
    );
    until(
        c,
        "q/",
        |keys| keys == [held_key.clone()],
        "the waiter's key goes",
    )
    .await;
    c.unlock(held.key()).await.unwrap();
}

/// Polls the keys under `prefix` until `cond` holds, for at most 10 s.
async fn until(c: &mut Client, prefix: &str, cond: impl Fn(&[String]) -> bool, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = keys(c, prefix).await;
        if cond(&now) {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: {now:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn election_rules(c: &mut Client, mut other: Client) {
    // No leader yet.
    let e = c.leader("e").await.unwrap_err();
    assert_eq!(
        status_of(e),
        (tonic::Code::Unknown, "election: no leader".into())
    );

    let won = c.campaign("e", "one", 0).await.unwrap();
    let first = leader_of(&won);
    let won_rev = won.header().unwrap().revision();
    assert_eq!(first.rev(), won_rev);
    assert_eq!(first.name(), b"e");
    assert_eq!(first.key(), format!("e/{:x}", first.lease()).as_bytes());
    let now = c.leader("e").await.unwrap();
    assert_eq!(now.kv().unwrap().value(), b"one");

    let mut observe = other.observe("e").await.unwrap();
    let seen = observe.message().await.unwrap().unwrap();
    assert_eq!(
        seen.kv().unwrap().value(),
        b"one",
        "the current leader first"
    );

    let proclaimed = c
        .proclaim(
            "two",
            Some(ProclaimOptions::new().with_leader(first.clone())),
        )
        .await
        .unwrap();
    let seen = observe.message().await.unwrap().unwrap();
    assert_eq!(seen.kv().unwrap().value(), b"two");
    assert_eq!(
        seen.header().unwrap().revision(),
        proclaimed.header().unwrap().revision()
    );

    // Proclaim by a stale leader key, or without one.
    let stale = first.clone().with_rev(first.rev() + 100);
    let e = c
        .proclaim("x", Some(ProclaimOptions::new().with_leader(stale.clone())))
        .await
        .unwrap_err();
    assert_eq!(
        status_of(e),
        (tonic::Code::Unknown, "election: not leader".into())
    );
    let e = c.proclaim("x", None).await.unwrap_err();
    assert_eq!(
        status_of(e),
        (
            tonic::Code::Unknown,
            "\"leader\" field must be provided".into()
        )
    );
    // Resign never fails for not being leader: it deletes nothing and answers now.
    let before = c
        .get("e/", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();
    let r = c
        .resign(Some(ResignOptions::new().with_leader(stale)))
        .await
        .unwrap();
    assert_eq!(r.header().unwrap().revision(), before);

    // A second candidate waits for the first to resign; Observe follows.
    let mut second = tokio::spawn(async move { other.campaign("e", "three", 0).await });
    let mut resigner = c.clone();
    let won = finishes_only_after(&mut second, async move {
        let leader = ResignOptions::new().with_leader(first);
        resigner.resign(Some(leader)).await.unwrap();
    })
    .await
    .unwrap();
    let seen = observe.message().await.unwrap().unwrap();
    assert_eq!(seen.kv().unwrap().value(), b"three");
    assert_eq!(seen.kv().unwrap().key(), leader_of(&won).key());
    assert_eq!(c.leader("e").await.unwrap().kv().unwrap().value(), b"three");
    c.resign(Some(ResignOptions::new().with_leader(leader_of(&won))))
        .await
        .unwrap();
    let e = c.leader("e").await.unwrap_err();
    assert_eq!(status_of(e).1, "election: no leader");
}

/// A holder whose lease is revoked loses the lock; the waiter gets it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_holder_loses_the_lock() {
    let mut cluster = Cluster::start(3);
    let leader = wait_leader(&mut cluster, Duration::from_secs(20)).await;
    let mut c = client(&[cluster.members[leader].endpoint()]).await;
    let mut waiter = client(&[cluster.members[(leader + 2) % 3].endpoint()]).await;
    let holder_lease = c.lease_grant(60, None).await.unwrap().id();
    let waiter_lease = c.lease_grant(60, None).await.unwrap().id();
    let held = c
        .lock("job", Some(LockOptions::new().with_lease(holder_lease)))
        .await
        .unwrap();
    assert_eq!(held.key(), format!("job/{holder_lease:x}").as_bytes());
    let mut second = tokio::spawn(async move {
        let options = LockOptions::new().with_lease(waiter_lease);
        waiter.lock("job", Some(options)).await
    });
    let mut revoker = c.clone();
    let got = finishes_only_after(&mut second, async move {
        revoker.lease_revoke(holder_lease).await.unwrap();
    })
    .await
    .unwrap();
    assert_eq!(got.key(), format!("job/{waiter_lease:x}").as_bytes());
    assert_eq!(
        keys(&mut c, "job/").await,
        [format!("job/{waiter_lease:x}")]
    );
}

/// A running etcdctl, its output read line by line off the test's threads.
struct Etcdctl {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Etcdctl {
    fn start(etcdctl: &Path, endpoints: &str, args: &[&str]) -> Etcdctl {
        let mut child = Command::new(etcdctl)
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={endpoints}"))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("run etcdctl");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Etcdctl { child, lines }
    }

    /// The next line it prints, within 10 s.
    fn line(&self) -> String {
        self.lines
            .recv_timeout(Duration::from_secs(10))
            .expect("etcdctl prints a line within 10 s")
    }

    /// Nothing printed for a while.
    fn silent(&self) {
        let line = self.lines.recv_timeout(STILL_WAITING);
        assert!(line.is_err(), "printed {line:?} while it should wait");
    }

    fn interrupt(&self) {
        let pid = Pid::from_raw(self.child.id() as i32);
        kill(pid, Signal::SIGINT).expect("signal etcdctl");
    }

    /// Its exit status, within 10 s.
    fn exit(mut self) -> ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for etcdctl") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "etcdctl did not exit within 10 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Etcdctl {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// etcdctl's client-side recipes work against Synod: `lock NAME -- CMD` runs the command
/// under the lock, a second `lock` waits for the first, and `elect` elects and observes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_lock_and_elect() {
    let etcdctl = Tool::ETCDCTL.require();
    let mut cluster = Cluster::start(3);
    wait_leader(&mut cluster, Duration::from_secs(20)).await;
    let endpoints = cluster.endpoints().join(",");
    let run = |args: &[&str]| Etcdctl::start(&etcdctl, &endpoints, args);

    let once = run(&["lock", "job", "--", "echo", "held"]);
    assert_eq!(once.line(), "held");
    assert!(once.exit().success());

    // `lock NAME` prints the key (and its empty value) and holds until interrupted, then
    // unlocks; a second one waits for that.
    let holder = run(&["lock", "job"]);
    let key = holder.line();
    assert!(key.starts_with("job/"), "{key}");
    assert_eq!(holder.line(), "");
    let waiter = run(&["lock", "job", "--", "echo", "second"]);
    waiter.silent();
    holder.interrupt();
    assert_eq!(waiter.line(), "second");
    assert!(waiter.exit().success());
    assert!(holder.exit().success());
    let mut c = client(&cluster.endpoints()).await;
    assert!(keys(&mut c, "job/").await.is_empty());

    // elect: prints the key and value once elected; -l prints the leader, then changes.
    let elected = run(&["elect", "e", "v1"]);
    let key = elected.line();
    assert!(key.starts_with("e/"), "{key}");
    assert_eq!(elected.line(), "v1");
    let listener = run(&["elect", "-l", "e"]);
    assert_eq!(
        (listener.line(), listener.line()),
        (key.clone(), "v1".to_owned())
    );
    let next = run(&["elect", "e", "v2"]);
    next.silent();
    elected.interrupt();
    let next_key = next.line();
    assert_eq!(next.line(), "v2");
    assert_eq!(
        (listener.line(), listener.line()),
        (next_key, "v2".to_owned())
    );
    assert!(elected.exit().success());
}
