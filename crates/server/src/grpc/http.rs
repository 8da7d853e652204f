//! One listener per client URL serving gRPC (HTTP/2) and `/health`, `/metrics` (HTTP/1), as
//! etcd does on its client port.

use super::cluster::ClusterService;
use super::election::ElectionService;
use super::gate::{self, Gate};
use super::incoming::CappedIncoming;
use super::kv::KvService;
use super::lease::{self, LeaseService};
use super::lock::{LockService, Shell};
use super::maintenance::MaintenanceService;
use super::proto::v3electionpb::election_server::ElectionServer;
use super::proto::v3lockpb::lock_server::LockServer;
use super::watch::WatchService;
use crate::limits::ClientLimits;
use crate::metrics::Metrics;
use crate::replica::ReplicaHandle;
use crate::status::Shared;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use etcd_client::proto::{
    PbClusterServer, PbKvServer, PbLeaseServer, PbMaintenanceServer, PbWatchServer,
};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tonic::service::Routes;

/// How long `/health` waits for its linearizable probe read.
const HEALTH_READ_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
struct HttpState {
    replica: ReplicaHandle,
    shared: Arc<Shared>,
    metrics: Arc<Metrics>,
}

/// Why the client API stopped with an error.
#[derive(Debug)]
pub enum ServeError {
    /// A listener's server failed.
    Server(tonic::transport::Error),
    /// A listener's task panicked or was cancelled.
    Task(tokio::task::JoinError),
}

impl std::fmt::Display for ServeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ServeError::Server(e) => write!(f, "client server: {e}"),
            ServeError::Task(e) => write!(f, "client server task: {e}"),
        }
    }
}

impl std::error::Error for ServeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ServeError::Server(e) => Some(e),
            ServeError::Task(e) => Some(e),
        }
    }
}

/// Serves every client listener until `shutdown` resolves.
pub async fn serve(
    listeners: Vec<TcpListener>,
    replica: ReplicaHandle,
    shared: Arc<Shared>,
    metrics: Arc<Metrics>,
    limits: ClientLimits,
    election_timeout: Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    // The gate refuses larger messages first, with grpc-go's words; tonic's own check stays
    // as a second line.
    let receive_max = limits.grpc_receive_bytes_max();
    let kv = PbKvServer::new(KvService {
        replica: replica.clone(),
        shared: shared.clone(),
        request_bytes_max: limits.request_bytes_max,
    })
    .max_decoding_message_size(receive_max);
    let cluster = PbClusterServer::new(ClusterService {
        shared: shared.clone(),
        replica: replica.clone(),
    })
    .max_decoding_message_size(receive_max);
    let maintenance = PbMaintenanceServer::new(MaintenanceService {
        shared: shared.clone(),
        replica: replica.clone(),
        metrics: metrics.clone(),
    })
    .max_decoding_message_size(receive_max);
    let watch = PbWatchServer::new(WatchService {
        replica: replica.clone(),
        shared: shared.clone(),
        request_bytes_max: limits.request_bytes_max,
        leader_check_interval: election_timeout,
    })
    .max_decoding_message_size(receive_max);
    let lease = PbLeaseServer::new(LeaseService {
        replica: replica.clone(),
        shared: shared.clone(),
        ttl_min: lease::ttl_min(election_timeout),
    })
    .max_decoding_message_size(receive_max);
    let shell = Shell {
        replica: replica.clone(),
        shared: shared.clone(),
        metrics: metrics.clone(),
        request_bytes_max: limits.request_bytes_max,
        lease_ttl_min: lease::ttl_min(election_timeout),
    };
    let lock = LockServer::new(LockService {
        shell: shell.clone(),
    })
    .max_decoding_message_size(receive_max);
    let election =
        ElectionServer::new(ElectionService { shell }).max_decoding_message_size(receive_max);
    let gate = Arc::new(Gate {
        limits,
        metrics: metrics.clone(),
    });
    let state = HttpState {
        replica,
        shared,
        metrics: metrics.clone(),
    };
    let http = axum::Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics_text))
        .with_state(state);
    let router = Routes::new(kv)
        .add_service(cluster)
        .add_service(maintenance)
        .add_service(watch)
        .add_service(lease)
        .add_service(lock)
        .add_service(election)
        .into_axum_router()
        .merge(http)
        .fallback(gate::unsupported)
        .layer(axum::middleware::from_fn_with_state(gate, gate::check));
    let routes = Routes::from(router);

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut servers = Vec::new();
    for listener in listeners {
        let routes = routes.clone();
        let mut stop = stop_rx.clone();
        let incoming = CappedIncoming::new(listener, limits, metrics.clone());
        servers.push(tokio::spawn(async move {
            tonic::transport::Server::builder()
                .accept_http1(true)
                .add_routes(routes)
                .serve_with_incoming_shutdown(incoming, async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
                .await
        }));
    }
    shutdown.await;
    let _ = stop_tx.send(true);
    for server in servers {
        match server.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(ServeError::Server(e)),
            Err(e) => return Err(ServeError::Task(e)),
        }
    }
    Ok(())
}

async fn health(State(state): State<HttpState>) -> impl IntoResponse {
    // etcd reports a raised alarm first, as "ALARM <TYPE>".
    let alarm = state.metrics.conditions.active().find_map(|c| c.alarm());
    let reason = if let Some(alarm) = alarm {
        Some(format!("ALARM {}", alarm.as_str_name()))
    } else if state.shared.status().leader.is_none() {
        Some("RAFT NO LEADER".to_string())
    } else {
        // A linearizable read proves the member can reach a quorum, not only that it
        // remembers a leader.
        let probe = synod_kv::RangeRequest::key(bytes::Bytes::from_static(b"health"));
        match tokio::time::timeout(
            HEALTH_READ_TIMEOUT,
            state
                .replica
                .read(synod_kv::ReadRequest::range(probe), true),
        )
        .await
        {
            Ok(Ok(_)) => None,
            Ok(Err(e)) => Some(e.to_string()),
            Err(_) => Some("timed out".to_string()),
        }
    };
    let (code, body) = match reason {
        None => (
            StatusCode::OK,
            r#"{"health":"true","reason":""}"#.to_string(),
        ),
        Some(r) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(r#"{{"health":"false","reason":{:?}}}"#, r),
        ),
    };
    (code, [(header::CONTENT_TYPE, "application/json")], body)
}

async fn metrics_text(State(state): State<HttpState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}
