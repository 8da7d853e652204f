//! End-to-end: request limits and error codes as etcd's, and hostile
//! input on the client port answered, never fatal.

mod support;

use bytes::{Buf, BufMut, Bytes};
use etcd_client::{Client, Compare, CompareOp, Txn, TxnOp};
use std::time::Duration;
use support::{client, http_get, put_retry, wait_leader, Cluster};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::Code;

/// etcd's default --max-request-bytes.
const REQUEST_BYTES_MAX: usize = 1536 * 1024;
/// etcd's gRPC receive limit: --max-request-bytes plus 512 KiB of gRPC overhead.
const GRPC_RECEIVE_BYTES_MAX: usize = REQUEST_BYTES_MAX + 512 * 1024;

/// Sends and receives raw protobuf bytes, so tests can send what no client library would.
#[derive(Debug, Clone, Default)]
struct RawCodec;

#[derive(Debug)]
struct RawEncoder;

#[derive(Debug)]
struct RawDecoder;

impl Encoder for RawEncoder {
    type Item = Bytes;
    type Error = tonic::Status;
    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for RawDecoder {
    type Item = Bytes;
    type Error = tonic::Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, tonic::Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawEncoder;
    type Decoder = RawDecoder;
    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }
    fn decoder(&mut self) -> RawDecoder {
        RawDecoder
    }
}

/// One unary call with `body` as the request message; the status it ends with.
async fn raw_call(endpoint: &str, path: &'static str, body: Bytes) -> tonic::Status {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{endpoint}"))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.expect("ready");
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(path);
    match grpc.unary(tonic::Request::new(body), path, RawCodec).await {
        Ok(_) => tonic::Status::ok(""),
        Err(s) => s,
    }
}

fn varint(mut v: usize, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn varint_len(v: usize) -> usize {
    let mut out = Vec::new();
    varint(v, &mut out);
    out.len()
}

/// A TxnRequest nested `depth` levels deep, encoded by hand: each level's success branch
/// holds one RequestOp whose request_txn is the next level; the innermost puts a key.
/// Built outside in from the lengths, so a deep one costs linear time.
fn nested_txn_bytes(depth: usize) -> Bytes {
    // RequestOp{request_put: PutRequest{key: "k"}}.
    let innermost = [0x12, 0x03, 0x0a, 0x01, b'k'];
    // op[k]: length of the RequestOp at level k (0: the put); txn[k]: the TxnRequest at k.
    let (mut op, mut txn) = (vec![innermost.len()], vec![0]);
    for k in 1..=depth {
        let t = 1 + varint_len(op[k - 1]) + op[k - 1];
        txn.push(t);
        op.push(1 + varint_len(t) + t);
    }
    let mut out = Vec::with_capacity(txn[depth]);
    for k in (1..=depth).rev() {
        out.push(0x12); // TxnRequest.success
        varint(op[k - 1], &mut out);
        if k > 1 {
            out.push(0x22); // RequestOp.request_txn
            varint(txn[k - 1], &mut out);
        }
    }
    out.extend_from_slice(&innermost);
    Bytes::from(out)
}

fn nested_txn(depth: usize) -> Txn {
    let mut txn = Txn::new().and_then(vec![TxnOp::put("nested", "v", None)]);
    for _ in 1..depth {
        txn = Txn::new()
            .when(vec![Compare::version("nested", CompareOp::Greater, -1)])
            .and_then(vec![TxnOp::txn(txn)]);
    }
    txn
}

fn status_of(e: etcd_client::Error) -> tonic::Status {
    match e {
        etcd_client::Error::GRpcStatus(s) => s,
        other => panic!("not a gRPC status: {other:?}"),
    }
}

async fn one_member() -> (Cluster, Client) {
    let mut cluster = Cluster::start(1);
    wait_leader(&mut cluster, Duration::from_secs(20)).await;
    let c = client(&cluster.endpoints()).await;
    (cluster, c)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_size_limits_answer_as_etcd() {
    let (cluster, mut c) = one_member().await;
    // At the limit (the whole PutRequest, key and field tags included): stored.
    put_retry(&mut c, "k".into(), "a".repeat(REQUEST_BYTES_MAX - 16)).await;
    // Above --max-request-bytes, within the gRPC limit: etcd's "request is too large".
    let e = c
        .put("k", "a".repeat(REQUEST_BYTES_MAX + 1024), None)
        .await
        .expect_err("a 1.5 MiB + 1 KiB put is refused");
    let s = status_of(e);
    assert_eq!(
        (s.code(), s.message()),
        (Code::InvalidArgument, "etcdserver: request is too large")
    );
    // Above the gRPC limit: ResourceExhausted, as grpc-go answers.
    let e = c
        .put("k", "a".repeat(GRPC_RECEIVE_BYTES_MAX + 1), None)
        .await
        .expect_err("a put over the gRPC limit is refused");
    let s = status_of(e);
    assert_eq!(s.code(), Code::ResourceExhausted, "{s:?}");
    assert!(
        s.message()
            .starts_with("grpc: received message larger than max"),
        "{s:?}"
    );
    // An empty message passes the gate; the service answers it as etcd does.
    let s = raw_call(
        &cluster.endpoints()[0],
        "/etcdserverpb.KV/Range",
        Bytes::new(),
    )
    .await;
    assert_eq!(
        (s.code(), s.message()),
        (Code::InvalidArgument, "etcdserver: key is not provided")
    );
    drop(cluster);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_request_bytes_flag_sets_the_limits() {
    let mut cluster = Cluster::start_with(1, &["--max-request-bytes=4096"]);
    wait_leader(&mut cluster, Duration::from_secs(20)).await;
    let mut c = client(&cluster.endpoints()).await;
    put_retry(&mut c, "k".into(), "a".repeat(3000)).await;
    let s = status_of(c.put("k", "a".repeat(5000), None).await.unwrap_err());
    assert_eq!(
        (s.code(), s.message()),
        (Code::InvalidArgument, "etcdserver: request is too large")
    );
    // The gRPC limit follows: 4 KiB + 512 KiB.
    let s = status_of(
        c.put("k", "a".repeat(4096 + 512 * 1024 + 1), None)
            .await
            .unwrap_err(),
    );
    assert_eq!(s.code(), Code::ResourceExhausted, "{s:?}");
    // Reads are not held to the write limit (as etcd's, which checks only proposals).
    let r = c
        .get("a".repeat(5000), None)
        .await
        .expect("a long-key read");
    assert!(r.kvs().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nested_txns_are_served_up_to_the_op_limit_and_bounded_beyond() {
    let (cluster, mut c) = one_member().await;
    for depth in [50, 100, 127] {
        let r = c
            .txn(nested_txn(depth))
            .await
            .unwrap_or_else(|e| panic!("a txn nested {depth} deep: {e}"));
        assert!(r.succeeded());
    }
    // Past etcd's op budget (128 ops in all, one per level): etcd's error, not a crash.
    let s = status_of(c.txn(nested_txn(130)).await.unwrap_err());
    assert_eq!(
        (s.code(), s.message()),
        (
            Code::InvalidArgument,
            "etcdserver: too many operations in txn request"
        )
    );
    // A hostile nesting far deeper than any valid request: refused before decoding.
    let endpoint = cluster.endpoints()[0].clone();
    let s = raw_call(&endpoint, "/etcdserverpb.KV/Txn", nested_txn_bytes(100_000)).await;
    assert_eq!(s.code(), Code::InvalidArgument, "{s:?}");
    // Deep protobuf groups in an unknown field of any request: refused, not recursed into.
    // Field 15: 100,000 group starts, then as many ends.
    let mut groups = vec![0x7b; 100_000];
    groups.extend(vec![0x7c; 100_000]);
    let s = raw_call(&endpoint, "/etcdserverpb.Cluster/MemberList", groups.into()).await;
    assert_ne!(s.code(), Code::Ok, "{s:?}");
    // Garbage is a decoding error, not a crash.
    let s = raw_call(
        &endpoint,
        "/etcdserverpb.KV/Put",
        Bytes::from_static(&[0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f]),
    )
    .await;
    assert_ne!(s.code(), Code::Ok, "{s:?}");
    // An alarm request with values outside the enums.
    let s = raw_call(
        &endpoint,
        "/etcdserverpb.Maintenance/Alarm",
        Bytes::from_static(&[0x08, 0x63, 0x10, 0x07, 0x18, 0x63]),
    )
    .await;
    assert_ne!(s.code(), Code::Internal, "{s:?}");
    let mut cluster = cluster;
    assert!(cluster.members[0].is_running(), "{}", cluster.log_of(0));
    put_retry(&mut c, "alive".into(), "yes".into()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unimplemented_rpcs_name_what_is_missing() {
    let (cluster, mut c) = one_member().await;
    let s = status_of(c.auth_enable().await.unwrap_err());
    assert_eq!(s.code(), Code::Unimplemented);
    assert!(s.message().contains("Auth"), "{s:?}");
    assert!(s.message().contains("not supported yet"), "{s:?}");
    let endpoint = cluster.endpoints()[0].clone();
    let s = raw_call(&endpoint, "/grpc.health.v1.Health/Check", Bytes::new()).await;
    assert_eq!(
        (s.code(), s.message()),
        (
            Code::Unimplemented,
            "synod: the gRPC health service is not supported yet"
        )
    );
    let s = raw_call(&endpoint, "/etcdserverpb.KV/NoSuchMethod", Bytes::new()).await;
    assert_eq!(s.code(), Code::Unimplemented);
    assert!(s.message().contains("NoSuchMethod"), "{s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_snapshot_set_aside_at_startup_is_logged_and_counted() {
    let mut cluster = Cluster::start_with(1, &["--snapshot-count=20"]);
    wait_leader(&mut cluster, Duration::from_secs(20)).await;
    let mut c = client(&cluster.endpoints()).await;
    let snap_dir = cluster.data_dir(0).join("log/snap");
    let snaps = |dir: &std::path::Path| -> Vec<std::path::PathBuf> {
        let mut v: Vec<_> = std::fs::read_dir(dir)
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        v.retain(|p| p.extension().is_some_and(|e| e == "snap"));
        v.sort();
        v
    };
    let mut i = 0;
    while snaps(&snap_dir).len() < 2 {
        put_retry(&mut c, format!("k{i}"), "v".repeat(100)).await;
        i += 1;
        assert!(i < 5000, "no second snapshot");
    }
    drop(c);
    assert!(cluster.stop(0).success());
    let newest = snaps(&snap_dir).pop().expect("a snapshot");
    let mut data = std::fs::read(&newest).expect("read the snapshot");
    let middle = data.len() / 2;
    data[middle] ^= 0xff;
    std::fs::write(&newest, data).expect("damage the snapshot");

    cluster.spawn(0);
    wait_leader(&mut cluster, Duration::from_secs(20)).await;
    let log = cluster.log_of(0);
    let line = log
        .lines()
        .find(|l| l.contains("damaged snapshot set aside"))
        .unwrap_or_else(|| panic!("no log line for the damaged snapshot:\n{log}"));
    assert!(line.contains("WARN") || line.contains("ERROR"), "{line}");
    let metrics = http_get(&cluster.endpoints()[0], "/metrics");
    assert!(
        metrics.contains("\nsynod_snapshots_damaged_total 1\n"),
        "{metrics}"
    );
    let mut c = client(&cluster.endpoints()).await;
    let r = c.get("k0", None).await.expect("read after the restart");
    assert_eq!(r.kvs().len(), 1);
}
