//! The member table: who is in the cluster (ids, names, URLs, learner or voter), which ids
//! were removed for good, and the membership requests (etcd's Cluster API) that change it.
//!
//! The table travels inside the engine's `Membership` as its context, so it is chosen in the
//! log with the voter set it describes and every replica applies the same table at the same
//! slot. Requests travel through the log too, as commands wrapped in an admin envelope
//! (`encode_request`): any member can accept one, every replica judges it against the same
//! table, and the leader turns a valid one into a membership proposal.

use crate::error::ReplicaError;
use bytes::{BufMut, Bytes};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use synod_paxos::codec::Reader;
use synod_paxos::{Membership, NodeId};

/// Starts every admin command; never the first byte of a key-value request (its format
/// version), so the two cannot be confused.
const ADMIN_MAGIC: &[u8; 8] = b"\xffSYNADM1";
const TABLE_VERSION: u8 = 1;
/// Most members a table may hold; more means the bytes are not a table.
const MEMBERS_MAX: usize = 1024;
const STRING_BYTES_MAX: usize = 4096;
const URLS_MAX: usize = 16;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRecord {
    pub id: NodeId,
    /// Empty until the member starts and publishes it (etcd shows unstarted members so).
    pub name: String,
    pub peer_urls: Vec<String>,
    pub client_urls: Vec<String>,
    pub learner: bool,
}

/// The members, by id, plus every id ever removed (an id names one acceptor's state; a
/// removed one never comes back, see docs/SERVER.md), plus the request that produced this
/// table, so the member that took the request can answer it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemberTable {
    pub members: BTreeMap<NodeId, MemberRecord>,
    pub removed: BTreeSet<NodeId>,
    /// `(client id, sequence)` of the admin command that produced this table.
    pub request: Option<(u64, u64)>,
}

/// Why bytes are not a member table or an admin request, or a table not a membership.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// The engine's codec refused the bytes (truncated, a bad varint, trailing bytes).
    Codec(synod_paxos::codec::DecodeError),
    /// The bytes decode but break a rule of the format.
    Invalid(&'static str),
    /// A chosen membership's table names other voters or learners than the membership.
    Mismatch,
    /// A table with no voter makes no membership.
    NoVoter,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Codec(e) => write!(f, "{e}"),
            DecodeError::Invalid(what) => f.write_str(what),
            DecodeError::Mismatch => {
                f.write_str("the member table does not match the membership's voters")
            }
            DecodeError::NoVoter => f.write_str("a membership needs at least one voter"),
        }
    }
}

impl std::error::Error for DecodeError {}

impl From<synod_paxos::codec::DecodeError> for DecodeError {
    fn from(e: synod_paxos::codec::DecodeError) -> Self {
        DecodeError::Codec(e)
    }
}

/// etcd's Cluster API requests (and a member publishing its own name and client URLs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminRequest {
    Add {
        peer_urls: Vec<String>,
        learner: bool,
    },
    Remove {
        id: NodeId,
    },
    Update {
        id: NodeId,
        peer_urls: Vec<String>,
    },
    Promote {
        id: NodeId,
    },
    Publish {
        id: NodeId,
        name: String,
        client_urls: Vec<String>,
    },
}

/// The id of the member whose (first) peer URL is `peer_url`: derived, so a member joining
/// with `--initial-cluster-state existing` knows its own id and its peers' from the flags.
pub fn member_id(cluster_id: u64, peer_url: &str) -> NodeId {
    crate::urls::fnv1a(&[
        b"member",
        &cluster_id.to_be_bytes(),
        peer_url.trim_end_matches('/').as_bytes(),
    ])
    .max(1)
}

impl MemberTable {
    /// The table a membership carries. A membership without one (made by a test driver)
    /// reads as unnamed members without URLs.
    pub fn from_membership(m: &Membership) -> Result<MemberTable, DecodeError> {
        if m.context().is_empty() {
            let record = |id: NodeId, learner: bool| MemberRecord {
                id,
                name: String::new(),
                peer_urls: Vec::new(),
                client_urls: Vec::new(),
                learner,
            };
            let members = m
                .voters()
                .iter()
                .map(|&id| (id, record(id, false)))
                .chain(m.learners().iter().map(|&id| (id, record(id, true))))
                .collect();
            return Ok(MemberTable {
                members,
                ..MemberTable::default()
            });
        }
        let table = MemberTable::decode(m.context())?;
        let voters: Vec<NodeId> = table.voters();
        let learners: Vec<NodeId> = table.learners();
        if voters != m.voters() || learners != m.learners() {
            return Err(DecodeError::Mismatch);
        }
        Ok(table)
    }

    pub fn voters(&self) -> Vec<NodeId> {
        self.members
            .values()
            .filter(|r| !r.learner)
            .map(|r| r.id)
            .collect()
    }

    pub fn learners(&self) -> Vec<NodeId> {
        self.members
            .values()
            .filter(|r| r.learner)
            .map(|r| r.id)
            .collect()
    }

    /// The engine's membership for this table (the table rides along as its context).
    pub fn to_membership(&self) -> Result<Membership, DecodeError> {
        Membership::with_learners(self.voters(), self.learners(), self.encode())
            .ok_or(DecodeError::NoVoter)
    }

    /// Where each member other than `me` listens for peers (host:port).
    pub fn peer_addrs(&self, me: NodeId) -> BTreeMap<NodeId, String> {
        self.members
            .values()
            .filter(|r| r.id != me)
            .filter_map(|r| {
                let url = r.peer_urls.first()?;
                let authority = url.split_once("://").map_or(url.as_str(), |(_, a)| a);
                Some((r.id, authority.trim_end_matches('/').to_string()))
            })
            .collect()
    }

    /// The table after `request`, or why it is refused (etcd's errors). Every replica
    /// judges a request against the same table, so all reach the same verdict.
    pub fn apply(
        &self,
        cluster_id: u64,
        request: &AdminRequest,
        origin: (u64, u64),
    ) -> Result<MemberTable, ReplicaError> {
        let mut next = self.clone();
        next.request = Some(origin);
        let precondition = |m: &str| Err(ReplicaError::Precondition(m.to_string()));
        match request {
            AdminRequest::Add { peer_urls, learner } => {
                check_urls(peer_urls)?;
                if self.url_taken(peer_urls, None) {
                    return precondition("etcdserver: Peer URLs already exists");
                }
                let id = member_id(cluster_id, &peer_urls[0]);
                if self.removed.contains(&id) {
                    return precondition(
                        "etcdserver: ID removed (a member with this peer URL was removed; \
                         its identity is never reused: give the new member another peer URL)",
                    );
                }
                if self.members.contains_key(&id) {
                    return precondition("etcdserver: member ID already exist");
                }
                if self.members.len() >= MEMBERS_MAX {
                    return precondition("etcdserver: too many members");
                }
                next.members.insert(
                    id,
                    MemberRecord {
                        id,
                        name: String::new(),
                        peer_urls: peer_urls.clone(),
                        client_urls: Vec::new(),
                        learner: *learner,
                    },
                );
            }
            AdminRequest::Remove { id } => {
                let Some(r) = self.members.get(id) else {
                    return Err(ReplicaError::NotFound(
                        "etcdserver: member not found".into(),
                    ));
                };
                if !r.learner && self.voters().len() == 1 {
                    return precondition(
                        "etcdserver: re-configuration failed: cannot remove the last voting member",
                    );
                }
                next.members.remove(id);
                next.removed.insert(*id);
            }
            AdminRequest::Update { id, peer_urls } => {
                check_urls(peer_urls)?;
                if !self.members.contains_key(id) {
                    return Err(ReplicaError::NotFound(
                        "etcdserver: member not found".into(),
                    ));
                }
                if self.url_taken(peer_urls, Some(*id)) {
                    return precondition("etcdserver: Peer URLs already exists");
                }
                next.members.get_mut(id).expect("checked").peer_urls = peer_urls.clone();
            }
            AdminRequest::Promote { id } => {
                let Some(r) = self.members.get(id) else {
                    return Err(ReplicaError::NotFound(
                        "etcdserver: member not found".into(),
                    ));
                };
                if !r.learner {
                    return precondition("etcdserver: can only promote a learner member");
                }
                next.members.get_mut(id).expect("checked").learner = false;
            }
            AdminRequest::Publish {
                id,
                name,
                client_urls,
            } => {
                let Some(r) = next.members.get_mut(id) else {
                    return Err(ReplicaError::NotFound(
                        "etcdserver: member not found".into(),
                    ));
                };
                r.name = name.clone();
                r.client_urls = client_urls.clone();
            }
        }
        Ok(next)
    }

    fn url_taken(&self, urls: &[String], except: Option<NodeId>) -> bool {
        self.members
            .values()
            .filter(|r| Some(r.id) != except)
            .any(|r| r.peer_urls.iter().any(|u| urls.contains(u)))
    }

    pub fn encode(&self) -> Bytes {
        let mut out = Vec::new();
        out.put_u8(TABLE_VERSION);
        put_varint(&mut out, self.members.len() as u64);
        for r in self.members.values() {
            put_varint(&mut out, r.id);
            put_str(&mut out, &r.name);
            put_strs(&mut out, &r.peer_urls);
            put_strs(&mut out, &r.client_urls);
            out.put_u8(u8::from(r.learner));
        }
        put_varint(&mut out, self.removed.len() as u64);
        for &id in &self.removed {
            put_varint(&mut out, id);
        }
        match self.request {
            None => out.put_u8(0),
            Some((client, seq)) => {
                out.put_u8(1);
                put_varint(&mut out, client);
                put_varint(&mut out, seq);
            }
        }
        Bytes::from(out)
    }

    pub fn decode(data: &[u8]) -> Result<MemberTable, DecodeError> {
        let mut r = Reader::new(Bytes::copy_from_slice(data));
        if r.u8()? != TABLE_VERSION {
            return Err(DecodeError::Invalid("unknown member table version"));
        }
        let n = count(&mut r, MEMBERS_MAX)?;
        let mut members = BTreeMap::new();
        for _ in 0..n {
            let id = r.varint()?;
            let record = MemberRecord {
                id,
                name: string(&mut r)?,
                peer_urls: strings(&mut r)?,
                client_urls: strings(&mut r)?,
                learner: match r.u8()? {
                    0 => false,
                    1 => true,
                    _ => return Err(DecodeError::Invalid("bad learner flag")),
                },
            };
            if id == 0 || members.insert(id, record).is_some() {
                return Err(DecodeError::Invalid(
                    "member table names id 0 or one id twice",
                ));
            }
        }
        let n = count(&mut r, usize::MAX)?;
        let mut removed = BTreeSet::new();
        for _ in 0..n {
            removed.insert(r.varint()?);
        }
        let request = match r.u8()? {
            0 => None,
            1 => Some((r.varint()?, r.varint()?)),
            _ => return Err(DecodeError::Invalid("bad request tag")),
        };
        r.finish()?;
        Ok(MemberTable {
            members,
            removed,
            request,
        })
    }
}

fn check_urls(urls: &[String]) -> Result<(), ReplicaError> {
    if urls.is_empty() {
        return Err(ReplicaError::InvalidArgument(
            "etcdserver: member peer URLs must not be empty".into(),
        ));
    }
    if urls.len() > URLS_MAX {
        return Err(ReplicaError::InvalidArgument(format!(
            "etcdserver: at most {URLS_MAX} peer URLs per member"
        )));
    }
    for u in urls {
        crate::urls::Url::parse("peerURLs", u)
            .map_err(|e| ReplicaError::InvalidArgument(format!("etcdserver: {e}")))?;
    }
    Ok(())
}

/// Wraps a request as a command payload.
pub fn encode_request(request: &AdminRequest) -> Bytes {
    let mut out = Vec::from(&ADMIN_MAGIC[..]);
    match request {
        AdminRequest::Add { peer_urls, learner } => {
            out.put_u8(1);
            put_strs(&mut out, peer_urls);
            out.put_u8(u8::from(*learner));
        }
        AdminRequest::Remove { id } => {
            out.put_u8(2);
            put_varint(&mut out, *id);
        }
        AdminRequest::Update { id, peer_urls } => {
            out.put_u8(3);
            put_varint(&mut out, *id);
            put_strs(&mut out, peer_urls);
        }
        AdminRequest::Promote { id } => {
            out.put_u8(4);
            put_varint(&mut out, *id);
        }
        AdminRequest::Publish {
            id,
            name,
            client_urls,
        } => {
            out.put_u8(5);
            put_varint(&mut out, *id);
            put_str(&mut out, name);
            put_strs(&mut out, client_urls);
        }
    }
    Bytes::from(out)
}

/// `None`: not an admin command (a key-value request). `Some(Err)`: an admin command that
/// does not decode (every replica sees the same bytes and refuses it alike).
pub fn decode_request(payload: &[u8]) -> Option<Result<AdminRequest, DecodeError>> {
    let body = payload.strip_prefix(&ADMIN_MAGIC[..])?;
    let mut r = Reader::new(Bytes::copy_from_slice(body));
    let parsed = (|| {
        let req = match r.u8()? {
            1 => AdminRequest::Add {
                peer_urls: strings(&mut r)?,
                learner: r.u8()? == 1,
            },
            2 => AdminRequest::Remove { id: r.varint()? },
            3 => AdminRequest::Update {
                id: r.varint()?,
                peer_urls: strings(&mut r)?,
            },
            4 => AdminRequest::Promote { id: r.varint()? },
            5 => AdminRequest::Publish {
                id: r.varint()?,
                name: string(&mut r)?,
                client_urls: strings(&mut r)?,
            },
            _ => return Err(DecodeError::Invalid("unknown admin request")),
        };
        r.finish()?;
        Ok(req)
    })();
    Some(parsed)
}

fn put_varint(out: &mut Vec<u8>, v: u64) {
    synod_paxos::codec::put_varint(out, v);
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_varint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

fn put_strs(out: &mut Vec<u8>, v: &[String]) {
    put_varint(out, v.len() as u64);
    for s in v {
        put_str(out, s);
    }
}

/// A count of items, each at least one byte: more than the bytes left, or than `max`, is
/// garbage.
fn count(r: &mut Reader, max: usize) -> Result<usize, DecodeError> {
    let n = r.varint()?;
    if n > r.remaining() as u64 || n > max as u64 {
        return Err(DecodeError::Invalid("count exceeds the input"));
    }
    Ok(n as usize)
}

fn string(r: &mut Reader) -> Result<String, DecodeError> {
    let bytes = r.bytes()?;
    if bytes.len() > STRING_BYTES_MAX {
        return Err(DecodeError::Invalid("a string is too long"));
    }
    String::from_utf8(bytes.to_vec()).map_err(|_| DecodeError::Invalid("a string is not UTF-8"))
}

fn strings(r: &mut Reader) -> Result<Vec<String>, DecodeError> {
    let n = count(r, URLS_MAX)?;
    (0..n).map(|_| string(r)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> MemberTable {
        let mut t = MemberTable::default();
        for (i, port) in [2380, 22380, 32380].iter().enumerate() {
            let url = format!("http://127.0.0.1:{port}");
            let id = member_id(7, &url);
            t.members.insert(
                id,
                MemberRecord {
                    id,
                    name: format!("m{i}"),
                    peer_urls: vec![url],
                    client_urls: vec![],
                    learner: false,
                },
            );
        }
        t
    }

    #[test]
    fn tables_round_trip_through_memberships_and_garbage_is_refused() {
        let t = table()
            .apply(
                7,
                &AdminRequest::Add {
                    peer_urls: vec!["http://127.0.0.1:42380".into()],
                    learner: true,
                },
                (1, 2),
            )
            .unwrap();
        let m = t.to_membership().unwrap();
        assert_eq!(m.learners().len(), 1);
        assert_eq!(MemberTable::from_membership(&m).unwrap(), t);
        let bytes = t.encode();
        for cut in 0..bytes.len() {
            assert!(MemberTable::decode(&bytes[..cut]).is_err());
        }
    }

    #[test]
    fn requests_round_trip_and_are_judged_like_etcd() {
        let t = table();
        let id = *t.members.keys().next().unwrap();
        for r in [
            AdminRequest::Add {
                peer_urls: vec!["http://a:1".into()],
                learner: false,
            },
            AdminRequest::Remove { id },
            AdminRequest::Update {
                id,
                peer_urls: vec!["http://b:2".into()],
            },
            AdminRequest::Promote { id },
            AdminRequest::Publish {
                id,
                name: "n".into(),
                client_urls: vec!["http://c:3".into()],
            },
        ] {
            let bytes = encode_request(&r);
            assert_eq!(decode_request(&bytes), Some(Ok(r)));
            for cut in ADMIN_MAGIC.len()..bytes.len() {
                assert!(matches!(decode_request(&bytes[..cut]), Some(Err(_))));
            }
        }
        assert_eq!(decode_request(b"\x01put"), None);
        let dup = AdminRequest::Add {
            peer_urls: t.members[&id].peer_urls.clone(),
            learner: false,
        };
        assert!(matches!(
            t.apply(7, &dup, (1, 1)),
            Err(ReplicaError::Precondition(_))
        ));
        let removed = t.apply(7, &AdminRequest::Remove { id }, (1, 1)).unwrap();
        // The same peer URL would give the removed id back: refused.
        let again = AdminRequest::Add {
            peer_urls: t.members[&id].peer_urls.clone(),
            learner: false,
        };
        let e = removed.apply(7, &again, (1, 2)).unwrap_err();
        assert!(e.to_string().contains("ID removed"), "{e}");
        assert!(matches!(
            t.apply(7, &AdminRequest::Promote { id }, (1, 1)),
            Err(ReplicaError::Precondition(_))
        ));
        assert!(matches!(
            t.apply(7, &AdminRequest::Remove { id: 99 }, (1, 1)),
            Err(ReplicaError::NotFound(_))
        ));
    }
}
