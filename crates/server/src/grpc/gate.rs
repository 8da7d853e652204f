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
//! - a write while a condition refuses writes (the NOSPACE alarm): ResourceExhausted
//!   "etcdserver: mvcc: database space exceeded";
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
use tonic::codegen::tokio_stream::StreamExt;
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
        _ => return None,
    };
    Some(match (service, name) {
        ("etcdserverpb.KV", "Put") => Method::Put,
        ("etcdserverpb.KV", "DeleteRange") => Method::DeleteRange,
        ("etcdserverpb.KV", "Txn") => Method::Txn,
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
    // Every method served here takes one request message, so reading it whole is what the
    // service would do next anyway.
    let (parts, body) = request.into_parts();
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
            Method::Served | Method::Unknown => false,
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
        "etcdserverpb.Lease" => "Lease",
        "etcdserverpb.Auth" => "Auth",
        "v3electionpb.Election" => "Election",
        "v3lockpb.Lock" => "Lock",
        "grpc.health.v1.Health" => "the gRPC health service",
        "etcdserverpb.KV" | "etcdserverpb.Cluster" | "etcdserverpb.Maintenance" => {
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
        assert_eq!(method("/etcdserverpb.Watch/Watch"), None);
        assert_eq!(method("garbage"), None);
        let s = unsupported_status("/etcdserverpb.Lease/LeaseGrant");
        assert_eq!(s.message(), "synod: Lease is not supported yet");
        let s = unsupported_status("/etcdserverpb.KV/Nope");
        assert_eq!(
            s.message(),
            "unknown method Nope for service etcdserverpb.KV"
        );
        let s = unsupported_status("/x.Y/Z");
        assert_eq!(s.message(), "unknown service x.Y");
        assert_eq!(unsupported_status("").code(), tonic::Code::Unimplemented);
    }
}
