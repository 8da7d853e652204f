//! What the replica thread publishes about itself after every step, for the endpoints that
//! must answer without waiting on it (`/health`, Maintenance.Status, Cluster.MemberList).

use std::sync::{Arc, RwLock};
use synod_paxos::NodeId;
use synod_replica::ReplicaStatus;

use crate::members::MemberTable;

/// Fixed facts about this member and its cluster, plus the replica's status as of its last turn.
#[derive(Debug)]
pub struct Shared {
    pub cluster_id: u64,
    pub member_id: NodeId,
    pub name: String,
    /// The member table of the newest applied membership (names, URLs, learners).
    members: RwLock<MemberTable>,
    live: RwLock<ReplicaStatus>,
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
            live: RwLock::new(ReplicaStatus::default()),
        })
    }

    pub fn status(&self) -> ReplicaStatus {
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

    pub fn publish(&self, s: ReplicaStatus) {
        *self.live.write().unwrap_or_else(|e| e.into_inner()) = s;
    }
}
