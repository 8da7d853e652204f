//! The etcd v3 gRPC API, plus `/health` and `/metrics` over HTTP/1 on the same port, as
//! etcd serves them.

mod cluster;
pub mod convert;
mod http;
mod kv;
mod maintenance;

pub use http::serve;
