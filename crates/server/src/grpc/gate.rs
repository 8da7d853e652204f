//! What the client port checks in a gRPC request before any service decodes it, and what it
//! answers for RPCs no service implements. Each answer is etcd's (or grpc-go's, which etcd
//! clients see from etcd):
//!
//! - a message over the gRPC receive limit (`--max-request-bytes` + 512 KiB): ResourceExhausted
//!   "grpc: received message larger than max (N vs. M)", known from the 5-byte gRPC prefix,
//!   before the body is read;
//! - nesting that could exhaust the decoder's stack (see `wire.rs`): refused unread;
//! - a write (Put, DeleteRange, a Txn holding either) over `--max-request-bytes`:
//!   InvalidArgument "etcdserver: request is too large", as etcd checks what it proposes;
//! - a write (or a lease grant, as etcd's quota check) while a condition refuses writes
//!   (the NOSPACE alarm): ResourceExhausted "etcdserver: mvcc: database space exceeded";
//! - Lock and Election calls: size and nesting only, since the writes they make are their
//!   services' to refuse (with code Unknown, as etcd's services answer; see `lock.rs`);
//! - on a stream (Watch, LeaseKeepAlive), each message as it arrives: the size and nesting
//!   checks above, the stream's service seeing the refusal as the stream's error;
//! - an RPC of a service Synod lacks: Unimplemented, naming it.

use super::wire::{self, Root, ScanError};
use crate::error::ServerError;
use crate::limits::ClientLimits;
use crate::metrics::Metrics;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use std::sync::Arc;
use tonic::codegen::tokio_stream::{Stream, StreamExt};
use tonic::Status;

/// The gRPC message prefix: a compressed flag and a 4-byte big-endian length.
const PREFIX_BYTES: usize = 5;

#[derive(Debug)]
pub struct Gate {
    pub limits: ClientLimits,
    pub metrics: Arc<Metrics>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    Put,
    DeleteRange,
    Txn,
    LeaseGrant,
    /// A method whose requests are a stream: checked message by message, never read whole.
    Stream,
    /// Any other method a service here implements.
    Served,
    /// A method the service does not have.
    Unknown,
}

/// The method a request path names, for the services served here (`None`: another service).
fn method(path: &str) -> Option<Method> {
    let (service, name) = path.strip_prefix('/')?.split_once('/')?;
    let known: &[&str] = match service {
        "etcdserverpb.KV" => &[
            "Range",
            "Put",
            "DeleteRange",
            "Txn",
            "Compact",
            "RangeStream",
        ],
        "etcdserverpb.Cluster" => &[
            "MemberAdd",
            "MemberRemove",
            "MemberUpdate",
            "MemberList",
            "MemberPromote",
        ],
        "etcdserverpb.Maintenance" => &[
            "Alarm",
            "Status",
            "Defragment",
            "Hash",
            "HashKV",
            "Snapshot",
            "MoveLeader",
            "Downgrade",
        ],
        "etcdserverpb.Lease" => &[
            "LeaseGrant",
            "LeaseRevoke",
            "LeaseKeepAlive",
            "LeaseTimeToLive",
            "LeaseLeases",
        ],
        "etcdserverpb.Watch" => &["Watch"],
        // Observe streams its responses, but its request is one message, as for unary calls.
        "v3lockpb.Lock" => &["Lock", "Unlock"],
        "v3electionpb.Election" => &["Campaign", "Proclaim", "Leader", "Observe", "Resign"],
        _ => return None,
    };
    Some(match (service, name) {
        ("etcdserverpb.KV", "Put") => Method::Put,
        ("etcdserverpb.KV", "DeleteRange") => Method::DeleteRange,
        ("etcdserverpb.KV", "Txn") => Method::Txn,
        ("etcdserverpb.Lease", "LeaseGrant") => Method::LeaseGrant,
        ("etcdserverpb.Lease", "LeaseKeepAlive") | ("etcdserverpb.Watch", "Watch") => {
            Method::Stream
        }
        _ if known.contains(&name) => Method::Served,
        _ => Method::Unknown,
    })
}

fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"))
}

/// Middleware on every client route.
pub async fn check(State(gate): State<Arc<Gate>>, request: Request, next: Next) -> Response {
    let path = request.uri().path().to_string();
    let Some(method) = method(&path) else {
        return next.run(request).await;
    };
    if !is_grpc(request.headers()) {
        return next.run(request).await;
    }
    if method == Method::Unknown {
        return unsupported_status(&path).into_http();
    }
    let (parts, body) = request.into_parts();
    if method == Method::Stream {
        let messages = StreamGate {
            gate,
            body: body.into_data_stream(),
            buf: BytesMut::new(),
            ended: false,
        };
        return next
            .run(Request::from_parts(parts, Body::from_stream(messages)))
            .await;
    }
    // Every other method takes one request message, so reading it whole is what the
    // service would do next anyway.
    let message = match read_message(body, gate.limits.grpc_receive_bytes_max()).await {
        Ok(m) => m,
        Err(status) => return status.into_http(),
    };
    if let Err(status) = gate.inspect(method, &message) {
        return status.into_http();
    }
    next.run(Request::from_parts(parts, Body::from(message)))
        .await
}

fn too_large(len: usize, max: usize) -> Status {
    Status::resource_exhausted(format!(
        "grpc: received message larger than max ({len} vs. {max})"
    ))
}

/// Reads a unary request's body, refusing it as soon as its prefix (or its size so far)
/// shows it is over `max`.
async fn read_message(body: Body, max: usize) -> Result<Bytes, Status> {
    let mut stream = body.into_data_stream();
    let mut buf = BytesMut::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| Status::cancelled(format!("reading the request: {e}")))?;
        buf.extend_from_slice(&chunk);
        if buf.len() >= PREFIX_BYTES {
            let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
            if len > max {
                return Err(too_large(len, max));
            }
        }
        if buf.len() > PREFIX_BYTES + max {
            return Err(too_large(buf.len() - PREFIX_BYTES, max));
        }
    }
    Ok(buf.freeze())
}

/// A stream's request messages, each passed on once it has arrived whole and passed the
/// gate; a refused one ends the stream with the refusal (tonic hands the service the
/// `Status` a body error carries).
struct StreamGate {
    gate: Arc<Gate>,
    body: axum::body::BodyDataStream,
    /// The message arriving, not yet whole.
    buf: BytesMut,
    ended: bool,
}

impl StreamGate {
    /// The next whole message in `buf`, checked; `None` if it has not all arrived.
    fn next_message(&mut self) -> Option<Result<Bytes, Status>> {
        if self.buf.len() < PREFIX_BYTES {
            return None;
        }
        let len = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]);
        let len = len as usize;
        let max = self.gate.limits.grpc_receive_bytes_max();
        if len > max {
            return Some(Err(too_large(len, max)));
        }
        if self.buf.len() < PREFIX_BYTES + len {
            return None;
        }
        let message = self.buf.split_to(PREFIX_BYTES + len).freeze();
        Some(
            self.gate
                .inspect(Method::Stream, &message)
                .map(|()| message),
        )
    }
}

impl Stream for StreamGate {
    type Item = Result<Bytes, Status>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use std::task::Poll;
        loop {
            if self.ended {
                return Poll::Ready(None);
            }
            if let Some(next) = self.next_message() {
                self.ended = next.is_err();
                return Poll::Ready(Some(next));
            }
            match std::pin::Pin::new(&mut self.body).poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(chunk))) => self.buf.extend_from_slice(&chunk),
                Poll::Ready(Some(Err(e))) => {
                    self.ended = true;
                    let e = Status::cancelled(format!("reading the request: {e}"));
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Ready(None) => {
                    // A truncated last message goes on as it is: the decoder refuses it
                    // as it would without the gate.
                    self.ended = true;
                    if self.buf.is_empty() {
                        return Poll::Ready(None);
                    }
                    return Poll::Ready(Some(Ok(self.buf.split().freeze())));
                }
            }
        }
    }
}

impl Gate {
    fn inspect(&self, method: Method, message: &[u8]) -> Result<(), Status> {
        if message.len() < PREFIX_BYTES || message[0] != 0 {
            // Truncated, or compressed (which the services refuse, as they enable none):
            // tonic answers either without decoding a message.
            return Ok(());
        }
        let len = u32::from_be_bytes([message[1], message[2], message[3], message[4]]) as usize;
        let body = &message[PREFIX_BYTES..];
        let first = &body[..len.min(body.len())];
        let root = if method == Method::Txn {
            Root::Txn
        } else {
            Root::Other
        };
        let summary = wire::scan(first, root).map_err(|e| match e {
            ScanError::TooManyTxnLevels => {
                Status::from(ServerError::from(synod_kv::KvError::TooManyOps))
            }
            // grpc-go's answer to a message it cannot decode.
            ScanError::TooDeep | ScanError::Malformed(_) => {
                Status::internal(format!("grpc: error unmarshalling request: {e}"))
            }
        })?;
        let writes = match method {
            Method::Put | Method::DeleteRange => true,
            Method::Txn => summary.writes,
            // etcd refuses grants under NOSPACE (its quota check on LeaseGrant).
            Method::LeaseGrant => true,
            Method::Stream | Method::Served | Method::Unknown => false,
        };
        if writes {
            if let Some(e) = self.metrics.conditions.write_refusal() {
                return Err(e.into());
            }
            if len > self.limits.request_bytes_max {
                return Err(ServerError::RequestTooLarge.into());
            }
        }
        Ok(())
    }
}

/// Fallback for paths no service serves.
pub async fn unsupported(request: Request) -> Response {
    if !is_grpc(request.headers()) {
        return (StatusCode::NOT_FOUND, "404 page not found\n").into_response();
    }
    unsupported_status(request.uri().path()).into_http()
}

/// Unimplemented, naming what is missing: an etcd service Synod does not have yet, or, as
/// grpc-go says, an unknown method or service.
fn unsupported_status(path: &str) -> Status {
    let trimmed = path.trim_start_matches('/');
    let (service, name) = trimmed.split_once('/').unwrap_or((trimmed, ""));
    let missing = match service {
        "etcdserverpb.Auth" => "Auth",
        "grpc.health.v1.Health" => "the gRPC health service",
        "etcdserverpb.KV"
        | "etcdserverpb.Cluster"
        | "etcdserverpb.Maintenance"
        | "etcdserverpb.Lease"
        | "etcdserverpb.Watch"
        | "v3lockpb.Lock"
        | "v3electionpb.Election" => {
            return Status::unimplemented(format!("unknown method {name} for service {service}"));
        }
        _ => return Status::unimplemented(format!("unknown service {service}")),
    };
    ServerError::Unimplemented(missing).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_and_missing_services_are_named() {
        assert_eq!(method("/etcdserverpb.KV/Put"), Some(Method::Put));
        assert_eq!(method("/etcdserverpb.KV/Range"), Some(Method::Served));
        assert_eq!(method("/etcdserverpb.KV/Nope"), Some(Method::Unknown));
        assert_eq!(method("/etcdserverpb.Watch/Watch"), Some(Method::Stream));
        assert_eq!(
            method("/etcdserverpb.Lease/LeaseKeepAlive"),
            Some(Method::Stream)
        );
        assert_eq!(
            method("/etcdserverpb.Lease/LeaseGrant"),
            Some(Method::LeaseGrant)
        );
        assert_eq!(
            method("/etcdserverpb.Lease/LeaseLeases"),
            Some(Method::Served)
        );
        assert_eq!(method("/etcdserverpb.Auth/AuthEnable"), None);
        assert_eq!(method("garbage"), None);
        let s = unsupported_status("/etcdserverpb.Auth/AuthEnable");
        assert_eq!(s.message(), "synod: Auth is not supported yet");
        let s = unsupported_status("/etcdserverpb.Lease/Nope");
        assert_eq!(
            s.message(),
            "unknown method Nope for service etcdserverpb.Lease"
        );
        let s = unsupported_status("/etcdserverpb.KV/Nope");
        assert_eq!(
            s.message(),
            "unknown method Nope for service etcdserverpb.KV"
        );
        let s = unsupported_status("/x.Y/Z");
        assert_eq!(s.message(), "unknown service x.Y");
        assert_eq!(unsupported_status("").code(), tonic::Code::Unimplemented);
    }

    #[test]
    fn grants_are_refused_under_nospace_like_writes() {
        let gate = Gate {
            limits: ClientLimits::default(),
            metrics: Arc::new(Metrics::default()),
        };
        // LeaseGrantRequest{TTL: 10}; a revoke and a keep-alive look alike on the wire.
        let grant = framed(&[0x08, 10]);
        for method in [Method::LeaseGrant, Method::Served, Method::Stream] {
            assert!(gate.inspect(method, &grant).is_ok());
        }
        gate.metrics.conditions.raise(
            crate::conditions::Condition::WalUnwritable,
            "test".to_string(),
        );
        let refused = gate.inspect(Method::LeaseGrant, &grant).unwrap_err();
        assert_eq!(
            refused.message(),
            "etcdserver: mvcc: database space exceeded"
        );
        // Revokes free space and keep-alives write nothing: both still pass.
        assert!(gate.inspect(Method::Served, &grant).is_ok());
        assert!(gate.inspect(Method::Stream, &grant).is_ok());
    }

    fn framed(body: &[u8]) -> Vec<u8> {
        let mut out = vec![0];
        out.extend_from_slice(&(body.len() as u32).to_be_bytes());
        out.extend_from_slice(body);
        out
    }

    /// What a stream's service gets from `chunks` through the gate.
    async fn through_stream_gate(chunks: Vec<Vec<u8>>) -> Vec<Result<Bytes, Status>> {
        let body = Body::from_stream(tonic::codegen::tokio_stream::iter(
            chunks.into_iter().map(Ok::<_, std::io::Error>),
        ));
        let gate = StreamGate {
            gate: Arc::new(Gate {
                limits: ClientLimits::default(),
                metrics: Arc::new(Metrics::default()),
            }),
            body: body.into_data_stream(),
            buf: BytesMut::new(),
            ended: false,
        };
        gate.collect().await
    }

    #[tokio::test]
    async fn stream_messages_are_checked_one_by_one() {
        // Two keep-alive requests (field 1 = 7, then 8), split across chunks anyhow.
        let mut wire = framed(&[0x08, 7]);
        wire.extend(framed(&[0x08, 8]));
        let chunks = vec![wire[..3].to_vec(), wire[3..9].to_vec(), wire[9..].to_vec()];
        let got = through_stream_gate(chunks).await;
        let got: Vec<Bytes> = got.into_iter().map(Result::unwrap).collect();
        assert_eq!(
            got,
            vec![
                Bytes::from(framed(&[0x08, 7])),
                Bytes::from(framed(&[0x08, 8]))
            ]
        );
        // Deep groups in an unknown field: refused, and nothing after it is passed on.
        let mut groups = vec![0x7b; 100_000];
        groups.extend(vec![0x7c; 100_000]);
        let mut wire = framed(&[0x08, 7]);
        wire.extend(framed(&groups));
        wire.extend(framed(&[0x08, 8]));
        let got = through_stream_gate(vec![wire]).await;
        assert_eq!(got.len(), 2);
        assert!(got[0].is_ok());
        let refused = got[1].as_ref().unwrap_err();
        assert_eq!(refused.code(), tonic::Code::Internal);
        assert!(refused
            .message()
            .starts_with("grpc: error unmarshalling request"));
        // A message over the receive limit: refused from its prefix alone.
        let mut prefix = vec![0];
        prefix.extend_from_slice(&u32::MAX.to_be_bytes());
        let got = through_stream_gate(vec![prefix]).await;
        let refused = got[0].as_ref().unwrap_err();
        assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
        assert!(refused.message().contains("larger than max"), "{refused:?}");
    }

    #[test]
    fn lock_and_election_requests_pass_the_gate_as_served() {
        assert_eq!(method("/v3lockpb.Lock/Lock"), Some(Method::Served));
        assert_eq!(method("/v3lockpb.Lock/Unlock"), Some(Method::Served));
        for name in ["Campaign", "Proclaim", "Leader", "Observe", "Resign"] {
            let path = format!("/v3electionpb.Election/{name}");
            assert_eq!(method(&path), Some(Method::Served));
        }
        assert_eq!(method("/v3lockpb.Lock/TryLock"), Some(Method::Unknown));
        let s = unsupported_status("/v3lockpb.Lock/TryLock");
        assert_eq!(
            s.message(),
            "unknown method TryLock for service v3lockpb.Lock"
        );
    }
}
