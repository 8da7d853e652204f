//! End-to-end with etcd's own command-line client (Debian's `etcd-client` package, which
//! `scripts/test.sh` installs): what a user who swaps Synod in for etcd types first.

mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;
use support::{wait_leader, Cluster};
use synod_testkit::Tool;

fn etcdctl(endpoints: &str, args: &[&str], stdin: Option<&str>) -> (bool, String) {
    run(&Tool::ETCDCTL.require(), endpoints, args, stdin)
}

fn run(etcdctl: &Path, endpoints: &str, args: &[&str], stdin: Option<&str>) -> (bool, String) {
    let mut child = Command::new(etcdctl)
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

/// etcdctl 3.5.30, from the etcd download the comparison with etcd uses
/// (scripts/fetch-etcd.sh, `ETCD_BIN`): Debian's etcdctl 3.4 sends `--cluster` requests
/// with the member's URL, scheme included, as the HTTP/2 authority, which Synod's HTTP/2
/// layer refuses as malformed (docs/SERVER.md), where etcdctl 3.5 sends host and port.
fn etcdctl_3_5() -> PathBuf {
    let how = "run scripts/fetch-etcd.sh and set ETCD_BIN to the etcd it prints \
               (scripts/test.sh does both)";
    let etcd = Tool::ETCD
        .find()
        .unwrap_or_else(|e| panic!("this test needs etcdctl 3.5.30: {how} ({e})"));
    let etcdctl = etcd.with_file_name("etcdctl");
    let (ok, version) = run(&etcdctl, "", &["version"], None);
    assert!(
        ok && version.contains("etcdctl version: 3.5.30"),
        "{} is not etcdctl 3.5.30 ({version}): {how}",
        etcdctl.display()
    );
    etcdctl
}

/// The hashes `etcdctl endpoint hashkv` prints (one line per member: "endpoint, hash"), in
/// its order; `None` if it fails (a member has not applied the revision asked for yet).
fn hashes(etcdctl: &Path, endpoints: &str, args: &[&str]) -> Option<Vec<String>> {
    let mut all = vec!["endpoint", "hashkv"];
    all.extend_from_slice(args);
    let (success, out) = run(etcdctl, endpoints, &all, None);
    success.then(|| {
        out.lines()
            .map(|l| match l.split_once(", ") {
                Some((_, hash)) => hash.trim().to_owned(),
                None => panic!("not an endpoint and a hash: {l:?}"),
            })
            .collect()
    })
}

/// The hashes of `members` members once they all answer alike (followers apply a write
/// soon after the leader answered it); fails the test if they still differ after 10 s.
fn agreed(etcdctl: &Path, endpoints: &str, args: &[&str], members: usize) -> Vec<String> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let h = hashes(etcdctl, endpoints, args);
        if let Some(h) = h
            .as_ref()
            .filter(|h| h.len() == members && h.iter().all(|x| *x == h[0]))
        {
            return h.clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "etcdctl endpoint hashkv {args:?}: members disagree: {h:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `etcdctl endpoint hashkv`: after writes every member shows the same hash, and the same
/// writes give it on another cluster too (the hash covers the keys and their history,
/// nothing of the cluster); a store whose contents differ shows another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_hashkv_agrees_across_members() {
    let (v3_4, v3_5) = (Tool::ETCDCTL.require(), etcdctl_3_5());
    let mut cluster = Cluster::start(3);
    let mut alone = Cluster::start(1);
    wait_leader(&mut cluster, Duration::from_secs(20)).await;
    wait_leader(&mut alone, Duration::from_secs(20)).await;
    let (three, one) = (cluster.endpoints().join(","), alone.endpoints().join(","));
    for endpoints in [&three, &one] {
        for (key, value) in [("a", "1"), ("b", "2"), ("a", "3")] {
            ok(endpoints, &["put", key, value]);
        }
        ok(endpoints, &["del", "b"]);
    }
    // Revision 5 on both.
    let members = agreed(&v3_5, &cluster.members[0].endpoint(), &["--cluster"], 3);
    assert_eq!(
        agreed(&v3_4, &three, &[], 3),
        members,
        "etcdctl 3.4, each member"
    );
    assert_eq!(
        agreed(&v3_4, &one, &[], 1),
        members[..1],
        "same writes, same hash"
    );

    // One more write each, with different values: revision 6 on both, other contents.
    ok(&three, &["put", "c", "x"]);
    ok(&one, &["put", "c", "y"]);
    let six = agreed(&v3_4, &three, &["--rev=6"], 3);
    assert_ne!(agreed(&v3_4, &one, &["--rev=6"], 1), six[..1]);
    // The history they share still hashes alike.
    assert_eq!(agreed(&v3_4, &one, &["--rev=5"], 1), members[..1]);
}
