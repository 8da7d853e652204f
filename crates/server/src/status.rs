//! What the replica thread publishes about itself after every step, for the endpoints that
//! must answer without waiting on it (`/health`, Maintenance.Status, Cluster.MemberList).

use std::sync::{Arc, RwLock};
use synod_paxos::{NodeId, Role};

use crate::members::MemberTable;

#[derive(Debug, Clone)]
pub struct Snapshot {
    pub role: Role,
    pub leader: Option<NodeId>,
    /// The round of the newest ballot this member promised: the counterpart of raft's term.
    pub term: u64,
    pub commit_slot: u64,
    pub applied_slot: u64,
    pub revision: i64,
    pub db_size_bytes: u64,
    pub db_size_in_use_bytes: u64,
    pub voters: Vec<NodeId>,
}

impl Default for Snapshot {
    fn default() -> Self {
        Snapshot {
            role: Role::Follower,
            leader: None,
            term: 0,
            commit_slot: 0,
            applied_slot: 0,
            revision: 1,
            db_size_bytes: 0,
            db_size_in_use_bytes: 0,
            voters: Vec::new(),
        }
    }
}

/// Fixed facts about this member and its cluster, plus the live snapshot.
#[derive(Debug)]
pub struct Shared {
    pub cluster_id: u64,
    pub member_id: NodeId,
    pub name: String,
    /// The member table of the newest applied membership (names, URLs, learners).
    members: RwLock<MemberTable>,
    live: RwLock<Snapshot>,
}

impl Shared {
    pub fn new(
        cluster_id: u64,
        member_id: NodeId,
        name: String,
        members: MemberTable,
    ) -> Arc<Shared> {
        Arc::new(Shared {
            cluster_id,
            member_id,
            name,
            members: RwLock::new(members),
            live: RwLock::new(Snapshot::default()),
        })
    }

    pub fn snapshot(&self) -> Snapshot {
        // A poisoned lock only means a writer panicked mid-update; the replica thread's panic
        // ends the process anyway, so serve what is there.
        self.live.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn members(&self) -> MemberTable {
        self.members
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn set_members(&self, table: MemberTable) {
        *self.members.write().unwrap_or_else(|e| e.into_inner()) = table;
    }

    pub fn publish(&self, s: Snapshot) {
        *self.live.write().unwrap_or_else(|e| e.into_inner()) = s;
    }
}
