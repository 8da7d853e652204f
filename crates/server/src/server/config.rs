//! A member's flags, checked, as its configuration.

use crate::cli::{ClusterState, MemberArgs, ReadModeArg};
use crate::cluster::{parse_urls, FlagError, InitialCluster, Url};
use crate::limits::{ClientLimits, REQUEST_BYTES_FLAG_MAX};
use crate::replica::{self, CoreConfig};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;
use synod_paxos::{Config, ReadMode};

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
        let watch_progress_interval = watch_progress_interval(&a.watch_progress_notify_interval)?;
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
                planted_bug_local_reads: planted_bug_local_reads(a),
                peer_dial,
                auto_compaction,
                snapshot_every_commands: a.snapshot_count.max(1),
                client_urls: client_advertise.iter().map(Url::to_string).collect(),
                watch_progress_interval,
            },
        })
    }
}

/// The shortest progress interval accepted: more often would turn idle watchers into a
/// steady load for nothing.
const WATCH_PROGRESS_INTERVAL_MIN: Duration = Duration::from_millis(100);

fn watch_progress_interval(value: &str) -> Result<Duration, FlagError> {
    let flag = "--experimental-watch-progress-notify-interval";
    let interval =
        crate::go_duration::parse(value).map_err(|e| FlagError(format!("{flag}: {e}")))?;
    if interval < WATCH_PROGRESS_INTERVAL_MIN {
        return Err(FlagError(format!(
            "{flag} {value:?} is below the minimum of {WATCH_PROGRESS_INTERVAL_MIN:?}"
        )));
    }
    Ok(interval)
}

/// `--planted-bug-local-reads`, which only test builds have.
#[cfg(feature = "planted-bugs")]
fn planted_bug_local_reads(a: &MemberArgs) -> bool {
    a.planted_bug_local_reads
}

#[cfg(not(feature = "planted-bugs"))]
fn planted_bug_local_reads(_: &MemberArgs) -> bool {
    false
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
