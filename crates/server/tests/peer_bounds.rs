//! End-to-end: what a peer can make a `synod` process hold or install.
//! The test plays a member that was killed (with its ids and incarnation, read from its
//! data directory) and speaks the peer protocol by hand (`peer_wire`).
//!
//! - A snapshot being received holds memory only while its transfer can complete: a
//!   snapshot announcing more than the bound is refused, and a partial one is freed when
//!   its sender disconnects or stalls (measured as the process's RSS).
//! - Only the leader may send a snapshot.
//! - A handshake refusal tells the dialer nothing but "refused".

mod peer_wire;
mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use etcd_client::GetOptions;
use peer_wire::{answer_to, frame, hello};
use support::{client, eventually, put_retry, wait_leader, Cluster};
use synod_paxos::{Ballot, Body, Message, NodeId};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

const LEADER_WAIT: Duration = Duration::from_secs(20);
const WAIT: Duration = Duration::from_secs(30);
const MIB: u64 = 1 << 20;
/// A slot far ahead of anything the cluster chose, so the member wants the snapshot.
const FAR_SLOT: u64 = 1 << 40;

/// Ids and incarnation from a data directory's `member` file.
#[derive(Clone, Copy, Debug)]
struct Identity {
    member_id: NodeId,
    cluster_id: u64,
    incarnation: u64,
}

fn identity(data_dir: &Path) -> Identity {
    let text = std::fs::read_to_string(data_dir.join("member")).expect("a member file");
    let field = |name: &str| {
        let hex = text
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix('='))
            .unwrap_or_else(|| panic!("no {name} in {text}"));
        u64::from_str_radix(hex, 16).unwrap()
    };
    Identity {
        member_id: field("member_id"),
        cluster_id: field("cluster_id"),
        incarnation: field("incarnation"),
    }
}

fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("VmRSS in /proc/<pid>/status");
    kib << 10
}

/// Listens on a killed member's peer port as that member: accepts the dials of the others
/// and hands over what they send.
async fn listen_as(port: u16, me: Identity) -> mpsc::Receiver<Message> {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_reuseaddr(true).unwrap();
    socket
        .bind(SocketAddr::from(([127, 0, 0, 1], port)))
        .unwrap();
    let listener = socket.listen(16).unwrap();
    let (tx, rx) = mpsc::channel(1024);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let accepted =
                    peer_wire::accept(&mut s, me.cluster_id, me.member_id, me.incarnation).await;
                if accepted.is_none() {
                    return;
                }
                while let Ok(messages) = peer_wire::read_batch(&mut s).await {
                    for m in messages {
                        if tx.send(m).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    rx
}

/// A connection to a member, as `me`. Sends what it is given and, if asked, a heartbeat
/// every 50 ms (a quarter of the tests' election timeout) to stay the member's leader.
struct Link {
    from: NodeId,
    to: NodeId,
    frames: mpsc::Sender<Vec<u8>>,
    task: JoinHandle<()>,
}

impl Link {
    async fn dial(addr: SocketAddr, me: Identity, to: NodeId, lead: Option<Ballot>) -> Link {
        let (mut s, _) =
            peer_wire::handshake(addr, me.cluster_id, me.member_id, to, me.incarnation).await;
        let (frames, mut rx) = mpsc::channel::<Vec<u8>>(16);
        let from = me.member_id;
        let task = tokio::spawn(async move {
            let mut beat = tokio::time::interval(Duration::from_millis(50));
            let mut round = 0;
            loop {
                let frame = tokio::select! {
                    f = rx.recv() => match f {
                        Some(f) => f,
                        None => return, // dropping the stream closes the connection
                    },
                    _ = beat.tick(), if lead.is_some() => {
                        round += 1;
                        let ballot = lead.expect("checked");
                        let body = Body::Heartbeat { ballot, commit: 0, round };
                        peer_wire::batch(&[Message { from, to, body }])
                    }
                };
                if s.write_all(&frame).await.is_err() {
                    return;
                }
            }
        });
        Link {
            from,
            to,
            frames,
            task,
        }
    }

    async fn send(&self, body: Body) {
        let m = Message {
            from: self.from,
            to: self.to,
            body,
        };
        self.frames.send(peer_wire::batch(&[m])).await.unwrap();
    }

    /// Sends the pieces of a snapshot announcing `total` bytes, `count` pieces of 1 MiB
    /// (the size a member sends) or until `data` ends.
    async fn send_snapshot(&self, total: u64, data: &Bytes, count: usize) {
        let mut offset = 0;
        for _ in 0..count {
            let end = (offset + MIB as usize).min(data.len());
            if offset == end {
                break;
            }
            let body = Body::SnapshotChunk {
                slot: FAR_SLOT,
                total,
                offset: offset as u64,
                data: data.slice(offset..end),
            };
            self.send(body).await;
            offset = end;
        }
    }

    /// Waits until the member has handled everything sent before: it answers a ReadIndex
    /// (as a follower, at once) after every earlier message of this connection.
    async fn sync(&self, inbox: &mut mpsc::Receiver<Message>, request: u64) {
        self.send(Body::ReadIndex { request }).await;
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let m = tokio::time::timeout(left, inbox.recv())
                .await
                .expect("the member did not answer a ReadIndex")
                .expect("listener gone");
            if matches!(m.body, Body::ReadIndexReply { request: r, .. } if r == request) {
                return;
            }
        }
    }

    async fn close(self) {
        drop(self.frames);
        let _ = self.task.await;
    }
}

async fn leader_id_seen_by(endpoint: String) -> u64 {
    let mut c = client(&[endpoint]).await;
    c.status().await.map_or(0, |s| s.leader())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_reassembly_memory_is_bounded_and_freed() {
    // Two members; the test plays the second once it is killed, and leads the first.
    let mut cluster = Cluster::start(2);
    wait_leader(&mut cluster, LEADER_WAIT).await;
    let (m1, m2) = (identity(cluster.data_dir(0)), identity(cluster.data_dir(1)));
    cluster.kill(1);
    let mut inbox = listen_as(cluster.members[1].peer_port, m2).await;
    let addr = SocketAddr::from(([127, 0, 0, 1], cluster.members[0].peer_port));
    let lead = Some(Ballot::new(1 << 20, m2.member_id));
    let link = Link::dial(addr, m2, m1.member_id, lead).await;
    let endpoint = cluster.members[0].endpoint();
    let deadline = Instant::now() + WAIT;
    while leader_id_seen_by(endpoint.clone()).await != m2.member_id {
        assert!(
            Instant::now() < deadline,
            "the member does not follow the test"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    link.sync(&mut inbox, 1).await;
    let pid = cluster.members[0].pid().unwrap();
    let base = rss_bytes(pid);
    let data = Bytes::from(vec![0x5a; 270 * MIB as usize]);

    // The report: pieces of a snapshot announcing 16 GiB, 270 MiB of them. Over the bound:
    // refused at its first piece, nothing held.
    link.send_snapshot(16 << 30, &data, 270).await;
    link.sync(&mut inbox, 2).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let refused = rss_bytes(pid);
    assert!(
        refused < base + 64 * MIB,
        "RSS grew from {} MiB to {} MiB on a refused snapshot",
        base / MIB,
        refused / MIB
    );

    // Within the bound, the pieces received are held (the measurement sees them) ...
    link.send_snapshot(1 << 30, &data, 270).await;
    link.sync(&mut inbox, 3).await;
    let receiving = rss_bytes(pid);
    assert!(
        receiving > base + 200 * MIB,
        "RSS {} MiB while receiving 270 MiB (from {} MiB)",
        receiving / MIB,
        base / MIB
    );
    // ... and freed once their sender disconnects.
    link.close().await;
    let closed = Instant::now();
    eventually(
        &cluster,
        "the partial snapshot is freed after the disconnect",
        |_| rss_bytes(pid) < base + 64 * MIB,
    )
    .await;
    eprintln!(
        "RSS: {} MiB before, {} MiB after 270 MiB of a refused 16 GiB snapshot, {} MiB \
         receiving 270 MiB of a 1 GiB one, {} MiB {:?} after its sender disconnected",
        base / MIB,
        refused / MIB,
        receiving / MIB,
        rss_bytes(pid) / MIB,
        closed.elapsed()
    );
    assert!(cluster
        .log_of(0)
        .contains("dropping a partial snapshot: the connection it came on is gone"));

    // A transfer that stops is dropped after the stall timeout (10 s), connection or not.
    let link = Link::dial(addr, m2, m1.member_id, lead).await;
    link.sync(&mut inbox, 4).await;
    link.send_snapshot(1 << 30, &data, 100).await;
    link.sync(&mut inbox, 5).await;
    eventually(&cluster, "the stalled snapshot is dropped", |cluster| {
        cluster
            .log_of(0)
            .contains("dropping a partial snapshot: no piece arrived in time")
    })
    .await;
    link.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_leader_may_send_a_snapshot_and_strangers_learn_nothing() {
    let mut cluster = Cluster::start(3);
    let leader = wait_leader(&mut cluster, LEADER_WAIT).await;
    let (target, fake) = ((leader + 1) % 3, (leader + 2) % 3);
    let mut c = client(&[cluster.members[leader].endpoint()]).await;
    put_retry(&mut c, "k".into(), "v".into()).await;

    // A well-formed snapshot of an empty store for a slot far ahead, with the cluster's
    // membership (from an exported snapshot, which starts with it).
    let mut stream = c.snapshot().await.unwrap();
    let mut exported = Vec::new();
    while let Some(piece) = stream.message().await.unwrap() {
        exported.extend_from_slice(piece.blob());
    }
    let (mut info, _) = synod_server::snapshot::decode(&Bytes::from(exported)).unwrap();
    info.slot = FAR_SLOT;
    let info = synod_paxos::codec::encode_snapshot_info(&info);
    let mut forged = b"SYNSNAP2".to_vec();
    forged.extend_from_slice(&(info.len() as u32).to_le_bytes());
    forged.extend_from_slice(&info);
    synod_kv::KvStore::new()
        .snapshot_view()
        .encode_into(&mut forged);
    let forged = Bytes::from(forged);

    let (to, me) = (
        identity(cluster.data_dir(target)),
        identity(cluster.data_dir(fake)),
    );
    cluster.kill(fake);
    let mut inbox = listen_as(cluster.members[fake].peer_port, me).await;
    let addr = SocketAddr::from(([127, 0, 0, 1], cluster.members[target].peer_port));

    // Strangers, and a member presenting another incarnation, hear only "refused"; the
    // reason goes to the member's own log.
    let stranger = hello(
        me.cluster_id ^ 1,
        me.member_id,
        to.member_id,
        me.incarnation,
    );
    assert_eq!(answer_to(addr, &stranger).await, frame(b"\x01refused"));
    let replaced = hello(
        me.cluster_id,
        me.member_id,
        to.member_id,
        me.incarnation ^ 1,
    );
    assert_eq!(answer_to(addr, &replaced).await, frame(b"\x02refused"));
    assert!(cluster.log_of(target).contains(&format!(
        "cluster id {} is not ours ({})",
        me.cluster_id ^ 1,
        me.cluster_id
    )));

    // The killed member, not the leader, sends the whole snapshot.
    let link = Link::dial(addr, me, to.member_id, None).await;
    let pieces = forged.len().div_ceil(MIB as usize);
    link.send_snapshot(forged.len() as u64, &forged, pieces)
        .await;
    link.sync(&mut inbox, 1).await;
    // Installing would follow within a disk write; give it ample time.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let log = cluster.log_of(target);
    if log.contains("installed a snapshot from a peer") {
        cluster.dump_logs();
        panic!("a member installed a snapshot from a member that is not the leader");
    }
    assert!(log.contains("refusing a snapshot piece: its sender is not the leader"));
    let mut t = client(&[cluster.members[target].endpoint()]).await;
    let got = t
        .get("k", Some(GetOptions::new().with_serializable()))
        .await
        .unwrap();
    assert_eq!(got.kvs().len(), 1, "the member still holds k");
    link.close().await;
}
