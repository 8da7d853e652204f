//! End-to-end: a member under a low open-file limit survives a flood of idle client
//! connections. It raises its soft limit to the hard one at start, and
//! caps client connections below the limit so that the write-ahead log, snapshots and peers
//! always find a descriptor: the excess is accepted and closed at once, and counted.
//!
//! One test in this binary on purpose: it lowers the test process's own soft limit while it
//! starts the cluster (the members inherit it), which would starve a test running beside it.

mod support;

use rustix::process::{getrlimit, prlimit, setrlimit, Pid, Resource, Rlimit};
use std::net::TcpStream;
use std::time::{Duration, Instant};
use support::{client, http_get, put_retry, wait_leader, Cluster};

/// The limit the user ran the member under.
const NOFILE_LIMIT: u64 = 256;
const IDLE_CONNECTIONS: usize = 400;

/// `(soft, hard)` "Max open files" of a running process.
fn open_file_limits(pid: u32) -> (String, String) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("read limits");
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("a Max open files line");
    let fields: Vec<&str> = line["Max open files".len()..].split_whitespace().collect();
    (fields[0].to_string(), fields[1].to_string())
}

fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l[name.len()..].trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_client_connections_under_a_low_descriptor_limit_do_not_stop_the_member() {
    // The members start with a soft limit of 256 under a far higher hard limit, as under
    // systemd's or a shell's default soft limit of 1,024.
    let ours = getrlimit(Resource::Nofile);
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(NOFILE_LIMIT),
            maximum: ours.maximum,
        },
    )
    .expect("lower our soft limit");
    // Small segments: the puts below make every member start many new segment files.
    let mut cluster = Cluster::start_with(3, &["--wal-segment-bytes=4096"]);
    setrlimit(Resource::Nofile, ours).expect("restore our soft limit");

    let leader = wait_leader(&mut cluster, Duration::from_secs(20)).await;
    let victim = (leader + 1) % 3;
    let pid = cluster.members[victim].pid().expect("running");
    // Checked last, so that the flood below shows its own outcome first.
    let (soft, hard) = open_file_limits(pid);

    // Now the hard limit is 256 too: the host allows no more.
    prlimit(
        Pid::from_raw(pid as i32),
        Resource::Nofile,
        Rlimit {
            current: Some(NOFILE_LIMIT),
            maximum: Some(NOFILE_LIMIT),
        },
    )
    .expect("lower the member's open-file limit");

    // Connected (and used once: the client connects lazily) before the flood takes every
    // place.
    let mut at_victim = client(&[cluster.members[victim].endpoint()]).await;
    at_victim.status().await.expect("status before the flood");
    let mut idle = Vec::new();
    for _ in 0..IDLE_CONNECTIONS {
        if let Ok(s) = TcpStream::connect(cluster.members[victim].endpoint()) {
            idle.push(s);
        }
    }
    let mut writer = client(&[cluster.members[leader].endpoint()]).await;
    let value = "v".repeat(1000);
    for i in 0..60 {
        put_retry(&mut writer, format!("k{i:03}"), value.clone()).await;
    }
    // The member took every write into its log (60 KB in 4 KiB segments) and serves on.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        assert!(
            cluster.members[victim].is_running(),
            "the member stopped:\n{}",
            cluster.log_of(victim)
        );
        let got = at_victim
            .get(
                "k059",
                Some(etcd_client::GetOptions::new().with_serializable()),
            )
            .await;
        if let Ok(r) = got {
            if r.kvs().first().map(|kv| kv.value().len()) == Some(1000) {
                break;
            }
        }
        assert!(Instant::now() < deadline, "the member did not catch up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(idle);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let metrics = http_get(&cluster.members[victim].endpoint(), "/metrics");
    let refused = metric(&metrics, "synod_client_connections_refused_total").unwrap_or(0.0);
    assert!(
        refused > 0.0,
        "no client connection was refused at the cap:\n{metrics}"
    );
    assert!(cluster
        .log_of(victim)
        .contains("refused client connections"));
    assert!(cluster.members[victim].is_running());
    assert_eq!(
        soft, hard,
        "the member kept a soft open-file limit ({soft}) below the hard one ({hard})"
    );
    assert!(cluster
        .log_of(victim)
        .contains("raised the soft limit on open files"));
}
