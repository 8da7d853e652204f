//! End-to-end with etcd's own command-line client (Debian's `etcd-client` package, which
//! `scripts/test.sh` installs): what a user who swaps Synod in for etcd types first.

mod support;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;
use support::{wait_leader, Cluster};
use synod_testkit::Tool;

fn etcdctl(endpoints: &str, args: &[&str], stdin: Option<&str>) -> (bool, String) {
    let mut child = Command::new(Tool::ETCDCTL.require())
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoints}"))
        .arg("--command-timeout=5s")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run etcdctl");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("piped")
            .write_all(input.as_bytes())
            .expect("write etcdctl's input");
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().expect("etcdctl finishes");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Runs etcdctl, retrying (a few times) failures a loaded machine causes: an election in
/// progress. Everything else fails the test at once.
fn ok(endpoints: &str, args: &[&str]) -> String {
    for attempt in 1.. {
        let (success, out) = etcdctl(endpoints, args, None);
        if success {
            return out;
        }
        let transient = ["leader changed", "no leader", "request timed out"]
            .iter()
            .any(|t| out.contains(t));
        assert!(transient && attempt < 5, "etcdctl {args:?} failed:\n{out}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    unreachable!()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_works_unchanged() {
    // Before the cluster: a missing etcdctl fails the test at once, saying how to install it.
    Tool::ETCDCTL.require();
    let mut cluster = Cluster::start(3);
    let leader = wait_leader(&mut cluster, Duration::from_secs(20)).await;
    let all = cluster.endpoints().join(",");
    let follower = cluster.members[(leader + 1) % 3].endpoint();

    assert_eq!(ok(&all, &["put", "greeting", "hello"]).trim(), "OK");
    // Through a follower.
    assert_eq!(ok(&follower, &["put", "greeting2", "hi"]).trim(), "OK");
    assert_eq!(ok(&follower, &["get", "greeting"]), "greeting\nhello\n");
    assert_eq!(
        ok(&all, &["get", "greeting", "--prefix", "--print-value-only"]),
        "hello\nhi\n"
    );
    assert_eq!(
        ok(&all, &["get", "greeting", "--consistency=s"]),
        "greeting\nhello\n"
    );

    // A compare-and-set transaction, as etcdctl reads it from standard input.
    let (success, out) = etcdctl(
        &all,
        &["txn"],
        Some("value(\"greeting\") = \"hello\"\n\nput greeting bonjour\n\nget greeting\n\n"),
    );
    assert!(success, "{out}");
    assert!(out.starts_with("SUCCESS"), "{out}");
    assert_eq!(
        ok(&all, &["get", "greeting", "--print-value-only"]),
        "bonjour\n"
    );

    assert_eq!(ok(&all, &["del", "greeting"]).trim(), "1");
    assert_eq!(ok(&all, &["get", "greeting"]), "");

    let members = ok(&all, &["member", "list"]);
    assert_eq!(members.lines().count(), 3, "{members}");
    for m in &cluster.members {
        assert!(members.contains(&m.name), "{members}");
    }
    let status = ok(&all, &["endpoint", "status"]);
    assert_eq!(status.lines().count(), 3, "{status}");
    let health = ok(&all, &["endpoint", "health"]);
    assert_eq!(health.matches("is healthy").count(), 3, "{health}");
    let (_, alarms) = etcdctl(&all, &["alarm", "list"], None);
    assert_eq!(alarms.trim(), "");

    // A consistent copy of the store, as `etcdctl snapshot save` fetches it.
    let dir = tempfile::tempdir().expect("a temporary directory");
    let file = dir.path().join("backup.snap");
    let saved = ok(
        &cluster.members[leader].endpoint(),
        &["snapshot", "save", file.to_str().expect("utf-8 path")],
    );
    assert!(saved.contains("Snapshot saved"), "{saved}");
    let bytes = std::fs::read(&file).expect("the snapshot file");
    assert!(bytes.starts_with(b"SYNSNAP2"), "not a Synod snapshot");
    assert!(
        bytes.windows(9).any(|w| w == b"greeting2"),
        "the snapshot holds the data"
    );
}
