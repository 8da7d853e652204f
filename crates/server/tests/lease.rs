//! End to end: etcd's Lease service as the etcd-client crate and etcdctl use it, on a
//! 3-member cluster (heartbeat 20 ms, election 200 ms: the minimum TTL is 1 s). Keep-alives
//! and TimeToLive go through followers as well as the leader; a lease is revoked with all
//! its keys at one revision, expires when not kept alive, and outlives a killed leader when
//! it is.

mod support;

use etcd_client::proto::{PbLeaseKeepAliveRequest, PbLeaseKeepAliveResponse};
use etcd_client::{
    Client, EventType, LeaseGrantOptions, LeaseTimeToLiveOptions, PutOptions, WatchOptions,
};
use std::process::Command;
use std::time::{Duration, Instant};
use support::{client, put_retry, wait_leader, Cluster};
use synod_testkit::Tool;
use tokio::sync::mpsc;
use tonic::Code;

fn status_of(e: etcd_client::Error) -> tonic::Status {
    match e {
        etcd_client::Error::GRpcStatus(s) => s,
        other => panic!("expected a gRPC status, got {other}"),
    }
}

/// The revision `c`'s member is at.
async fn revision(c: &mut Client) -> i64 {
    c.get("any", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision()
}

/// Whether `key` exists (a linearizable read).
async fn exists(c: &mut Client, key: &str) -> bool {
    c.get(key, None).await.unwrap().count() == 1
}

async fn put_with_lease(c: &mut Client, key: &str, lease: i64) {
    c.put(key, "v", Some(PutOptions::new().with_lease(lease)))
        .await
        .unwrap_or_else(|e| panic!("put {key} with lease {lease:x}: {e}"));
}

/// A raw keep-alive stream (etcd-client hides the TTL 0 answer behind an error): requests
/// go in on the sender, answers come out of the stream.
async fn raw_keep_alive(
    endpoint: &str,
) -> (
    mpsc::Sender<PbLeaseKeepAliveRequest>,
    tonic::Streaming<PbLeaseKeepAliveResponse>,
) {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{endpoint}"))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.expect("ready");
    let (tx, rx) = mpsc::channel(4);
    let path =
        tonic::codegen::http::uri::PathAndQuery::from_static("/etcdserverpb.Lease/LeaseKeepAlive");
    let requests = tonic::codegen::tokio_stream::wrappers::ReceiverStream::new(rx);
    let responses = grpc
        .streaming(
            tonic::Request::new(requests),
            path,
            tonic_prost::ProstCodec::default(),
        )
        .await
        .expect("open a keep-alive stream")
        .into_inner();
    (tx, responses)
}

async fn keep_alive_once(
    tx: &mpsc::Sender<PbLeaseKeepAliveRequest>,
    responses: &mut tonic::Streaming<PbLeaseKeepAliveResponse>,
    id: i64,
) -> PbLeaseKeepAliveResponse {
    tx.send(PbLeaseKeepAliveRequest { id }).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), responses.message())
        .await
        .expect("a keep-alive answer within 10 s")
        .expect("the stream is healthy")
        .expect("the stream is open")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_serve_etcd_clients_on_every_member() {
    let mut cluster = Cluster::start(3);
    let leader = wait_leader(&mut cluster, Duration::from_secs(20)).await;
    let follower = (leader + 1) % 3;
    let mut c = client(&[cluster.members[follower].endpoint()]).await;

    // Grant with no id: a positive id picked here, TTL raised to the minimum (1.5 election
    // timeouts, whole seconds: 1 s here); a grant changes no revision.
    let before = revision(&mut c).await;
    let g = c.lease_grant(0, None).await.unwrap();
    assert!(g.id() > 0, "{g:?}");
    assert_eq!(g.ttl(), 1);
    assert_eq!(g.header().unwrap().revision(), before);
    let other = c.lease_grant(5, None).await.unwrap();
    assert_ne!(other.id(), g.id());
    assert_eq!(other.ttl(), 5);

    // Ids the client picks, negative ones included; etcd's errors.
    let id = 0x1234;
    let g = c
        .lease_grant(60, Some(LeaseGrantOptions::new().with_id(id)))
        .await
        .unwrap();
    assert_eq!((g.id(), g.ttl()), (id, 60));
    let s = status_of(
        c.lease_grant(60, Some(LeaseGrantOptions::new().with_id(id)))
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (s.code(), s.message()),
        (Code::FailedPrecondition, "etcdserver: lease already exists")
    );
    let s = status_of(c.lease_grant(9_000_000_001, None).await.unwrap_err());
    assert_eq!(
        (s.code(), s.message()),
        (Code::OutOfRange, "etcdserver: too large lease TTL")
    );
    let g = c
        .lease_grant(60, Some(LeaseGrantOptions::new().with_id(-5)))
        .await
        .unwrap();
    assert_eq!(g.id(), -5);

    // Keys attached in the order z, a, m; TimeToLive on a follower lists them sorted.
    for key in ["lease/z", "lease/a", "lease/m"] {
        put_with_lease(&mut c, key, id).await;
    }
    let kv = c.get("lease/a", None).await.unwrap();
    assert_eq!(kv.kvs()[0].lease(), id);
    let t = c
        .lease_time_to_live(id, Some(LeaseTimeToLiveOptions::new().with_keys()))
        .await
        .unwrap();
    assert_eq!((t.id(), t.granted_ttl()), (id, 60));
    assert!((58..=60).contains(&t.ttl()), "{t:?}");
    assert_eq!(
        t.keys(),
        [
            b"lease/a".to_vec(),
            b"lease/m".to_vec(),
            b"lease/z".to_vec()
        ]
    );
    let now = revision(&mut c).await;
    assert_eq!(t.header().unwrap().revision(), now);
    let unknown = c.lease_time_to_live(9999, None).await.unwrap();
    assert_eq!(
        (unknown.id(), unknown.ttl(), unknown.granted_ttl()),
        (9999, -1, 0)
    );
    assert!(unknown.keys().is_empty());

    // Keep-alive through a follower, with etcd-client: the granted TTL.
    let (mut keeper, mut stream) = c.lease_keep_alive(id).await.unwrap();
    keeper.keep_alive().await.unwrap();
    let renewed = stream.message().await.unwrap().unwrap();
    assert_eq!((renewed.id(), renewed.ttl()), (id, 60));
    assert_eq!(renewed.header().unwrap().revision(), now);
    let s = c.lease_keep_alive(9999).await.unwrap_err();
    assert!(s.to_string().contains("lease not found"), "{s}");

    // The raw stream: an unknown lease is answered TTL 0 and the stream goes on.
    let (tx, mut raw) = raw_keep_alive(&cluster.members[leader].endpoint()).await;
    let r = keep_alive_once(&tx, &mut raw, 9999).await;
    assert_eq!((r.id, r.ttl), (9999, 0));
    assert_eq!(r.header.unwrap().revision, now);
    let r = keep_alive_once(&tx, &mut raw, id).await;
    assert_eq!((r.id, r.ttl), (id, 60));

    // Leases: this member's, by id.
    let listed: Vec<i64> = c
        .leases()
        .await
        .unwrap()
        .leases()
        .iter()
        .map(|l| l.id())
        .collect();
    assert!(listed.contains(&id) && listed.contains(&-5), "{listed:?}");
    assert!(listed.windows(2).all(|w| w[0] < w[1]), "by id: {listed:?}");

    // Revoke: the keys go at one revision, in one watch response, in key order.
    let mut watch = client(&[cluster.members[leader].endpoint()]).await;
    let mut events = watch
        .watch("lease/", Some(WatchOptions::new().with_prefix()))
        .await
        .unwrap();
    let created = events.message().await.unwrap().unwrap();
    assert!(created.created());
    let revoked = c.lease_revoke(id).await.unwrap();
    let rev = revoked.header().unwrap().revision();
    assert_eq!(rev, now + 1);
    let deletes = tokio::time::timeout(Duration::from_secs(10), events.message())
        .await
        .expect("the revoke's events within 10 s")
        .unwrap()
        .unwrap();
    let got: Vec<(EventType, &[u8], i64)> = deletes
        .events()
        .iter()
        .map(|e| {
            let kv = e.kv().unwrap();
            (e.event_type(), kv.key(), kv.mod_revision())
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (EventType::Delete, &b"lease/a"[..], rev),
            (EventType::Delete, &b"lease/m"[..], rev),
            (EventType::Delete, &b"lease/z"[..], rev),
        ]
    );
    assert!(!exists(&mut c, "lease/m").await);
    let gone = c.lease_time_to_live(id, None).await.unwrap();
    assert_eq!(gone.ttl(), -1);
    let r = keep_alive_once(&tx, &mut raw, id).await;
    assert_eq!(r.ttl, 0, "a revoked lease is answered TTL 0");

    // A revoke of a lease without keys changes no revision; unknown leases are NotFound.
    let r = c.lease_revoke(-5).await.unwrap();
    assert_eq!(r.header().unwrap().revision(), rev);
    for s in [
        status_of(c.lease_revoke(-5).await.unwrap_err()),
        status_of(
            c.put("k", "v", Some(PutOptions::new().with_lease(-5)))
                .await
                .unwrap_err(),
        ),
    ] {
        assert_eq!(
            (s.code(), s.message()),
            (Code::NotFound, "etcdserver: requested lease not found")
        );
    }
}

/// Keeps lease `id` alive through `endpoint` every `every` until `stop`; returns the TTLs
/// answered (with when), reopening the stream after errors (an election, say).
async fn keep_alive_until(
    endpoint: String,
    id: i64,
    every: Duration,
    stop: Instant,
) -> Vec<(Instant, i64)> {
    let mut answers = Vec::new();
    let mut c = client(&[endpoint]).await;
    while Instant::now() < stop {
        let (mut keeper, mut stream) = match c.lease_keep_alive(id).await {
            Ok(opened) => opened,
            Err(etcd_client::Error::LeaseKeepAliveError(e)) => {
                // etcd-client's word for a first answer of TTL 0: the lease is gone.
                answers.push((Instant::now(), 0));
                eprintln!("keep-alive of {id:x}: {e}");
                return answers;
            }
            Err(e) => {
                eprintln!("keep-alive of {id:x}: {e}, retrying");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        while Instant::now() < stop {
            if keeper.keep_alive().await.is_err() {
                break;
            }
            match tokio::time::timeout(Duration::from_secs(10), stream.message()).await {
                Ok(Ok(Some(r))) => answers.push((Instant::now(), r.ttl())),
                other => {
                    eprintln!("keep-alive of {id:x}: {other:?}, reopening");
                    break;
                }
            }
            tokio::time::sleep(every).await;
        }
    }
    answers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unrenewed_leases_expire_and_renewed_ones_do_not() {
    let mut cluster = Cluster::start(3);
    let leader = wait_leader(&mut cluster, Duration::from_secs(20)).await;
    let follower = cluster.members[(leader + 1) % 3].endpoint();
    let mut c = client(&cluster.endpoints()).await;
    let ttl = 2;
    let sent = Instant::now();
    let left = c.lease_grant(ttl, None).await.unwrap().id();
    let kept = c.lease_grant(ttl, None).await.unwrap().id();
    put_with_lease(&mut c, "left", left).await;
    put_with_lease(&mut c, "kept", kept).await;
    let renewals = tokio::spawn(keep_alive_until(
        follower,
        kept,
        Duration::from_millis(300),
        sent + Duration::from_secs(3 * ttl as u64),
    ));

    // The unrenewed lease goes with its key: never before its TTL, and within the TTL
    // plus a margin for the clock-drift allowance (5 %), expiry checks and the revoke.
    let margin = Duration::from_secs(5);
    while exists(&mut c, "left").await {
        assert!(
            sent.elapsed() < Duration::from_secs(ttl as u64) + margin,
            "lease {left:x} outlived its TTL of {ttl} s by {margin:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let gone_after = sent.elapsed();
    assert!(
        gone_after >= Duration::from_secs(ttl as u64),
        "lease {left:x} expired after {gone_after:?}, before its TTL of {ttl} s"
    );
    eprintln!("an unrenewed lease of {ttl} s expired after {gone_after:?}");
    let t = c.lease_time_to_live(left, None).await.unwrap();
    assert_eq!(t.ttl(), -1);

    // The one renewed through a follower outlived three TTLs.
    let answers = renewals.await.unwrap();
    assert!(answers.len() > 5, "{answers:?}");
    assert!(answers.iter().all(|&(_, t)| t == ttl), "{answers:?}");
    assert!(exists(&mut c, "kept").await);
    let t = c.lease_time_to_live(kept, None).await.unwrap();
    assert!(t.ttl() > 0, "{t:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_kept_alive_outlives_a_killed_leader() {
    let mut cluster = Cluster::start(3);
    let leader = wait_leader(&mut cluster, Duration::from_secs(20)).await;
    let survivor = (leader + 1) % 3;
    let mut c = client(&[cluster.members[survivor].endpoint()]).await;
    let ttl = 3;
    let id = c.lease_grant(ttl, None).await.unwrap().id();
    put_with_lease(&mut c, "guarded", id).await;
    // Renewed through a member that stays up, for three TTLs after the leader dies.
    let killed_at_latest = Instant::now() + Duration::from_secs(2);
    let renewals = tokio::spawn(keep_alive_until(
        cluster.members[survivor].endpoint(),
        id,
        Duration::from_millis(500),
        killed_at_latest + Duration::from_secs(3 * ttl as u64),
    ));
    tokio::time::sleep(Duration::from_secs(1)).await;
    cluster.kill(leader);
    let killed = Instant::now();
    let new_leader = wait_leader(&mut cluster, Duration::from_secs(20)).await;
    assert_ne!(new_leader, leader);
    let answers = renewals.await.unwrap();
    assert!(
        answers.iter().all(|&(_, t)| t == ttl),
        "every renewal answered the TTL: {answers:?}"
    );
    let after_kill = answers.iter().filter(|&&(at, _)| at > killed).count();
    assert!(after_kill > 5, "renewed after the kill: {answers:?}");
    let mut c = client(&[cluster.members[new_leader].endpoint()]).await;
    put_retry(&mut c, "alive".into(), "yes".into()).await;
    assert!(
        exists(&mut c, "guarded").await,
        "the lease's key is still there"
    );
    let t = c.lease_time_to_live(id, None).await.unwrap();
    assert!(t.ttl() > 0, "the lease lives on the new leader: {t:?}");
}

/// Sends raw bytes as a stream's messages, so a test can send what no client would.
#[derive(Debug, Clone, Default)]
struct RawCodec;

impl tonic::codec::Codec for RawCodec {
    type Encode = bytes::Bytes;
    type Decode = bytes::Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;
    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }
    fn decoder(&mut self) -> RawCodec {
        RawCodec
    }
}

impl tonic::codec::Encoder for RawCodec {
    type Item = bytes::Bytes;
    type Error = tonic::Status;
    fn encode(
        &mut self,
        item: bytes::Bytes,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        bytes::BufMut::put(dst, item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawCodec {
    type Item = bytes::Bytes;
    type Error = tonic::Status;
    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<bytes::Bytes>, tonic::Status> {
        use bytes::Buf;
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

/// What a stream of `path` answers to a keep-alive-shaped first message followed by one
/// nested far deeper than any request: the status the stream ends with.
async fn hostile_stream(endpoint: &str, path: &'static str) -> tonic::Status {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{endpoint}"))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.expect("ready");
    // Field 15: 100,000 group starts, then as many ends.
    let mut groups = vec![0x7b; 100_000];
    groups.extend(vec![0x7c; 100_000]);
    let messages = vec![bytes::Bytes::from_static(&[]), bytes::Bytes::from(groups)];
    let requests = tonic::codegen::tokio_stream::iter(messages);
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(path);
    let mut responses = match grpc
        .streaming(tonic::Request::new(requests), path, RawCodec)
        .await
    {
        Ok(r) => r.into_inner(),
        Err(s) => return s,
    };
    loop {
        match tokio::time::timeout(Duration::from_secs(10), responses.message()).await {
            Ok(Ok(Some(_))) => {}
            Ok(Ok(None)) => return tonic::Status::ok("ended"),
            Ok(Err(s)) => return s,
            Err(_) => return tonic::Status::deadline_exceeded("no end within 10 s"),
        }
    }
}

/// Streams get the gate unary requests get: a message nested deeper than the decoder may
/// recurse ends the stream, and the member goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_nesting_on_a_stream_is_refused_not_fatal() {
    let mut cluster = Cluster::start(1);
    wait_leader(&mut cluster, Duration::from_secs(20)).await;
    let endpoint = cluster.endpoints()[0].clone();
    let s = hostile_stream(&endpoint, "/etcdserverpb.Lease/LeaseKeepAlive").await;
    assert_eq!(s.code(), Code::Internal, "{s:?}");
    assert!(
        s.message().starts_with("grpc: error unmarshalling request"),
        "{s:?}"
    );
    // The watch task ends its stream on any error reading requests (grpc/watch.rs).
    let s = hostile_stream(&endpoint, "/etcdserverpb.Watch/Watch").await;
    assert_ne!(s.code(), Code::DeadlineExceeded, "{s:?}");
    assert!(cluster.members[0].is_running(), "{}", cluster.log_of(0));
    let mut c = client(&[endpoint]).await;
    put_retry(&mut c, "alive".into(), "yes".into()).await;
}

/// Runs etcdctl against `endpoints`; (success, stdout and stderr).
fn etcdctl(endpoints: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(Tool::ETCDCTL.require())
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoints}"))
        .arg("--command-timeout=5s")
        .args(args)
        .output()
        .expect("run etcdctl");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// etcdctl that must succeed, retried a few times while an election (on a loaded machine)
/// makes it fail.
fn ok(endpoints: &str, args: &[&str]) -> String {
    for attempt in 1.. {
        let (success, out) = etcdctl(endpoints, args);
        if success {
            return out;
        }
        let transient = ["leader changed", "no leader", "request timed out"]
            .iter()
            .any(|t| out.contains(t));
        assert!(transient && attempt < 5, "etcdctl {args:?} failed:\n{out}");
        std::thread::sleep(Duration::from_millis(200));
    }
    unreachable!()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_lease_commands_work_unchanged() {
    Tool::ETCDCTL.require();
    let mut cluster = Cluster::start(3);
    let leader = wait_leader(&mut cluster, Duration::from_secs(20)).await;
    let all = cluster.endpoints().join(",");
    let follower = cluster.members[(leader + 1) % 3].endpoint();

    let granted = ok(&all, &["lease", "grant", "10"]);
    // "lease 694d77aa9e38260f granted with TTL(10s)"
    let hex = granted
        .strip_prefix("lease ")
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("unexpected grant output: {granted}"))
        .to_owned();
    assert_eq!(granted, format!("lease {hex} granted with TTL(10s)\n"));
    assert_eq!(hex.len(), 16, "{granted}");

    let lease_flag = format!("--lease={hex}");
    assert_eq!(ok(&follower, &["put", &lease_flag, "k", "v"]), "OK\n");
    let ttl = ok(&follower, &["lease", "timetolive", "--keys", &hex]);
    assert!(
        ttl.starts_with(&format!("lease {hex} granted with TTL(10s), remaining(")),
        "{ttl}"
    );
    assert!(ttl.ends_with("s), attached keys([k])\n"), "{ttl}");
    assert_eq!(
        ok(&follower, &["lease", "keep-alive", "--once", &hex]),
        format!("lease {hex} keepalived with TTL(10)\n")
    );
    let listed = ok(&follower, &["lease", "list"]);
    assert_eq!(listed, format!("found 1 leases\n{hex}\n"));
    assert_eq!(
        ok(&all, &["lease", "revoke", &hex]),
        format!("lease {hex} revoked\n")
    );
    assert_eq!(ok(&all, &["get", "k"]), "");
    assert_eq!(
        ok(&all, &["lease", "timetolive", &hex]),
        format!("lease {hex} already expired\n")
    );
    let (success, out) = etcdctl(&all, &["lease", "revoke", &hex]);
    assert!(
        !success && out.contains("requested lease not found"),
        "{out}"
    );
}
