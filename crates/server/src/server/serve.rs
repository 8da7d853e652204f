//! The last two steps of starting a member: the peer transport, then the replica and the
//! client API until the member is asked to stop or its replica stops on its own.

use super::open::{initial_table, DataDir};
use super::MemberConfig;
use crate::cluster::{BindAddr, FlagError, Url};
use crate::metrics::{Metrics, StartupStage};
use crate::replica;
use crate::status::Shared;
use crate::transport::{Transport, TransportConfig};
use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use synod_paxos::Message;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// Why the peer transport did not start.
#[derive(Debug)]
pub enum TransportError {
    /// `--listen-peer-urls` names no address to bind.
    PeerUrl(FlagError),
    /// The listener (or the peer-incarnations file) could not be opened.
    Start { url: Url, source: std::io::Error },
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransportError::PeerUrl(e) => e.fmt(f),
            TransportError::Start { url, source } => {
                write!(f, "cannot start the peer transport on {url}: {source}")
            }
        }
    }
}

impl std::error::Error for TransportError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TransportError::PeerUrl(e) => Some(e),
            TransportError::Start { source, .. } => Some(source),
        }
    }
}

/// Why a member stopped serving with an error, or could not start to.
#[derive(Debug)]
pub enum ServeError {
    /// `--listen-client-urls` names no address to bind.
    ClientUrl(FlagError),
    Listen {
        url: Url,
        source: std::io::Error,
    },
    ReplicaStart(replica::StartError),
    /// The client API failed.
    Clients(crate::grpc::ServeError),
    /// The client API's task panicked or was cancelled.
    ClientTask(tokio::task::JoinError),
    /// The replica stopped on its own (the replica's reason: a disk error, say).
    ReplicaStopped(String),
}

impl fmt::Display for ServeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServeError::ClientUrl(e) => e.fmt(f),
            ServeError::Listen { url, source } => {
                write!(f, "cannot listen for clients on {url}: {source}")
            }
            ServeError::ReplicaStart(e) => e.fmt(f),
            ServeError::Clients(e) => e.fmt(f),
            ServeError::ClientTask(e) => write!(f, "client API task: {e}"),
            ServeError::ReplicaStopped(reason) => f.write_str(reason),
        }
    }
}

impl std::error::Error for ServeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ServeError::ClientUrl(e) => Some(e),
            ServeError::Listen { source, .. } => Some(source),
            ServeError::ReplicaStart(e) => Some(e),
            ServeError::Clients(e) => Some(e),
            ServeError::ClientTask(e) => Some(e),
            ServeError::ReplicaStopped(_) => None,
        }
    }
}

/// The running peer transport and what it received for the replica.
#[derive(Debug)]
pub(super) struct Peers {
    transport: Transport,
    from_peers: mpsc::Receiver<Message>,
}

/// Binds the peer listener and starts dialing the other members. `incarnation` is the data
/// directory's, which peers check at the handshake.
pub(super) async fn start_transport(
    cfg: &MemberConfig,
    incarnation: u64,
) -> Result<Peers, TransportError> {
    let peers: BTreeMap<u64, String> = cfg
        .cluster
        .members
        .values()
        .filter(|m| m.id != cfg.member_id)
        .map(|m| {
            let addr = cfg.core.peer_dial.get(&m.id).cloned();
            (m.id, addr.unwrap_or_else(|| m.peer_url.authority()))
        })
        .collect();
    let peer_addr = cfg
        .peer_listen
        .bind_addr("--listen-peer-urls")
        .map_err(TransportError::PeerUrl)?;
    let (to_core, from_peers) = mpsc::channel(replica::INPUT_QUEUE_MAX);
    let transport = Transport::start(
        TransportConfig {
            incarnation,
            peer_incarnations: Some(cfg.data_dir.join("peer-incarnations")),
            member_names: cfg
                .cluster
                .members
                .values()
                .map(|m| (m.id, m.name.clone()))
                .collect(),
            queue_messages_max: cfg.peer_queue_max,
            ..TransportConfig::new(cfg.cluster.cluster_id, cfg.member_id, peer_addr, peers)
        },
        to_core,
    )
    .await
    .map_err(|source| TransportError::Start {
        url: cfg.peer_listen.clone(),
        source,
    })?;
    Ok(Peers {
        transport,
        from_peers,
    })
}

/// Starts the replica and serves clients until `shutdown` resolves or the replica stops on
/// its own; then stops the transport, whatever the outcome.
pub(super) async fn serve(
    cfg: MemberConfig,
    data: DataDir,
    peers: Peers,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let Peers {
        transport,
        from_peers,
    } = peers;
    let outcome = serve_clients(cfg, data, &transport, from_peers, metrics, shutdown).await;
    transport.shutdown().await;
    outcome
}

async fn serve_clients(
    mut cfg: MemberConfig,
    data: DataDir,
    transport: &Transport,
    from_peers: mpsc::Receiver<Message>,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let mut client_listeners = Vec::new();
    for url in &cfg.client_listen {
        let addr = url
            .bind_addr("--listen-client-urls")
            .map_err(ServeError::ClientUrl)?;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ServeError::Listen {
                url: url.clone(),
                source,
            })?;
        client_listeners.push(listener);
    }

    #[cfg(feature = "planted-bugs")]
    if cfg.core.planted_bug_local_reads {
        tracing::warn!("PLANTED BUG: linearizable reads are served locally (stale reads possible)");
    }
    let incarnation = random_u64();
    cfg.core.engine.seed = incarnation;
    // Until the replica publishes the log's member table, the flags' view.
    let members = initial_table(&cfg, true);
    let shared = Shared::new(
        cfg.cluster.cluster_id,
        cfg.member_id,
        cfg.name.clone(),
        members,
    );
    let DataDir {
        storage,
        durable,
        restored,
        ..
    } = data;
    let replica = replica::start(
        cfg.core.clone(),
        durable,
        restored,
        Box::new(storage),
        Arc::new(transport.clone()),
        from_peers,
        shared.clone(),
        metrics.clone(),
        incarnation,
    )
    .map_err(ServeError::ReplicaStart)?;
    tracing::info!(
        name = %cfg.name,
        member_id = format!("{:x}", cfg.member_id),
        cluster_id = format!("{:x}", cfg.cluster.cluster_id),
        clients = %cfg.client_listen.iter().map(Url::to_string).collect::<Vec<_>>().join(","),
        peers = %cfg.peer_listen,
        "serving"
    );
    metrics.startup.reached(StartupStage::Serving);

    // The client API stops when asked, or when the replica stops on its own (a disk error).
    let handle = replica.handle.clone();
    let election_timeout = cfg
        .core
        .tick
        .saturating_mul(u32::try_from(cfg.core.engine.election_timeout_ticks).unwrap_or(u32::MAX));
    tokio::spawn(crate::degraded::hand_off_leadership_while_refusing_writes(
        handle.clone(),
        shared.clone(),
        metrics.clone(),
        election_timeout,
    ));
    let (stopped_tx, stopped_rx) = tokio::sync::oneshot::channel::<()>();
    let mut api = tokio::spawn(crate::grpc::serve(
        client_listeners,
        handle.clone(),
        shared,
        metrics,
        cfg.client_limits,
        election_timeout,
        async move {
            tokio::select! {
                _ = shutdown => {}
                _ = stopped_rx => {}
            }
        },
    ));
    let replica_done = replica.join();
    tokio::pin!(replica_done);
    tokio::select! {
        r = &mut api => {
            // Asked to stop: stop the replica, then wait for it. The client API's error, if
            // any, comes first: it is why the member stopped.
            handle.shutdown();
            let replica_result = (&mut replica_done).await;
            match r {
                Ok(Ok(())) => replica_result.map_err(ServeError::ReplicaStopped),
                Ok(Err(e)) => Err(ServeError::Clients(e)),
                Err(e) => Err(ServeError::ClientTask(e)),
            }
        }
        r = &mut replica_done => {
            let _ = stopped_tx.send(());
            let _ = api.await;
            r.map_err(ServeError::ReplicaStopped)
        }
    }
}

/// A fresh random number for this process: the engine's seed and the dedup client id must
/// differ on every start (docs/PROTOCOL.md, "Reads"). The standard library's hasher keys
/// are drawn from the OS's random source.
fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.write_u32(std::process::id());
    h.finish()
}
