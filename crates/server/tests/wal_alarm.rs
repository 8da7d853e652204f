//! End-to-end: a member whose write-ahead log cannot be written keeps running, raises
//! etcd's NOSPACE alarm, refuses writes with etcd's error, and hands leadership to a member
//! that can write. The log is made unwritable by lowering the member's
//! file-size limit (RLIMIT_FSIZE) below the end of its log segment: every write past it
//! fails with EFBIG, while the member's own log file (smaller) can still be written.

mod support;

use etcd_client::{AlarmAction, AlarmType, Client, ConnectOptions};
use rustix::process::{prlimit, Pid, Resource, Rlimit};
use std::time::{Duration, Instant};
use support::{client, http_get, put_retry, wait_leader, Cluster};

const FILE_SIZE_LIMIT: u64 = 4 << 20;

async fn client_of(endpoint: String) -> Client {
    let options = ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(2))
        .with_timeout(Duration::from_secs(5));
    Client::connect([endpoint], Some(options))
        .await
        .expect("connect")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_cannot_write_its_log_keeps_running_and_raises_an_alarm() {
    let mut cluster = Cluster::start(3);
    let leader = wait_leader(&mut cluster, Duration::from_secs(20)).await;
    let mut c = client(&cluster.endpoints()).await;
    put_retry(&mut c, "before".into(), "1".into()).await;
    // Six MiB into the log's current segment (64 MiB by default).
    for i in 0..6 {
        put_retry(&mut c, format!("big{i}"), "b".repeat(1 << 20)).await;
    }

    // The leader can no longer write past 4 MiB into any file: its log segment is past
    // that, its log file is not.
    let pid = cluster.members[leader].pid().expect("running");
    let log_bytes = std::fs::metadata(&cluster.members[leader].log).map_or(0, |m| m.len());
    assert!(
        log_bytes < FILE_SIZE_LIMIT / 2,
        "the member's log file is {log_bytes} bytes"
    );
    prlimit(
        Pid::from_raw(pid as i32),
        Resource::Fsize,
        Rlimit {
            current: Some(FILE_SIZE_LIMIT),
            maximum: Some(FILE_SIZE_LIMIT),
        },
    )
    .expect("lower the leader's file-size limit");
    let broken_id = {
        let mut b = client_of(cluster.members[leader].endpoint()).await;
        b.status()
            .await
            .expect("status")
            .header()
            .expect("header")
            .member_id()
    };

    // A write through another member: the leader's own log write fails, the others accept.
    let others: Vec<String> = (0..3)
        .filter(|&i| i != leader)
        .map(|i| cluster.members[i].endpoint())
        .collect();
    let mut healthy = client(&others).await;
    put_retry(&mut healthy, "during".into(), "2".into()).await;

    // The broken member raises the alarm and stays up.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut broken = client_of(cluster.members[leader].endpoint()).await;
    loop {
        assert!(
            cluster.members[leader].is_running(),
            "the member whose log failed exited:\n{}",
            cluster.log_of(leader)
        );
        let alarms = broken
            .alarm(AlarmAction::Get, AlarmType::None, None)
            .await
            .expect("alarm list");
        if alarms
            .alarms()
            .iter()
            .any(|a| a.alarm() == AlarmType::Nospace && a.member_id() == broken_id)
        {
            break;
        }
        assert!(Instant::now() < deadline, "no NOSPACE alarm raised");
        // Writes keep arriving so the failure is met whatever the timing.
        let _ = healthy.put("during", "3", None).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let status = broken.status().await.expect("status");
    assert!(
        status
            .errors()
            .iter()
            .any(|e| e == &format!("memberID:{broken_id} alarm:NOSPACE")),
        "endpoint status does not report the alarm: {:?}",
        status.errors()
    );
    // Writes through it are refused with etcd's error for the NOSPACE alarm.
    match broken.put("refused", "x", None).await {
        Err(etcd_client::Error::GRpcStatus(s)) => {
            assert_eq!(s.code(), tonic::Code::ResourceExhausted);
            assert_eq!(s.message(), "etcdserver: mvcc: database space exceeded");
        }
        other => panic!("a write through the broken member was not refused: {other:?}"),
    }
    // Reads are still served there.
    let r = broken
        .get(
            "before",
            Some(etcd_client::GetOptions::new().with_serializable()),
        )
        .await
        .expect("a serializable read at the broken member");
    assert_eq!(r.kvs().len(), 1);

    // The others elect a leader that can write, and serve writes.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut h = client_of(others[0].clone()).await;
        if let Ok(s) = h.status().await {
            if s.leader() != 0 && s.leader() != broken_id {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the member that cannot write its log still leads"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    put_retry(&mut healthy, "after".into(), "4".into()).await;
    let metrics = http_get(&cluster.members[leader].endpoint(), "/metrics");
    assert!(
        metrics.contains("synod_alarm_active{alarm=\"NOSPACE\"} 1"),
        "metrics do not show the alarm:\n{metrics}"
    );
    let health = http_get(&cluster.members[leader].endpoint(), "/health");
    assert!(
        health.contains(r#"{"health":"false","reason":"ALARM NOSPACE"}"#),
        "{health}"
    );
    assert!(cluster.log_of(leader).contains("NOSPACE"));
    assert!(cluster.members[leader].is_running());
}
