//! Starting and stopping one member: flags to configuration, the data directory, storage
//! recovery, the peer transport, the replica threads and the client API.

use crate::cli::{ClusterState, MemberArgs, ReadModeArg};
use crate::cluster::{parse_urls, BindAddr, FlagError, InitialCluster, Url};
use crate::identity::Identity;
use crate::limits::{ClientLimits, REQUEST_BYTES_FLAG_MAX};
use crate::members::{MemberRecord, MemberTable};
use crate::metrics::Metrics;
use crate::replica::{self, CoreConfig};
use crate::status::Shared;
use crate::transport::{Transport, TransportConfig};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use synod_paxos::{Config, DurableState, ReadMode};
use synod_storage::{Batch, DiskStorage, Storage};
use tokio::net::TcpListener;

/// Engine ticks per heartbeat: the tick is a tenth of the heartbeat interval, fine enough
/// for timeouts and leases, coarse enough to cost nothing.
const TICKS_PER_HEARTBEAT: u64 = 10;

/// Everything a member needs, checked.
#[derive(Debug)]
pub struct MemberConfig {
    pub name: String,
    /// `--initial-cluster-state existing`: an empty data directory joins a running cluster
    /// (added first with `etcdctl member add`) instead of bootstrapping a new one.
    pub join_existing: bool,
    pub data_dir: PathBuf,
    pub cluster: InitialCluster,
    pub member_id: u64,
    pub client_listen: Vec<Url>,
    pub client_advertise: Vec<Url>,
    pub peer_listen: Url,
    pub wal_segment_bytes: u64,
    /// Messages queued per peer (`--peer-queue-max`, hidden).
    pub peer_queue_max: usize,
    pub client_limits: ClientLimits,
    pub core: CoreConfig,
}

impl MemberConfig {
    pub fn from_args(a: &MemberArgs) -> Result<MemberConfig, FlagError> {
        let cluster = InitialCluster::parse(&a.initial_cluster, &a.initial_cluster_token)?;
        let me = cluster.by_name(&a.name).ok_or_else(|| {
            FlagError(format!(
                "--name {:?} is not among the members of --initial-cluster ({})",
                a.name,
                cluster
                    .members
                    .values()
                    .map(|m| m.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?;
        let advertised_peer = Url::parse(
            "--initial-advertise-peer-urls",
            &a.initial_advertise_peer_urls,
        )?;
        if advertised_peer != me.peer_url {
            return Err(FlagError(format!(
                "--initial-advertise-peer-urls {advertised_peer} does not match {}'s URL in \
                 --initial-cluster ({})",
                a.name, me.peer_url
            )));
        }
        if a.heartbeat_interval == 0 {
            return Err(FlagError(
                "--heartbeat-interval must be at least 1 ms".into(),
            ));
        }
        if a.election_timeout < 3 * a.heartbeat_interval {
            return Err(FlagError(format!(
                "--election-timeout ({} ms) must be at least 3 × --heartbeat-interval ({} ms): \
                 a follower must hear several heartbeats before it gives up on the leader",
                a.election_timeout, a.heartbeat_interval
            )));
        }
        if a.clock_drift_ppm_max >= 500_000 {
            return Err(FlagError(
                "--max-clock-drift-ppm must be below 500000 (50%)".into(),
            ));
        }
        if a.request_bytes_max == 0 || a.request_bytes_max > REQUEST_BYTES_FLAG_MAX {
            return Err(FlagError(format!(
                "--max-request-bytes must be between 1 and {REQUEST_BYTES_FLAG_MAX} (a \
                 request must fit a peer message)"
            )));
        }
        if a.client_connections_max == Some(0) {
            return Err(FlagError(
                "--max-client-connections must be at least 1".into(),
            ));
        }
        let tick_us = (a.heartbeat_interval * 1000 / TICKS_PER_HEARTBEAT).max(1);
        let mut engine = Config::new(me.id);
        engine.heartbeat_interval_ticks = TICKS_PER_HEARTBEAT;
        engine.election_timeout_ticks = a.election_timeout * 1000 / tick_us;
        engine.read_mode = match a.read_mode {
            ReadModeArg::Lease => ReadMode::Lease,
            ReadModeArg::Quorum => ReadMode::Quorum,
        };
        engine.clock_drift_ppm_max = a.clock_drift_ppm_max;
        engine.batch_commands_max = a.batch_commands_max.max(1);
        engine.inflight_slots_max = a.inflight_slots_max.max(1) as u64;
        engine
            .validate()
            .map_err(|e| FlagError(format!("configuration: {e}")))?;
        let client_advertise = parse_urls("--advertise-client-urls", &a.advertise_client_urls)?;
        let peer_dial = parse_peer_dial(&a.peer_dial, &cluster)?;
        let auto_compaction =
            replica::Retention::parse(&a.auto_compaction_mode, &a.auto_compaction_retention)
                .map_err(|e| FlagError(e.to_string()))?;
        Ok(MemberConfig {
            name: a.name.clone(),
            join_existing: a.initial_cluster_state == ClusterState::Existing,
            data_dir: a
                .data_dir
                .clone()
                .unwrap_or_else(|| PathBuf::from(format!("{}.synod", a.name))),
            member_id: me.id,
            client_listen: parse_urls("--listen-client-urls", &a.listen_client_urls)?,
            client_advertise: client_advertise.clone(),
            peer_listen: Url::parse("--listen-peer-urls", &a.listen_peer_urls)?,
            wal_segment_bytes: a.wal_segment_bytes.max(4096),
            peer_queue_max: a.peer_queue_max.max(1),
            client_limits: ClientLimits {
                request_bytes_max: a.request_bytes_max,
                client_connections_max: a.client_connections_max,
            },
            cluster,
            core: CoreConfig {
                engine,
                tick: Duration::from_micros(tick_us),
                clock_skew_ppm: a.clock_skew_ppm,
                request_timeout: Duration::from_millis(a.request_timeout.max(1)),
                planted_bug_local_reads: a.planted_bug_local_reads,
                peer_dial,
                auto_compaction,
                snapshot_every_commands: a.snapshot_count.max(1),
                client_urls: client_advertise.iter().map(Url::to_string).collect(),
            },
        })
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

/// Runs one member until `shutdown` resolves or it fails.
pub async fn run(
    mut cfg: MemberConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    crate::limits::raise_open_file_limit();
    crate::limits::catch_file_size_signal();
    let cap = cfg.client_limits.client_connections_max();
    if cfg
        .client_limits
        .client_connections_max
        .is_some_and(|n| n > cap)
    {
        tracing::warn!(
            cap,
            "--max-client-connections is above what the open-file limit allows; capped"
        );
    }
    let metrics = Arc::new(Metrics::default());
    std::fs::create_dir_all(&cfg.data_dir)
        .map_err(|e| format!("cannot create --data-dir {}: {e}", cfg.data_dir.display()))?;
    let mut identity = Identity::new(cfg.name.clone(), cfg.member_id, cfg.cluster.cluster_id)
        .check_or_create(&cfg.data_dir)?;
    if identity.member_id != cfg.member_id {
        // The peer URL changed since this member was added (member update): its id is the
        // one in its data directory; the flags' entry for it names the new URL.
        tracing::info!(
            id = format!("{:x}", identity.member_id),
            derived = format!("{:x}", cfg.member_id),
            "member id from the data directory (peer URL updated since the member was added)"
        );
        let derived = cfg.member_id;
        cfg.member_id = identity.member_id;
        cfg.core.engine.id = identity.member_id;
        if let Some(mut me) = cfg.cluster.members.remove(&derived) {
            me.id = identity.member_id;
            cfg.cluster.members.insert(identity.member_id, me);
        }
    }

    let options = synod_storage::Options {
        segment_bytes_max: cfg.wal_segment_bytes,
        ..Default::default()
    };
    let mut storage = DiskStorage::open(cfg.data_dir.join("log"), options)
        .map_err(|e| format!("cannot recover the data directory: {e}"))?;
    let damaged = &storage.recovered().report.damaged_snapshots;
    for (path, reason) in damaged {
        tracing::warn!(
            path = %path.display(),
            %reason,
            "damaged snapshot set aside (renamed *.corrupt); recovering from an older one and \
             the log, or from peers"
        );
    }
    metrics
        .snapshots_damaged
        .fetch_add(damaged.len() as u64, std::sync::atomic::Ordering::Relaxed);
    let mut restored = replica::Restored::default();
    let mut durable = if storage.recovered().is_empty() && cfg.join_existing {
        // Knows nothing yet: the leader sends the log (or a snapshot) once the membership
        // names this member; it never campaigns before it is a voter.
        identity = identity.renew_incarnation(&cfg.data_dir)?;
        tracing::info!("joining a running cluster (--initial-cluster-state existing)");
        DurableState::default()
    } else if storage.recovered().is_empty() {
        // Every member of a new cluster writes the same table into slot 1: names and peer
        // URLs from --initial-cluster (client URLs are published once members run).
        let members = initial_table(&cfg, false)
            .to_membership()
            .map_err(|e| e.to_string())?;
        // An empty acceptor is a new incarnation, whatever the member file says (say, its
        // log/ alone was wiped): peers must not take it for the one that made promises.
        identity = identity.renew_incarnation(&cfg.data_dir)?;
        let state = DurableState::bootstrap(&members);
        storage
            .append(&Batch::new(Some(state.hard_state), state.records.clone()))
            .map_err(|e| format!("cannot write the initial state: {e}"))?;
        tracing::info!(members = ?members.voters(), "bootstrapped a new cluster member");
        state
    } else {
        let r = storage.recovered();
        if let Some(torn) = &r.report.torn_tail {
            tracing::warn!(
                path = %torn.path.display(), offset = torn.offset, bytes = torn.bytes_dropped,
                "cut off an interrupted write at the end of the log"
            );
        }
        tracing::info!(
            batches = r.report.batches,
            promised = ?r.hard_state.promised,
            commit = r.hard_state.commit,
            "recovered from the data directory"
        );
        r.durable_state()
    };
    // The store resumes from the newest snapshot; the engine replays the log above it.
    if let Some(snap) = storage
        .latest_snapshot()
        .map_err(|e| format!("cannot read the newest snapshot: {e}"))?
    {
        let (info, kv) = crate::snapshot::decode(&snap.data).map_err(|e| {
            format!(
                "the newest snapshot (slot {}) is damaged: {e}",
                snap.meta.slot
            )
        })?;
        restored.kv = synod_kv::KvStore::restore(&kv).map_err(|e| {
            format!(
                "the newest snapshot (slot {}) is damaged: {e}",
                snap.meta.slot
            )
        })?;
        if info.slot != snap.meta.slot {
            return Err(format!(
                "the newest snapshot (slot {}) says it covers slot {}: damaged",
                snap.meta.slot, info.slot
            ));
        }
        durable.snapshot = Some(info);
        tracing::info!(
            slot = snap.meta.slot,
            bytes = snap.data.len(),
            "restored the newest snapshot"
        );
        restored.latest = Some((snap.meta.slot, snap.data));
    }

    if cfg.core.planted_bug_local_reads {
        tracing::warn!("PLANTED BUG: linearizable reads are served locally (stale reads possible)");
    }
    let incarnation = random_u64();
    cfg.core.engine.seed = incarnation;

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
        .map_err(|e| e.to_string())?;
    let (to_core, from_peers) = tokio::sync::mpsc::channel(replica::INPUT_QUEUE_MAX);
    let transport = Transport::start(
        TransportConfig {
            incarnation: identity.incarnation,
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
    .map_err(|e| {
        format!(
            "cannot start the peer transport on {}: {e}",
            cfg.peer_listen
        )
    })?;

    let mut client_listeners = Vec::new();
    for url in &cfg.client_listen {
        let addr = url
            .bind_addr("--listen-client-urls")
            .map_err(|e| e.to_string())?;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| format!("cannot listen for clients on {url}: {e}"))?;
        client_listeners.push(listener);
    }

    // Until the replica publishes the log's member table, the flags' view.
    let members = initial_table(&cfg, true);
    let shared = Shared::new(
        cfg.cluster.cluster_id,
        cfg.member_id,
        cfg.name.clone(),
        members,
    );
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
    .map_err(|e| e.to_string())?;
    tracing::info!(
        name = %cfg.name,
        member_id = format!("{:x}", cfg.member_id),
        cluster_id = format!("{:x}", cfg.cluster.cluster_id),
        clients = %cfg.client_listen.iter().map(Url::to_string).collect::<Vec<_>>().join(","),
        peers = %cfg.peer_listen,
        "serving"
    );

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
    let api = tokio::spawn(crate::grpc::serve(
        client_listeners,
        handle.clone(),
        shared,
        metrics,
        cfg.client_limits,
        async move {
            tokio::select! {
                _ = shutdown => {}
                _ = stopped_rx => {}
            }
        },
    ));
    let replica_done = replica.join();
    tokio::pin!(replica_done);
    let mut api = api;
    let outcome = tokio::select! {
        r = &mut api => {
            // Asked to stop: stop the replica, then wait for it.
            handle.shutdown();
            let replica_result = (&mut replica_done).await;
            r.unwrap_or_else(|e| Err(e.to_string())).and(replica_result)
        }
        r = &mut replica_done => {
            let _ = stopped_tx.send(());
            let _ = api.await;
            r
        }
    };
    transport.shutdown().await;
    outcome
}

/// The members `--initial-cluster` names. With `own_client_urls`, this member's advertised
/// client URLs are filled in; without, the table is the same at every member (slot 1's).
fn initial_table(cfg: &MemberConfig, own_client_urls: bool) -> MemberTable {
    let members = cfg
        .cluster
        .members
        .values()
        .map(|m| {
            let client_urls = if own_client_urls && m.id == cfg.member_id {
                cfg.client_advertise.iter().map(Url::to_string).collect()
            } else {
                Vec::new()
            };
            let record = MemberRecord {
                id: m.id,
                name: m.name.clone(),
                peer_urls: vec![m.peer_url.to_string()],
                client_urls,
                learner: false,
            };
            (m.id, record)
        })
        .collect();
    MemberTable {
        members,
        ..MemberTable::default()
    }
}

/// `--peer-dial name=host:port,...` (hidden, tests only) by member id.
fn parse_peer_dial(s: &str, cluster: &InitialCluster) -> Result<BTreeMap<u64, String>, FlagError> {
    let mut out = BTreeMap::new();
    for part in s.split(',').filter(|p| !p.trim().is_empty()) {
        let (name, addr) = part
            .split_once('=')
            .ok_or_else(|| FlagError(format!("--peer-dial: {part:?}: expected name=host:port")))?;
        let member = cluster.by_name(name.trim()).ok_or_else(|| {
            FlagError(format!(
                "--peer-dial: {name:?} is not a member of --initial-cluster"
            ))
        })?;
        out.insert(member.id, addr.trim().to_string());
    }
    Ok(out)
}
