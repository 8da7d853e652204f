//! # synod-server: a Synod replica
//!
//! Drives the sans-IO engine (`synod-paxos`) with real storage (`synod-storage`), a real
//! network (`transport`) and the key-value state machine (`synod-kv`) behind the etcd v3
//! gRPC API.

pub mod cli;
pub mod cluster;
pub mod dev;
pub mod error;
pub mod grpc;
mod identity;
pub mod metrics;
pub mod replica;
pub mod server;
pub mod status;
pub mod transport;
