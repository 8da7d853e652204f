//! # synod-server: a Synod replica
//!
//! Drives the sans-IO engine (`synod-paxos`) with real storage (`synod-storage`), a real
//! network (`transport`) and the key-value state machine (`synod-kv`) behind the etcd v3
//! gRPC API.

pub mod transport;
