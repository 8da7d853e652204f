//! # synod-server: a Synod replica
//!
//! The I/O around one sans-IO replica (`synod-replica`: the engine, the key-value store, the
//! member table, snapshot policy): real storage (`synod-storage`) on a persist thread, a real
//! network (`transport`), a tokio loop, and the etcd v3 gRPC API.

pub mod cli;
pub mod cluster;
pub mod conditions;
mod degraded;
pub mod dev;
pub mod error;
mod go_duration;
pub mod grpc;
mod identity;
pub mod limits;
pub mod metrics;
pub mod replica;
pub mod server;
pub mod status;
pub mod transport;

/// The member table and membership requests live in the replica, which judges them.
pub use synod_replica::members;
/// The snapshot payload format (the replica encodes and decodes it).
pub use synod_replica::snapshot_format as snapshot;

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
