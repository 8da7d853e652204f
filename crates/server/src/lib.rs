//! # synod-server: a Synod replica
//!
//! Drives the sans-IO engine (`synod-paxos`) with real storage (`synod-storage`), a real
//! network (`transport`) and the key-value state machine (`synod-kv`) behind the etcd v3
//! gRPC API.

pub mod cli;
pub mod cluster;
pub mod conditions;
mod degraded;
pub mod dev;
pub mod error;
pub mod grpc;
mod identity;
pub mod limits;
pub mod members;
pub mod metrics;
pub mod replica;
pub mod server;
pub mod snapshot;
pub mod status;
pub mod transport;

/// Resolves on SIGINT or SIGTERM.
pub async fn stop_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("stopping on signal");
}
