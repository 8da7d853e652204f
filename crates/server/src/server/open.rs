//! The first step of starting a member: its data directory. Checks whose data it is,
//! recovers the log and the newest snapshot, or bootstraps an empty directory.

use super::MemberConfig;
use crate::cluster::Url;
use crate::identity::{Identity, IdentityError};
use crate::members::{MemberRecord, MemberTable};
use crate::metrics::{Metrics, StartupStage};
use crate::replica;
use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use synod_paxos::DurableState;
use synod_storage::{Batch, DiskStorage, Storage, StorageError};

/// What an opened data directory holds: the member's identity and everything the replica
/// resumes from.
#[derive(Debug)]
pub(super) struct DataDir {
    pub(super) identity: Identity,
    pub(super) storage: DiskStorage,
    pub(super) durable: DurableState,
    pub(super) restored: replica::Restored,
}

/// Why the data directory cannot be used.
#[derive(Debug)]
pub enum OpenError {
    CreateDir {
        dir: PathBuf,
        source: std::io::Error,
    },
    /// The member file is missing where it must be, damaged, or names another member.
    Identity(IdentityError),
    /// The log cannot be recovered.
    Recover(StorageError),
    /// The flags' members make no membership.
    InitialMembership(crate::members::DecodeError),
    /// A new member's first state cannot be written.
    WriteInitialState(StorageError),
    ReadSnapshot(StorageError),
    /// The newest snapshot's envelope cannot be decoded.
    SnapshotUndecodable {
        slot: u64,
        reason: crate::snapshot::FormatError,
    },
    /// The store inside the newest snapshot cannot be decoded.
    SnapshotStoreDamaged {
        slot: u64,
        source: synod_kv::DecodeError,
    },
    /// The newest snapshot's file and contents disagree on the slot it covers.
    SnapshotSlotMismatch {
        slot: u64,
        covers: u64,
    },
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpenError::CreateDir { dir, source } => {
                write!(f, "cannot create --data-dir {}: {source}", dir.display())
            }
            OpenError::Identity(e) => e.fmt(f),
            OpenError::Recover(e) => write!(f, "cannot recover the data directory: {e}"),
            OpenError::InitialMembership(reason) => {
                write!(f, "the members of --initial-cluster: {reason}")
            }
            OpenError::WriteInitialState(e) => write!(f, "cannot write the initial state: {e}"),
            OpenError::ReadSnapshot(e) => write!(f, "cannot read the newest snapshot: {e}"),
            OpenError::SnapshotUndecodable { slot, reason } => {
                write!(f, "the newest snapshot (slot {slot}) is damaged: {reason}")
            }
            OpenError::SnapshotStoreDamaged { slot, source } => {
                write!(f, "the newest snapshot (slot {slot}) is damaged: {source}")
            }
            OpenError::SnapshotSlotMismatch { slot, covers } => write!(
                f,
                "the newest snapshot (slot {slot}) says it covers slot {covers}: damaged"
            ),
        }
    }
}

impl std::error::Error for OpenError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            OpenError::CreateDir { source, .. } => Some(source),
            OpenError::Identity(e) => Some(e),
            OpenError::Recover(e)
            | OpenError::WriteInitialState(e)
            | OpenError::ReadSnapshot(e) => Some(e),
            OpenError::SnapshotStoreDamaged { source, .. } => Some(source),
            OpenError::InitialMembership(_)
            | OpenError::SnapshotUndecodable { .. }
            | OpenError::SnapshotSlotMismatch { .. } => None,
        }
    }
}

impl From<IdentityError> for OpenError {
    fn from(e: IdentityError) -> Self {
        OpenError::Identity(e)
    }
}

/// Opens (or creates) `cfg.data_dir`. A directory that names this member under another id
/// (its peer URL was updated since it was added) makes that id `cfg`'s.
pub(super) fn open_data_dir(
    cfg: &mut MemberConfig,
    metrics: &Metrics,
) -> Result<DataDir, OpenError> {
    std::fs::create_dir_all(&cfg.data_dir).map_err(|source| OpenError::CreateDir {
        dir: cfg.data_dir.clone(),
        source,
    })?;
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
    let mut storage =
        DiskStorage::open(cfg.data_dir.join("log"), options).map_err(OpenError::Recover)?;
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
        .fetch_add(damaged.len() as u64, Relaxed);
    let mut durable = if storage.recovered().is_empty() && cfg.join_existing {
        // Knows nothing yet: the leader sends the log (or a snapshot) once the membership
        // names this member; it never campaigns before it is a voter.
        identity = identity.renew_incarnation(&cfg.data_dir)?;
        tracing::info!("joining a running cluster (--initial-cluster-state existing)");
        DurableState::default()
    } else if storage.recovered().is_empty() {
        // Every member of a new cluster writes the same table into slot 1: names and peer
        // URLs from --initial-cluster (client URLs are published once members run).
        let members = initial_table(cfg, false)
            .to_membership()
            .map_err(OpenError::InitialMembership)?;
        // An empty acceptor is a new incarnation, whatever the member file says (say, its
        // log/ alone was wiped): peers must not take it for the one that made promises.
        identity = identity.renew_incarnation(&cfg.data_dir)?;
        let state = DurableState::bootstrap(&members);
        storage
            .append(&Batch::new(Some(state.hard_state), state.records.clone()))
            .map_err(OpenError::WriteInitialState)?;
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
        metrics.startup.wal_batches.store(r.report.batches, Relaxed);
        r.durable_state()
    };
    metrics.startup.reached(StartupStage::DataDirRecovered);
    // The store resumes from the newest snapshot; the engine replays the log above it.
    let mut restored = replica::Restored::default();
    if let Some(snap) = storage.latest_snapshot().map_err(OpenError::ReadSnapshot)? {
        let slot = snap.meta.slot;
        let (info, kv) = crate::snapshot::decode(&snap.data)
            .map_err(|reason| OpenError::SnapshotUndecodable { slot, reason })?;
        restored.kv = synod_kv::KvStore::restore(&kv)
            .map_err(|source| OpenError::SnapshotStoreDamaged { slot, source })?;
        if info.slot != slot {
            return Err(OpenError::SnapshotSlotMismatch {
                slot,
                covers: info.slot,
            });
        }
        durable.snapshot = Some(info);
        tracing::info!(
            slot,
            bytes = snap.data.len(),
            "restored the newest snapshot"
        );
        let startup = &metrics.startup;
        startup.snapshot_slot.store(slot, Relaxed);
        startup
            .snapshot_bytes
            .store(snap.data.len() as u64, Relaxed);
        startup.reached(StartupStage::SnapshotRestored);
        restored.latest = Some((slot, snap.data));
    }
    Ok(DataDir {
        identity,
        storage,
        durable,
        restored,
    })
}

/// The members `--initial-cluster` names. With `own_client_urls`, this member's advertised
/// client URLs are filled in; without, the table is the same at every member (slot 1's).
pub(super) fn initial_table(cfg: &MemberConfig, own_client_urls: bool) -> MemberTable {
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
