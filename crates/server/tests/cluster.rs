//! End-to-end: three real `synod` processes, driven through the `etcd-client` crate.

mod support;

use etcd_client::{Compare, CompareOp, GetOptions, PutOptions, Txn, TxnOp};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};
use support::{client, put_retry, wait_leader, Cluster, ELECTION_MS};

const LEADER_WAIT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_member_serves_reads_and_writes() {
    let mut cluster = Cluster::start(3);
    let leader = wait_leader(&mut cluster, LEADER_WAIT).await;

    // Writes through each member, followers included (they forward to the leader).
    for i in 0..3 {
        let mut c = client(&[cluster.members[i].endpoint()]).await;
        let put = c
            .put(format!("k{i}"), format!("v{i}"), None)
            .await
            .unwrap_or_else(|e| panic!("put through member {i} (leader {leader}): {e}"));
        assert!(put.header().unwrap().revision() >= 2);
    }
    // Linearizable reads at every member see every write.
    for i in 0..3 {
        let mut c = client(&[cluster.members[i].endpoint()]).await;
        for j in 0..3 {
            let r = c.get(format!("k{j}"), None).await.unwrap();
            assert_eq!(r.kvs().len(), 1, "member {i} reading k{j}");
            assert_eq!(r.kvs()[0].value(), format!("v{j}").as_bytes());
        }
        let all = c
            .get("k", Some(GetOptions::new().with_prefix()))
            .await
            .unwrap();
        assert_eq!(all.count(), 3);
    }

    let mut c = client(&cluster.endpoints()).await;
    // Versions and revisions as etcd keeps them.
    let first = c
        .put("ver", "1", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();
    c.put("ver", "2", None).await.unwrap();
    let kv = c.get("ver", None).await.unwrap().kvs()[0].clone();
    assert_eq!((kv.version(), kv.create_revision()), (2, first));
    let prev = c
        .put("ver", "3", Some(PutOptions::new().with_prev_key()))
        .await
        .unwrap();
    assert_eq!(prev.prev_key().unwrap().value(), b"2");

    // Compare-and-set.
    let txn = Txn::new()
        .when([Compare::value("ver", CompareOp::Equal, "3")])
        .and_then([TxnOp::put("ver", "4", None)])
        .or_else([TxnOp::get("ver", None)]);
    assert!(c.txn(txn.clone()).await.unwrap().succeeded());
    assert!(!c.txn(txn).await.unwrap().succeeded());

    // Delete.
    let deleted = c.delete("ver", None).await.unwrap();
    assert_eq!(deleted.deleted(), 1);
    assert_eq!(c.get("ver", None).await.unwrap().count(), 0);

    // Errors are etcd's.
    let e = c.put("", "x", None).await.unwrap_err().to_string();
    assert!(e.contains("etcdserver: key is not provided"), "{e}");
    let e = c
        .get("k0", Some(GetOptions::new().with_revision(1_000_000)))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("required revision is a future revision"), "{e}");

    // Cluster and maintenance calls etcdctl relies on.
    let members = c.member_list().await.unwrap();
    assert_eq!(members.members().len(), 3);
    let status = c.status().await.unwrap();
    assert!(status.db_size() > 0);
    assert_ne!(status.leader(), 0);
    assert!(c
        .alarm(
            etcd_client::AlarmAction::Get,
            etcd_client::AlarmType::None,
            None
        )
        .await
        .unwrap()
        .alarms()
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_crash_loses_no_acknowledged_write() {
    let mut cluster = Cluster::start(3);
    let leader = wait_leader(&mut cluster, LEADER_WAIT).await;
    let mut c = client(&cluster.endpoints()).await;
    for k in 0..100 {
        put_retry(&mut c, format!("a{k:03}"), format!("{k}")).await;
    }

    cluster.kill(leader);
    let killed_at = Instant::now();
    // Clients of the survivors see a new leader serve writes within a few election timeouts.
    let survivors: Vec<String> = (0..3)
        .filter(|&i| i != leader)
        .map(|i| cluster.members[i].endpoint())
        .collect();
    let mut c = client(&survivors).await;
    let bound = Duration::from_millis(ELECTION_MS * 15);
    loop {
        match c.put("z-after-crash", "x", None).await {
            Ok(_) => break,
            Err(e) => {
                assert!(
                    killed_at.elapsed() < bound,
                    "no write served {bound:?} after the crash: {e}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    eprintln!(
        "a new leader served a write {:?} after the crash",
        killed_at.elapsed()
    );
    for k in 100..150 {
        put_retry(&mut c, format!("a{k:03}"), format!("{k}")).await;
    }
    let r = c
        .get("a", Some(GetOptions::new().with_prefix()))
        .await
        .unwrap();
    assert_eq!(r.count(), 150, "an acknowledged write was lost");

    // The old leader restarts and catches up.
    cluster.spawn(leader);
    let mut old = client(&[cluster.members[leader].endpoint()]).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = old
            .get(
                "a",
                Some(GetOptions::new().with_prefix().with_serializable()),
            )
            .await;
        if let Ok(r) = r {
            if r.count() == 150 {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the restarted member did not catch up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_cluster_recovers_its_data() {
    let mut cluster = Cluster::start(3);
    wait_leader(&mut cluster, LEADER_WAIT).await;
    let mut c = client(&cluster.endpoints()).await;
    for k in 0..50 {
        put_retry(&mut c, format!("r{k:02}"), format!("{k}")).await;
    }
    c.delete("r00", None).await.unwrap();
    let revision = c.get("r", None).await.unwrap().header().unwrap().revision();
    drop(c);
    for i in 0..3 {
        assert!(cluster.stop(i).success(), "member {i} did not exit cleanly");
    }
    for i in 0..3 {
        cluster.spawn(i);
    }
    wait_leader(&mut cluster, LEADER_WAIT).await;
    let mut c = client(&cluster.endpoints()).await;
    let r = c
        .get("r", Some(GetOptions::new().with_prefix()))
        .await
        .unwrap();
    assert_eq!(r.count(), 49);
    assert!(r.header().unwrap().revision() >= revision);
    assert_eq!(c.get("r07", None).await.unwrap().kvs()[0].value(), b"7");
}

/// Bytes thrown at a port: the connection may be closed, the process must live on.
fn throw(port: u16, bytes: &[u8]) {
    if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
        let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
        let _ = s.write_all(bytes);
        let mut buf = [0u8; 256];
        let _ = s.read(&mut buf);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_input_gets_an_error_never_a_crash() {
    let mut cluster = Cluster::start(3);
    wait_leader(&mut cluster, LEADER_WAIT).await;
    let garbage: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let mut oversized = Vec::from(u32::MAX.to_le_bytes());
    oversized.extend_from_slice(&[0xAB; 64]);
    let mut fake_handshake = Vec::from(&b"SYNODPX1"[..]);
    fake_handshake.extend_from_slice(&[0xFF; 40]);
    let http2_garbage =
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x04\x01\x00\x00\x00\x00\x00garbage";
    for m in 0..3 {
        for bytes in [
            &garbage[..],
            &oversized[..],
            &fake_handshake[..],
            &http2_garbage[..],
            b"",
        ] {
            throw(cluster.members[m].peer_port, bytes);
            throw(cluster.members[m].client_port, bytes);
        }
    }
    // A plain HTTP request on the client port gets /health.
    let mut s = TcpStream::connect(("127.0.0.1", cluster.members[0].client_port)).unwrap();
    s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    assert!(body.contains("\"health\":\"true\""), "{body}");

    for m in 0..3 {
        assert!(
            cluster.members[m].is_running(),
            "member {m} died on malformed input"
        );
    }
    let mut c = client(&cluster.endpoints()).await;
    c.put("still", "alive", None).await.unwrap();
}
