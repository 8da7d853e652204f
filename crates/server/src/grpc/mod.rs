//! The etcd v3 gRPC API, plus `/health` and `/metrics` over HTTP/1 on the same port, as
//! etcd serves them.

mod cluster;
pub mod convert;
mod election;
mod gate;
mod http;
mod incoming;
mod kv;
mod lease;
mod lock;
mod maintenance;
mod proto;
mod range_stream;
mod watch;
mod wire;

pub use http::{serve, ServeError};
