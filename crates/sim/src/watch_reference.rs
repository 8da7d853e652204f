//! The reference history the watch checker judges against: the changes of every revision,
//! as the first replica to reach it reported them from its store (synod-kv's history
//! interface), and a determinism check on every later report.
//!
//! Every replica applies the same commands in the same order, so every store must list the
//! same changes for a revision: the same keys, in the same order (etcd's sub-revisions),
//! with the same versions, create revisions and values. A replica reporting anything else
//! has diverged even if its final state happens to agree (a determinism violation, on top
//! of the agreement check of the log). Stores are read after each turn (node.rs), from the
//! revision after the last one read up to the store's revision; a restarted replica reads
//! its restored history again, so snapshots and replays are held to the reference too.

use crate::trace::node_name;
use bytes::Bytes;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use synod_kv::{EventKind, KeyValue};
use synod_paxos::NodeId;

/// One change of a revision, as the store's history lists it: a put with the key's new
/// version, or a delete (the key and the deleting revision only, as a watch event carries
/// it).
pub type Change = synod_kv::Event;

/// A revision's changes and who reported them first.
#[derive(Debug)]
struct Revision {
    changes: Vec<Change>,
    first: NodeId,
}

/// Every revision any replica reached, with its changes.
#[derive(Debug, Default)]
pub struct Reference {
    revisions: BTreeMap<i64, Revision>,
    /// Each key's versions by revision (`None`: deleted there), for `prev_kv`.
    versions: BTreeMap<Bytes, BTreeMap<i64, Option<KeyValue>>>,
}

impl Reference {
    /// `node`'s store lists `changes` at `rev`. The first report of a revision becomes the
    /// reference; a later one that differs is a determinism violation (the message names
    /// both replicas and both lists).
    pub fn observe(&mut self, node: NodeId, rev: i64, changes: &[Change]) -> Result<(), String> {
        if let Some(known) = self.revisions.get(&rev) {
            if known.changes == changes {
                return Ok(());
            }
            return Err(format!(
                "revision {rev}: {} listed {} but {} lists {}",
                node_name(known.first),
                describe(&known.changes),
                node_name(node),
                describe(changes)
            ));
        }
        for c in changes {
            let version = (c.kind == EventKind::Put).then(|| c.kv.clone());
            self.versions
                .entry(c.kv.key.clone())
                .or_default()
                .insert(rev, version);
        }
        let changes = changes.to_vec();
        self.revisions.insert(
            rev,
            Revision {
                changes,
                first: node,
            },
        );
        Ok(())
    }

    /// [`Reference::observe`] for each revision of `changes`, whole revisions in order (what
    /// one read of a store's history returns).
    pub fn observe_all(&mut self, node: NodeId, changes: &[Change]) -> Result<(), String> {
        let mut start = 0;
        while start < changes.len() {
            let rev = changes[start].kv.mod_revision;
            let len = changes[start..]
                .iter()
                .take_while(|c| c.kv.mod_revision == rev)
                .count();
            self.observe(node, rev, &changes[start..start + len])?;
            start += len;
        }
        Ok(())
    }

    /// The changes of `rev`, if some replica reported it (none at revision 1, the empty
    /// store's, or below).
    pub fn changes(&self, rev: i64) -> Option<&[Change]> {
        if rev <= 1 {
            return Some(&[]);
        }
        self.revisions.get(&rev).map(|r| &r.changes[..])
    }

    /// The newest revision reported (1, the empty store's, before any).
    pub fn highest(&self) -> i64 {
        self.revisions.keys().next_back().copied().unwrap_or(1)
    }

    /// The version of `key` a change at `rev` replaced (what `prev_kv` must be): its newest
    /// version before `rev`, `None` if it did not exist then.
    pub fn previous(&self, key: &[u8], rev: i64) -> Option<&KeyValue> {
        self.versions
            .get(key)?
            .range(..rev)
            .next_back()
            .and_then(|(_, v)| v.as_ref())
    }
}

/// A list of changes for a report: `PUT k001=v@5(c3,v2)` or `DEL k001@7`.
pub fn describe<'a>(changes: impl IntoIterator<Item = &'a Change>) -> String {
    let mut s = String::from("[");
    for (i, c) in changes.into_iter().enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        s.push_str(&describe_change(c.kind, &c.kv));
    }
    s.push(']');
    s
}

/// One change or version: key, value (hex of the first bytes), revisions, version, lease.
pub fn describe_change(kind: EventKind, kv: &KeyValue) -> String {
    let key = String::from_utf8_lossy(&kv.key);
    match kind {
        EventKind::Delete => format!("DEL {key}@{}", kv.mod_revision),
        EventKind::Put => {
            let mut s = format!("PUT {key}=");
            for b in kv.value.iter().take(8) {
                let _ = write!(s, "{b:02x}");
            }
            let _ = write!(
                s,
                "@{}(c{},v{}",
                kv.mod_revision, kv.create_revision, kv.version
            );
            if kv.lease != 0 {
                let _ = write!(s, ",lease {}", kv.lease);
            }
            s.push(')');
            s
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A put of `key` at `rev` with the given create revision and version.
    pub(crate) fn put(key: &str, value: u8, rev: i64, create: i64, version: i64) -> Change {
        Change {
            kind: EventKind::Put,
            kv: KeyValue {
                key: Bytes::copy_from_slice(key.as_bytes()),
                value: Bytes::from(vec![value]),
                create_revision: create,
                mod_revision: rev,
                version,
                lease: 0,
            },
        }
    }

    /// A delete of `key` at `rev`.
    pub(crate) fn del(key: &str, rev: i64) -> Change {
        Change {
            kind: EventKind::Delete,
            kv: KeyValue {
                key: Bytes::copy_from_slice(key.as_bytes()),
                mod_revision: rev,
                ..KeyValue::default()
            },
        }
    }

    #[test]
    fn a_second_report_must_match_the_first() {
        let mut r = Reference::default();
        assert_eq!(r.observe(1, 2, &[put("a", 1, 2, 2, 1)]), Ok(()));
        assert_eq!(r.observe(2, 2, &[put("a", 1, 2, 2, 1)]), Ok(()));
        let diverged = r.observe(3, 2, &[put("a", 9, 2, 2, 1)]).unwrap_err();
        assert!(diverged.contains("revision 2"), "{diverged}");
        // Same changes in another order: the sub-revision order differs.
        r.observe(1, 3, &[put("a", 2, 3, 2, 2), put("b", 1, 3, 3, 1)])
            .unwrap();
        assert!(r
            .observe(2, 3, &[put("b", 1, 3, 3, 1), put("a", 2, 3, 2, 2)])
            .is_err());
        assert_eq!(r.highest(), 3);
    }

    #[test]
    fn previous_is_the_newest_version_before() {
        let mut r = Reference::default();
        r.observe(1, 2, &[put("a", 1, 2, 2, 1)]).unwrap();
        r.observe(1, 3, &[put("a", 2, 3, 2, 2)]).unwrap();
        r.observe(1, 4, &[del("a", 4)]).unwrap();
        r.observe(1, 5, &[put("a", 3, 5, 5, 1)]).unwrap();
        assert_eq!(r.previous(b"a", 2), None);
        assert_eq!(r.previous(b"a", 3).map(|kv| kv.mod_revision), Some(2));
        assert_eq!(r.previous(b"a", 4).map(|kv| kv.mod_revision), Some(3));
        assert_eq!(r.previous(b"a", 5), None, "deleted at 4");
        assert_eq!(r.previous(b"a", 9).map(|kv| kv.version), Some(1));
        assert_eq!(r.previous(b"b", 9), None);
    }
}
