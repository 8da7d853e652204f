//! The peer transport over real sockets on 127.0.0.1: delivery, batching, reconnects,
//! handshake refusals, incarnations, malformed input and bounded queues. Run with
//! `RUST_LOG=debug` to see the transport's logs.

mod peer_wire;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use peer_wire::{batch, closed_by_server, frame};
use synod_paxos::{Ballot, Body, Message, NodeId};
use synod_server::transport::{Transport, TransportConfig, TransportTuning};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::mpsc;
use tokio::time::timeout;

const CLUSTER: u64 = 0x5eed;
/// Upper bound for anything that should happen; tests poll and finish as soon as it does.
const WAIT: Duration = Duration::from_secs(10);
/// An address nothing listens on: port 1 on loopback refuses at once.
const NOWHERE: &str = "127.0.0.1:1";

fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

fn heartbeat(from: NodeId, to: NodeId, round: u64) -> Message {
    Message {
        from,
        to,
        body: Body::Heartbeat {
            ballot: Ballot::new(4, from),
            commit: 17,
            round,
        },
    }
}

fn round_of(m: &Message) -> u64 {
    match m.body {
        Body::Heartbeat { round, .. } => round,
        ref other => panic!("unexpected {other:?}"),
    }
}

fn config(self_id: NodeId, peers: &[(NodeId, String)]) -> TransportConfig {
    let mut cfg = TransportConfig::new(
        CLUSTER,
        self_id,
        "127.0.0.1:0".parse().unwrap(),
        peers.iter().cloned().collect(),
    );
    cfg.reconnect_backoff_min = Duration::from_millis(10);
    cfg.reconnect_backoff_max = Duration::from_millis(100);
    cfg
}

struct Node {
    t: Transport,
    rx: mpsc::Receiver<Message>,
}

async fn start(cfg: TransportConfig, tuning: TransportTuning) -> Node {
    init_logs();
    let (tx, rx) = mpsc::channel(1024);
    let t = Transport::start_with(cfg, tuning, tx).await.unwrap();
    Node { t, rx }
}

/// Nodes with the given ids, each a peer of every other one.
async fn cluster(ids: &[NodeId]) -> Vec<Node> {
    let mut nodes = Vec::new();
    for &id in ids {
        nodes.push(start(config(id, &[]), TransportTuning::default()).await);
    }
    let addrs: BTreeMap<NodeId, String> = ids
        .iter()
        .zip(&nodes)
        .map(|(&id, n)| (id, n.t.local_addr().to_string()))
        .collect();
    for n in &nodes {
        // Our own entry is ignored by the transport.
        n.t.update_peers(addrs.clone());
    }
    nodes
}

async fn recv(node: &mut Node) -> Message {
    timeout(WAIT, node.rx.recv())
        .await
        .expect("timed out waiting for a message")
        .expect("inbound channel closed")
}

async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Gives stray messages a moment to arrive, then checks none did.
async fn assert_nothing_delivered(node: &mut Node) {
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(node.rx.try_recv().is_err(), "a message was delivered");
}

/// An address for a node that starts later. The socket holds the port until then (so no
/// other test's connection takes it) without listening, so dials to it are refused; the
/// node can bind it too, since both set SO_REUSEADDR and only one listens.
fn reserve_addr() -> (TcpSocket, SocketAddr) {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_reuseaddr(true).unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = socket.local_addr().unwrap();
    (socket, addr)
}

// ---- raw wire helpers (tests/peer_wire), for this file's cluster ----

fn hello(cluster: u64, from: NodeId, to: NodeId) -> Vec<u8> {
    peer_wire::hello(cluster, from, to, 0)
}

/// A hello presenting `incarnation` (`TransportConfig::new` gives transports 0).
fn hello_as(cluster: u64, from: NodeId, to: NodeId, incarnation: u64) -> Vec<u8> {
    peer_wire::hello(cluster, from, to, incarnation)
}

/// Connects and handshakes as `from`; the transport must accept.
async fn raw_peer(addr: SocketAddr, from: NodeId, to: NodeId) -> TcpStream {
    raw_peer_as(addr, from, to, 0).await.0
}

/// Connects and handshakes as `from` presenting `incarnation`; the transport must accept.
/// Returns the stream and the acceptor's incarnation.
async fn raw_peer_as(
    addr: SocketAddr,
    from: NodeId,
    to: NodeId,
    incarnation: u64,
) -> (TcpStream, u64) {
    peer_wire::handshake(addr, CLUSTER, from, to, incarnation).await
}

// ---- delivery ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_exchange_messages_both_ways() {
    let ids = [1, 2, 3];
    let mut nodes = cluster(&ids).await;
    for (i, &from) in ids.iter().enumerate() {
        for &to in &ids {
            if to != from {
                nodes[i].t.send(heartbeat(from, to, 100 * from + to));
            }
        }
    }
    for (i, &me) in ids.iter().enumerate() {
        let mut senders = Vec::new();
        for _ in 0..2 {
            let m = recv(&mut nodes[i]).await;
            assert_eq!(m.to, me);
            assert_eq!(m, heartbeat(m.from, me, 100 * m.from + me));
            senders.push(m.from);
        }
        senders.sort();
        let others: Vec<NodeId> = ids.iter().copied().filter(|&x| x != me).collect();
        assert_eq!(senders, others);
    }
    for n in &nodes {
        // The sender counts a write once it returns, possibly after the peer has read it.
        eventually("sends counted", || n.t.stats().messages_sent == 2).await;
        let s = n.t.stats();
        assert_eq!(s.messages_received, 2);
        // (Handshake refusals may have happened: a node can dial a peer whose peer list
        // was not updated yet.)
        assert_eq!(s.decode_errors, 0);
        assert!(s.peers.values().all(|p| p.connected && p.queued == 0));
    }
    // A large Accept, with values inside, crosses intact.
    let big = Message {
        from: 1,
        to: 2,
        body: Body::Accept {
            ballot: Ballot::new(9, 1),
            first_slot: 5,
            values: vec![
                std::sync::Arc::new(synod_paxos::Value::Commands(vec![
                    synod_paxos::Command::new(7, 8, vec![0xab; 100_000]),
                ])),
                std::sync::Arc::new(synod_paxos::Value::Noop),
            ],
            commit: 4,
        },
    };
    nodes[0].t.send(big.clone());
    assert_eq!(recv(&mut nodes[1]).await, big);
}

#[tokio::test(flavor = "current_thread")]
async fn ten_thousand_messages_arrive_in_order_in_few_frames() {
    let a = start(
        TransportConfig {
            queue_messages_max: 20_000,
            ..config(1, &[])
        },
        TransportTuning::default(),
    )
    .await;
    let (tx, rx) = mpsc::channel(64); // small: the reader must wait for the replica
    let b = Transport::start(config(2, &[(1, a.t.local_addr().to_string())]), tx)
        .await
        .unwrap();
    let mut b = Node { t: b, rx };
    a.t.update_peers([(2, b.t.local_addr().to_string())].into());

    // Warm up so the connection exists, then queue everything without yielding: on this
    // single-threaded runtime the writer sees all 10,000 at once.
    a.t.send(heartbeat(1, 2, u64::MAX));
    assert_eq!(round_of(&recv(&mut b).await), u64::MAX);
    let frames_before = a.t.stats().frames_sent;
    for round in 0..10_000 {
        a.t.send(heartbeat(1, 2, round));
    }
    for round in 0..10_000 {
        assert_eq!(round_of(&recv(&mut b).await), round);
    }
    eventually("sends counted", || a.t.stats().messages_sent == 10_001).await;
    let s = a.t.stats();
    assert_eq!(s.dropped_queue_full, 0);
    let frames = s.frames_sent - frames_before;
    assert!(frames <= 2, "10,000 small messages took {frames} frames");
    assert_eq!(b.t.stats().messages_received, 10_001);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_split_at_the_byte_limit_keep_order() {
    let small_batches = TransportTuning {
        batch_bytes_max: 1000,
        ..TransportTuning::default()
    };
    let a = start(
        TransportConfig {
            queue_messages_max: 20_000,
            ..config(1, &[])
        },
        small_batches,
    )
    .await;
    let mut b = start(
        config(2, &[(1, a.t.local_addr().to_string())]),
        TransportTuning::default(),
    )
    .await;
    a.t.update_peers([(2, b.t.local_addr().to_string())].into());

    // Sent from a plain thread, as the replica's driver does.
    let sender = a.t.clone();
    let driver = std::thread::spawn(move || {
        for round in 0..10_000 {
            sender.send(heartbeat(1, 2, round));
        }
    });
    for round in 0..10_000 {
        assert_eq!(round_of(&recv(&mut b).await), round);
    }
    driver.join().unwrap();
    eventually("sends counted", || a.t.stats().messages_sent == 10_000).await;
    let s = a.t.stats();
    assert_eq!((s.messages_sent, s.dropped_queue_full), (10_000, 0));
    // ~9-byte messages, 1000-byte batches.
    assert!(s.frames_sent >= 50, "{} frames", s.frames_sent);
    assert_eq!(b.t.stats().frames_received, s.frames_sent);
    assert_eq!(b.t.stats().bytes_received, s.bytes_sent);
}

// ---- reconnects ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_starting_later_gets_what_was_queued() {
    let (_reserved, b_addr) = reserve_addr();
    let a = start(
        config(1, &[(2, b_addr.to_string())]),
        TransportTuning::default(),
    )
    .await;
    for round in 0..5 {
        a.t.send(heartbeat(1, 2, round));
    }
    eventually("a few failed dials", || a.t.stats().connect_failures >= 2).await;
    assert!(!a.t.stats().peers[&2].connected);
    assert_eq!(a.t.stats().peers[&2].queued, 5);

    let mut b = start(
        TransportConfig {
            listen: b_addr,
            ..config(2, &[(1, a.t.local_addr().to_string())])
        },
        TransportTuning::default(),
    )
    .await;
    for round in 0..5 {
        assert_eq!(round_of(&recv(&mut b).await), round);
    }
    eventually("sends counted", || a.t.stats().messages_sent == 5).await;
    let s = a.t.stats();
    assert_eq!(s.connects, 1);
    assert!(s.peers[&2].connected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_restarting_on_the_same_port_is_redialed() {
    let mut nodes = cluster(&[1, 2]).await;
    let mut b = nodes.pop().unwrap();
    let a = nodes.pop().unwrap();
    a.t.send(heartbeat(1, 2, 1));
    assert_eq!(round_of(&recv(&mut b).await), 1);

    let b_addr = b.t.local_addr();
    b.t.shutdown().await;
    // Shutdown closed the replica's channel once every reader was gone.
    assert!(timeout(WAIT, b.rx.recv()).await.unwrap().is_none());
    eventually("a notices the peer went away", || {
        !a.t.stats().peers[&2].connected
    })
    .await;

    let mut b = start(
        TransportConfig {
            listen: b_addr,
            ..config(2, &[(1, a.t.local_addr().to_string())])
        },
        TransportTuning::default(),
    )
    .await;
    // Sent while b was down or coming up: queued, then delivered on the new connection.
    a.t.send(heartbeat(1, 2, 2));
    assert_eq!(round_of(&recv(&mut b).await), 2);
    a.t.send(heartbeat(1, 2, 3));
    assert_eq!(round_of(&recv(&mut b).await), 3);
    assert_eq!(a.t.stats().connects, 2);
    // And the other direction reaches a, which kept its state.
    b.t.send(heartbeat(2, 1, 4));
    let mut a = a;
    assert_eq!(round_of(&recv(&mut a).await), 4);
}

// ---- handshake refusals ----

/// Node 2 of `CLUSTER` knowing only node 1.
async fn lone_node_2() -> Node {
    start(
        config(2, &[(1, NOWHERE.to_owned())]),
        TransportTuning::default(),
    )
    .await
}

async fn assert_dialer_refused(b: &mut Node, dialer: TransportConfig, to: NodeId) {
    let d = start(dialer, TransportTuning::default()).await;
    let from = d.t.stats().peers.keys().next().copied();
    assert_eq!(from, Some(to));
    d.t.send(heartbeat(1, to, 1));
    eventually("the dialer is refused twice", || {
        d.t.stats().handshakes_refused_by_peer >= 2
    })
    .await;
    let sb = b.t.stats();
    assert!(sb.handshake_refusals >= 2);
    assert_eq!((sb.inbound_accepted, sb.messages_received), (0, 0));
    assert!(!sb.peers[&1].inbound_connected);
    let sd = d.t.stats();
    assert_eq!((sd.connects, sd.messages_sent), (0, 0));
    assert_eq!(
        sd.peers[&to].queued, 1,
        "the message waits for a connection"
    );
    assert_nothing_delivered(b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_cluster_id_is_refused() {
    let mut b = lone_node_2().await;
    let addr = b.t.local_addr().to_string();
    let dialer = TransportConfig {
        cluster_id: CLUSTER + 1,
        ..config(1, &[(2, addr)])
    };
    assert_dialer_refused(&mut b, dialer, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_sender_is_refused() {
    let mut b = lone_node_2().await;
    let addr = b.t.local_addr().to_string();
    // Node 9 is not in b's peer list.
    let d = start(config(9, &[(2, addr)]), TransportTuning::default()).await;
    d.t.send(heartbeat(9, 2, 1));
    eventually("node 9 is refused", || {
        d.t.stats().handshakes_refused_by_peer >= 2
    })
    .await;
    assert_eq!(b.t.stats().inbound_accepted, 0);
    assert_nothing_delivered(&mut b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_receiver_id_is_refused() {
    let mut b = lone_node_2().await;
    let addr = b.t.local_addr().to_string();
    // Node 1 believes node 3 lives at b's address.
    assert_dialer_refused(&mut b, config(1, &[(3, addr)]), 3).await;
}

/// A refusal says "refused" and nothing else: the dialer may be a stranger, and must not
/// learn the cluster id, the member ids or a recorded incarnation from it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_say_only_refused() {
    let b = lone_node_2().await;
    let addr = b.t.local_addr();
    let mut old_version = hello(CLUSTER, 1, 2);
    old_version[12] = 1;
    // Version 2 had no application messages (`Body::App`).
    let mut previous_version = hello(CLUSTER, 1, 2);
    previous_version[12] = 2;
    for hello in [
        hello(CLUSTER + 1, 1, 2), // another cluster
        hello(CLUSTER, 1, 5),     // not addressed to node 2
        hello(CLUSTER, 7, 2),     // not a peer
        hello(CLUSTER, 2, 2),     // itself
        old_version,
        previous_version,
    ] {
        let answer = peer_wire::answer_to(addr, &hello).await;
        assert_eq!(
            answer,
            frame(b"\x01refused"),
            "{:?}",
            String::from_utf8_lossy(&answer)
        );
    }
    assert_eq!(b.t.stats().handshake_refusals, 6);
}

// ---- incarnations ----

/// A config with an incarnation and a durable record of its peers' incarnations.
fn config_as(
    self_id: NodeId,
    peers: &[(NodeId, String)],
    incarnation: u64,
    record: &std::path::Path,
) -> TransportConfig {
    TransportConfig {
        incarnation,
        peer_incarnations: Some(record.join("peer-incarnations")),
        member_names: [(1, "a".to_owned()), (2, "b".to_owned())].into(),
        ..config(self_id, peers)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_incarnation_is_refused_and_the_record_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut b = start(
        config_as(2, &[(1, NOWHERE.to_owned())], 0xb1, dir.path()),
        TransportTuning::default(),
    )
    .await;
    let addr = b.t.local_addr();
    // Node 1 as first seen: accepted, told b's incarnation, recorded before delivery.
    let (mut s, theirs) = raw_peer_as(addr, 1, 2, 0xa1).await;
    assert_eq!(theirs, 0xb1);
    let record = std::fs::read_to_string(dir.path().join("peer-incarnations")).unwrap();
    assert!(record.contains("\n1 00000000000000a1\n"), "{record}");
    s.write_all(&batch(&[heartbeat(1, 2, 1)])).await.unwrap();
    assert_eq!(round_of(&recv(&mut b).await), 1);

    // Node 1 again with another incarnation (its data directory was replaced): refused,
    // with a status that says so, and the connection of the known incarnation survives.
    let refused = |answer: Vec<u8>| {
        assert!(answer.len() > 5, "{answer:?}");
        assert_eq!(answer[4], 2, "refused as replaced");
        String::from_utf8_lossy(&answer[5..]).into_owned()
    };
    let mut impostor = TcpStream::connect(addr).await.unwrap();
    impostor
        .write_all(&hello_as(CLUSTER, 1, 2, 0xa2))
        .await
        .unwrap();
    // Only "refused": the recorded incarnation is not for the remote side to learn (the
    // reason goes to this node's log).
    let reason = refused(closed_by_server(&mut impostor).await);
    assert_eq!(reason, "refused");
    let st = b.t.stats();
    assert_eq!((st.incarnation_refusals, st.handshake_refusals), (1, 1));
    s.write_all(&batch(&[heartbeat(1, 2, 2)])).await.unwrap();
    assert_eq!(round_of(&recv(&mut b).await), 2);
    assert!(b.t.stats().peers[&1].inbound_connected);
    drop(s);

    // b restarts on the same record: the replaced incarnation is still refused, the
    // recorded one accepted.
    b.t.shutdown().await;
    let mut b = start(
        config_as(2, &[(1, NOWHERE.to_owned())], 0xb1, dir.path()),
        TransportTuning::default(),
    )
    .await;
    let addr = b.t.local_addr();
    let mut impostor = TcpStream::connect(addr).await.unwrap();
    impostor
        .write_all(&hello_as(CLUSTER, 1, 2, 0xa2))
        .await
        .unwrap();
    assert_eq!(refused(closed_by_server(&mut impostor).await), "refused");
    assert_eq!(b.t.stats().incarnation_refusals, 1);
    let (mut s, theirs) = raw_peer_as(addr, 1, 2, 0xa1).await;
    assert_eq!(theirs, 0xb1);
    s.write_all(&batch(&[heartbeat(1, 2, 3)])).await.unwrap();
    assert_eq!(round_of(&recv(&mut b).await), 3);
    assert_nothing_delivered(&mut b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_restarted_with_another_incarnation_is_cut_off_both_ways() {
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut b = start(
        config_as(2, &[], 0xb1, dir_b.path()),
        TransportTuning::default(),
    )
    .await;
    let b_addr = b.t.local_addr().to_string();
    let mut a = start(
        config_as(1, &[(2, b_addr.clone())], 0xa1, dir_a.path()),
        TransportTuning::default(),
    )
    .await;
    let a_addr = a.t.local_addr();
    b.t.update_peers([(1, a_addr.to_string())].into());
    a.t.send(heartbeat(1, 2, 1));
    assert_eq!(round_of(&recv(&mut b).await), 1);
    b.t.send(heartbeat(2, 1, 2));
    assert_eq!(round_of(&recv(&mut a).await), 2);

    // a comes back on the same address with an emptied data directory.
    a.t.shutdown().await;
    eventually("b notices a went away", || {
        let p = &b.t.stats().peers[&1];
        !p.connected && !p.inbound_connected
    })
    .await;
    let wiped = tempfile::tempdir().unwrap();
    let mut a2 = start(
        TransportConfig {
            listen: a_addr,
            ..config_as(1, &[(2, b_addr.clone())], 0xa2, wiped.path())
        },
        TransportTuning::default(),
    )
    .await;
    a2.t.send(heartbeat(1, 2, 3));
    b.t.send(heartbeat(2, 1, 4));
    // b refuses a2's dial (inbound) and closes its own dial to a2 on seeing a2's answer.
    eventually("b refuses a2 both ways", || {
        b.t.stats().incarnation_refusals >= 2 && a2.t.stats().handshakes_refused_by_peer >= 1
    })
    .await;
    let sb = b.t.stats();
    assert!(!sb.peers[&1].connected && !sb.peers[&1].inbound_connected);
    assert_eq!(sb.peers[&1].queued, 1, "nothing was sent to a2");
    let sa = a2.t.stats();
    assert_eq!(
        (sa.connects, sa.messages_sent, sa.messages_received),
        (0, 0, 0)
    );
    assert_nothing_delivered(&mut b).await;
    assert_nothing_delivered(&mut a2).await;

    // The real a, restarted on its data directory, is welcome again, and gets what b had
    // kept queued for it.
    a2.t.shutdown().await;
    let mut a = start(
        TransportConfig {
            listen: a_addr,
            ..config_as(1, &[(2, b_addr)], 0xa1, dir_a.path())
        },
        TransportTuning::default(),
    )
    .await;
    assert_eq!(round_of(&recv(&mut a).await), 4);
    a.t.send(heartbeat(1, 2, 5));
    assert_eq!(round_of(&recv(&mut b).await), 5);
}

// ---- malformed input ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_input_closes_the_connection_and_nothing_else() {
    let mut a = start(config(1, &[]), TransportTuning::default()).await;
    let mut b = start(
        TransportConfig {
            frame_bytes_max: 64 << 10,
            ..config(
                2,
                &[(1, a.t.local_addr().to_string()), (3, NOWHERE.to_owned())],
            )
        },
        TransportTuning::default(),
    )
    .await;
    a.t.update_peers([(2, b.t.local_addr().to_string())].into());
    a.t.send(heartbeat(1, 2, 1));
    assert_eq!(round_of(&recv(&mut b).await), 1);
    let addr = b.t.local_addr();

    // Not our protocol at all: the "length" of "GET " is over the pre-handshake limit.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: synod\r\n\r\n")
        .await
        .unwrap();
    closed_by_server(&mut s).await;

    // A small frame of garbage instead of a hello.
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut garbage = frame(&[0xde, 0xad, 0xbe, 0xef, 0, 1, 2, 3, 4, 5, 6, 7]);
    garbage.extend((0..2000u32).map(|i| (i * 7919 % 251) as u8));
    let _ = s.write_all(&garbage).await;
    closed_by_server(&mut s).await;

    // A hello cut short.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&hello(CLUSTER, 3, 2)[..20]).await.unwrap();
    s.shutdown().await.unwrap();
    closed_by_server(&mut s).await;

    // Handshaken, then a frame over frame_bytes_max.
    let mut s = raw_peer(addr, 3, 2).await;
    s.write_all(&((64u32 << 10) + 1).to_le_bytes())
        .await
        .unwrap();
    closed_by_server(&mut s).await;
    eventually("oversized frame counted", || {
        b.t.stats().oversized_frames == 1
    })
    .await;

    // Handshaken, then a frame cut short by the peer closing.
    let mut s = raw_peer(addr, 3, 2).await;
    s.write_all(&[100, 0, 0, 0, 1, 2, 3]).await.unwrap();
    s.shutdown().await.unwrap();
    closed_by_server(&mut s).await;
    eventually("truncated frame counted", || {
        b.t.stats().truncated_frames == 1
    })
    .await;

    // Handshaken, then garbage in a well-sized frame.
    let mut s = raw_peer(addr, 3, 2).await;
    s.write_all(&frame(&[0xff; 12])).await.unwrap();
    closed_by_server(&mut s).await;

    // Handshaken, then a valid message followed by a corrupt one in the same frame: the
    // whole frame is refused, so not even the valid half is delivered.
    let mut s = raw_peer(addr, 3, 2).await;
    let mut bad = batch(&[heartbeat(3, 2, 50), heartbeat(3, 2, 51)]);
    let last = bad.len() - 1;
    bad[last] = 0xff; // the last varint now claims to continue past the end
    s.write_all(&bad).await.unwrap();
    closed_by_server(&mut s).await;
    eventually("decode errors counted", || b.t.stats().decode_errors == 2).await;

    // Handshaken, then messages that lie about who sends or who receives are dropped,
    // while the connection and the honest message survive.
    let mut s = raw_peer(addr, 3, 2).await;
    s.write_all(&batch(&[
        heartbeat(1, 2, 60), // claims to be node 1
        heartbeat(3, 4, 61), // not for us
        heartbeat(3, 2, 62),
    ]))
    .await
    .unwrap();
    let m = recv(&mut b).await;
    assert_eq!((m.from, round_of(&m)), (3, 62));
    assert_eq!(b.t.stats().dropped_misaddressed, 2);

    // The transport still serves its real peer, both ways.
    a.t.send(heartbeat(1, 2, 2));
    assert_eq!(round_of(&recv(&mut b).await), 2);
    b.t.send(heartbeat(2, 1, 3));
    assert_eq!(round_of(&recv(&mut a).await), 3);
    let s = b.t.stats();
    assert_eq!(s.handshake_refusals, 3);
    assert_eq!(s.messages_received, 3);
    assert!(s.peers[&1].inbound_connected);
    assert_nothing_delivered(&mut b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_bytes_never_break_the_transport() {
    let mut a = start(config(1, &[]), TransportTuning::default()).await;
    let mut b = start(
        TransportConfig {
            frame_bytes_max: 64 << 10,
            ..config(
                2,
                &[(1, a.t.local_addr().to_string()), (3, NOWHERE.to_owned())],
            )
        },
        TransportTuning::default(),
    )
    .await;
    a.t.update_peers([(2, b.t.local_addr().to_string())].into());
    let addr = b.t.local_addr();

    // 200 connections of seeded random bytes, half of them after a valid handshake (as
    // node 3), each closed by the client afterwards; 40 at a time (the limit is 64).
    let mut clients: Vec<tokio::task::JoinHandle<()>> = Vec::new();
    for seed in 0..200u64 {
        if clients.len() == 40 {
            for c in clients.drain(..) {
                c.await.unwrap();
            }
        }
        clients.push(tokio::spawn(async move {
            let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
            let mut next = move || {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x
            };
            let len = (next() % 4096) as usize;
            let mut bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if seed % 4 == 1 && bytes.len() >= 4 {
                // A small, plausible length prefix, so the payload is read and decoded.
                let n = (next() % 200) as u32;
                bytes[..4].copy_from_slice(&n.to_le_bytes());
            }
            let mut s = if seed % 2 == 0 {
                TcpStream::connect(addr).await.unwrap()
            } else {
                raw_peer(addr, 3, 2).await
            };
            let _ = s.write_all(&bytes).await;
            let _ = s.shutdown().await;
            closed_by_server(&mut s).await;
        }));
    }
    for c in clients {
        c.await.unwrap();
    }
    // Whatever random bytes happened to decode was checked; nothing claims to be node 1.
    while let Ok(m) = b.rx.try_recv() {
        assert_eq!((m.from, m.to), (3, 2));
    }
    a.t.send(heartbeat(1, 2, 1));
    let m = recv(&mut b).await;
    assert_eq!((m.from, round_of(&m)), (1, 1));
    b.t.send(heartbeat(2, 1, 2));
    assert_eq!(round_of(&recv(&mut a).await), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_are_closed_after_the_handshake_timeout() {
    let quick = TransportTuning {
        handshake_timeout: Duration::from_millis(200),
        ..TransportTuning::default()
    };
    let b = start(config(2, &[(1, NOWHERE.to_owned())]), quick).await;
    let began = Instant::now();
    let mut silent = TcpStream::connect(b.t.local_addr()).await.unwrap();
    let mut slow = TcpStream::connect(b.t.local_addr()).await.unwrap();
    slow.write_all(&hello(CLUSTER, 1, 2)[..10]).await.unwrap();
    closed_by_server(&mut silent).await;
    closed_by_server(&mut slow).await;
    assert!(began.elapsed() >= Duration::from_millis(200));
    eventually("both refusals counted", || {
        b.t.stats().handshake_refusals == 2
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_connections_are_limited() {
    let two = TransportTuning {
        inbound_connections_max: 2,
        ..TransportTuning::default()
    };
    let mut b = start(config(2, &[(1, NOWHERE.to_owned())]), two).await;
    let addr = b.t.local_addr();
    let idle1 = TcpStream::connect(addr).await.unwrap();
    let idle2 = TcpStream::connect(addr).await.unwrap();
    // The listener accepts in arrival order, so these two take both slots.
    let mut third = TcpStream::connect(addr).await.unwrap();
    closed_by_server(&mut third).await;
    assert_eq!(b.t.stats().inbound_over_limit, 1);

    // Once the idle ones go, a real peer gets in.
    drop((idle1, idle2));
    let a = start(
        config(1, &[(2, addr.to_string())]),
        TransportTuning::default(),
    )
    .await;
    b.t.update_peers([(1, a.t.local_addr().to_string())].into());
    a.t.send(heartbeat(1, 2, 1));
    assert_eq!(round_of(&recv(&mut b).await), 1);
}

// ---- bounded queues ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_drops_the_oldest_and_never_blocks() {
    let (_reserved, b_addr) = reserve_addr();
    let a = start(
        TransportConfig {
            queue_messages_max: 100,
            ..config(1, &[(2, b_addr.to_string())])
        },
        TransportTuning::default(),
    )
    .await;
    let sender = a.t.clone();
    let began = Instant::now();
    std::thread::spawn(move || {
        for round in 0..10_000 {
            sender.send(heartbeat(1, 2, round));
        }
        sender.send(heartbeat(1, 7, 0)); // not a peer
    })
    .join()
    .unwrap();
    assert!(began.elapsed() < Duration::from_secs(2), "send blocked");
    let s = a.t.stats();
    assert_eq!(s.dropped_queue_full, 9_900);
    assert_eq!(s.peers[&2].dropped_queue_full, 9_900);
    assert_eq!(s.peers[&2].queued, 100);
    assert_eq!(s.dropped_unknown_peer, 1);

    // The newest 100 survived and go out once the peer appears.
    let mut b = start(
        TransportConfig {
            listen: b_addr,
            ..config(2, &[(1, a.t.local_addr().to_string())])
        },
        TransportTuning::default(),
    )
    .await;
    for round in 9_900..10_000 {
        assert_eq!(round_of(&recv(&mut b).await), round);
    }
    assert_nothing_delivered(&mut b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_messages_are_dropped_by_the_sender() {
    let mut b = start(config(2, &[]), TransportTuning::default()).await;
    // A frame limit on the sender only: a 2 KiB forward cannot be sent, the heartbeat
    // behind it can.
    let small = start(
        TransportConfig {
            frame_bytes_max: 1024,
            ..config(3, &[(2, b.t.local_addr().to_string())])
        },
        TransportTuning::default(),
    )
    .await;
    b.t.update_peers([(3, small.t.local_addr().to_string())].into());
    small.t.send(Message {
        from: 3,
        to: 2,
        body: Body::Forward {
            commands: vec![synod_paxos::Command::new(1, 1, vec![0; 2048])],
        },
    });
    small.t.send(heartbeat(3, 2, 5));
    let m = recv(&mut b).await;
    assert_eq!((m.from, round_of(&m)), (3, 5));
    assert_eq!(small.t.stats().dropped_oversized, 1);
    assert_nothing_delivered(&mut b).await;
}

// ---- membership ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_peers_are_cut_off_and_can_come_back() {
    let mut nodes = cluster(&[1, 2]).await;
    let mut b = nodes.pop().unwrap();
    let a = nodes.pop().unwrap();
    a.t.send(heartbeat(1, 2, 1));
    assert_eq!(round_of(&recv(&mut b).await), 1);

    // b forgets a: a's connection is closed and its redials are refused. (a may have been
    // refused before, while the cluster was being wired up.)
    let refused_before = a.t.stats().handshakes_refused_by_peer;
    b.t.update_peers(BTreeMap::new());
    assert!(b.t.stats().peers.is_empty());
    eventually("a is cut off and refused", || {
        let s = a.t.stats();
        !s.peers[&2].connected && s.handshakes_refused_by_peer > refused_before
    })
    .await;
    b.t.send(heartbeat(2, 1, 0));
    assert_eq!(b.t.stats().dropped_unknown_peer, 1);

    // b takes a back: a's queued message goes through.
    a.t.send(heartbeat(1, 2, 2));
    b.t.update_peers([(1, a.t.local_addr().to_string())].into());
    assert_eq!(round_of(&recv(&mut b).await), 2);

    // a forgets b: sends to it are dropped, counted.
    a.t.update_peers(BTreeMap::new());
    a.t.send(heartbeat(1, 2, 3));
    assert_eq!(a.t.stats().dropped_unknown_peer, 1);
    assert_nothing_delivered(&mut b).await;
}
