//! A deliberately naive model of the store: a full copy of the keyspace for every revision,
//! and the events of every revision, with every answer recomputed from scratch.

use bytes::Bytes;
use std::cmp::Ordering;
use std::collections::BTreeMap;
use synod_kv::*;

pub type State = BTreeMap<Bytes, KeyValue>;

#[derive(Clone, Debug)]
pub struct Model {
    /// `states[i]` is the keyspace at revision `i + 1`.
    pub states: Vec<State>,
    /// `events[i]` are the changes revision `i + 1` made: each key it changed once, in the
    /// order of its first change, as it ended.
    pub events: Vec<Vec<Event>>,
    pub compacted: i64,
    /// Lease id → granted TTL.
    pub leases: BTreeMap<i64, i64>,
    pub epoch: LeaseEpoch,
}

pub fn in_range(key: &[u8], end: &[u8], k: &[u8]) -> bool {
    match end {
        b"" => k == key,
        b"\0" => k >= key,
        _ => k >= key && k < end,
    }
}

impl Model {
    pub fn new() -> Model {
        Model {
            states: vec![State::new()],
            events: vec![Vec::new()],
            compacted: -1,
            leases: BTreeMap::new(),
            epoch: LeaseEpoch::default(),
        }
    }

    pub fn rev(&self) -> i64 {
        self.states.len() as i64
    }

    /// The next revision: `work`, after changes to `touched` (in order, each once).
    fn commit(&mut self, work: State, touched: &[Bytes]) {
        let rev = self.rev() + 1;
        let events = touched
            .iter()
            .map(|k| match work.get(k) {
                Some(kv) => Event {
                    kind: EventKind::Put,
                    kv: kv.clone(),
                },
                None => Event {
                    kind: EventKind::Delete,
                    kv: KeyValue {
                        key: k.clone(),
                        mod_revision: rev,
                        ..KeyValue::default()
                    },
                },
            })
            .collect();
        self.states.push(work);
        self.events.push(events);
    }

    pub fn apply(&mut self, req: &Request) -> Result<Response, KvError> {
        match req {
            Request::Range(r) => self.range(r).map(Response::Range),
            Request::Put(p) => {
                if p.key.is_empty() {
                    return Err(KvError::EmptyKey);
                }
                // A plain put checks the lease before the key.
                self.check_lease(p)?;
                if (p.ignore_value || p.ignore_lease)
                    && !self.states.last().unwrap().contains_key(&p.key)
                {
                    return Err(KvError::KeyNotFound);
                }
                let mut work = self.states.last().unwrap().clone();
                let rev = self.rev() + 1;
                let resp = put(&mut work, p, rev);
                self.commit(work, std::slice::from_ref(&p.key));
                Ok(Response::Put(resp))
            }
            Request::DeleteRange(d) => {
                if d.key.is_empty() {
                    return Err(KvError::EmptyKey);
                }
                let mut work = self.states.last().unwrap().clone();
                let mut touched = Vec::new();
                let resp = delete(&mut work, d, self.rev(), &mut touched);
                if !touched.is_empty() {
                    self.commit(work, &touched);
                }
                Ok(Response::DeleteRange(resp))
            }
            Request::Txn(t) => self.txn(t).map(Response::Txn),
            Request::LeaseGrant(g) => self.grant(g).map(Response::LeaseGrant),
            Request::LeaseRevoke(r) => self.revoke(r).map(Response::LeaseRevoke),
            Request::LeaseEpoch(e) => {
                self.epoch = self.epoch.max(*e);
                Ok(Response::LeaseEpoch(LeaseEpochResponse {
                    header: ResponseHeader {
                        revision: self.rev(),
                    },
                }))
            }
            Request::Compact(c) => {
                if c.revision <= self.compacted {
                    return Err(KvError::Compacted);
                }
                if c.revision > self.rev() {
                    return Err(KvError::FutureRevision);
                }
                self.compacted = c.revision;
                Ok(Response::Compact(CompactionResponse {
                    header: ResponseHeader {
                        revision: self.rev(),
                    },
                }))
            }
        }
    }

    pub fn range(&self, r: &RangeRequest) -> Result<RangeResponse, KvError> {
        if r.key.is_empty() {
            return Err(KvError::EmptyKey);
        }
        if r.revision > self.rev() {
            return Err(KvError::FutureRevision);
        }
        if r.revision > 0 && r.revision < self.compacted {
            return Err(KvError::Compacted);
        }
        let at = if r.revision > 0 {
            r.revision
        } else {
            self.rev()
        };
        let state = &self.states[(at - 1) as usize];
        Ok(range_in(state, r, self.rev()))
    }

    fn txn(&mut self, t: &TxnRequest) -> Result<TxnResponse, KvError> {
        // Flat txns only (the generator makes no nested ones).
        for branch in [&t.success, &t.failure] {
            let mut puts: Vec<&Bytes> = Vec::new();
            for op in branch.iter() {
                if let RequestOp::Put(p) = op {
                    let deleted = branch.iter().any(|o| match o {
                        RequestOp::DeleteRange(d) => in_range(&d.key, &d.range_end, &p.key),
                        _ => false,
                    });
                    if puts.contains(&&p.key) || deleted {
                        return Err(KvError::DuplicateKey);
                    }
                    puts.push(&p.key);
                }
            }
        }
        let cur = self.states.last().unwrap().clone();
        let succeeded = t.compare.iter().all(|c| compare(&cur, c));
        let ops = if succeeded { &t.success } else { &t.failure };
        for op in ops {
            if let RequestOp::Put(p) = op {
                if (p.ignore_value || p.ignore_lease) && !cur.contains_key(&p.key) {
                    return Err(KvError::KeyNotFound);
                }
                self.check_lease(p)?;
            }
        }
        let begin = self.rev();
        let mut work = cur;
        let mut touched = Vec::new();
        let mut responses = Vec::new();
        for op in ops {
            let view = begin + i64::from(!touched.is_empty());
            responses.push(match op {
                RequestOp::Range(r) => ResponseOp::Range(range_in(&work, r, view)),
                RequestOp::Put(p) => {
                    if !touched.contains(&p.key) {
                        touched.push(p.key.clone());
                    }
                    ResponseOp::Put(put(&mut work, p, begin + 1))
                }
                RequestOp::DeleteRange(d) => {
                    ResponseOp::DeleteRange(delete(&mut work, d, begin, &mut touched))
                }
                RequestOp::Txn(_) => unreachable!("flat txns only"),
            });
        }
        if !touched.is_empty() {
            self.commit(work, &touched);
        }
        Ok(TxnResponse {
            header: ResponseHeader {
                revision: self.rev(),
            },
            succeeded,
            responses,
        })
    }
}

fn put(state: &mut State, p: &PutRequest, rev: i64) -> PutResponse {
    let prev = state.get(&p.key).cloned();
    let value = if p.ignore_value {
        prev.as_ref().unwrap().value.clone()
    } else {
        p.value.clone()
    };
    let lease = match (&prev, p.ignore_lease) {
        (Some(old), true) => old.lease,
        _ => p.lease,
    };
    let kv = match &prev {
        Some(old) => KeyValue {
            mod_revision: rev,
            version: old.version + 1,
            value,
            lease,
            ..old.clone()
        },
        None => KeyValue {
            key: p.key.clone(),
            create_revision: rev,
            mod_revision: rev,
            version: 1,
            value,
            lease,
        },
    };
    state.insert(p.key.clone(), kv);
    PutResponse {
        header: ResponseHeader { revision: rev },
        prev_kv: if p.prev_kv { prev } else { None },
    }
}

/// `begin` is the revision before the request; `touched` the keys it changed so far.
fn delete(
    state: &mut State,
    d: &DeleteRangeRequest,
    begin: i64,
    touched: &mut Vec<Bytes>,
) -> DeleteRangeResponse {
    let victims: Vec<KeyValue> = state
        .values()
        .filter(|kv| in_range(&d.key, &d.range_end, &kv.key))
        .cloned()
        .collect();
    for kv in &victims {
        state.remove(&kv.key);
        if !touched.contains(&kv.key) {
            touched.push(kv.key.clone());
        }
    }
    DeleteRangeResponse {
        header: ResponseHeader {
            revision: begin + i64::from(!touched.is_empty()),
        },
        deleted: victims.len() as i64,
        prev_kvs: if d.prev_kv { victims } else { vec![] },
    }
}

fn range_in(state: &State, r: &RangeRequest, header_rev: i64) -> RangeResponse {
    let all: Vec<KeyValue> = state
        .values()
        .filter(|kv| in_range(&r.key, &r.range_end, &kv.key))
        .cloned()
        .collect();
    let count = all.len() as i64;
    let filtered = r.min_mod_revision != 0
        || r.max_mod_revision != 0
        || r.min_create_revision != 0
        || r.max_create_revision != 0;
    // etcd quirk: with no sort order (even with a non-key sort target, which then sorts
    // ascending) and no filters, only the first limit + 1 keys in key order are fetched
    // and sorted.
    let take = if r.limit > 0 && r.sort_order == SortOrder::None && !filtered {
        r.limit as usize + 1
    } else {
        usize::MAX
    };
    let mut kvs: Vec<KeyValue> = if r.count_only {
        vec![]
    } else {
        all.into_iter()
            .take(take)
            .filter(|kv| {
                (r.min_mod_revision == 0 || kv.mod_revision >= r.min_mod_revision)
                    && (r.max_mod_revision == 0 || kv.mod_revision <= r.max_mod_revision)
                    && (r.min_create_revision == 0 || kv.create_revision >= r.min_create_revision)
                    && (r.max_create_revision == 0 || kv.create_revision <= r.max_create_revision)
            })
            .collect()
    };
    let field = |kv: &KeyValue, other: &KeyValue| -> Ordering {
        match r.sort_target {
            SortTarget::Key => kv.key.cmp(&other.key),
            SortTarget::Version => kv.version.cmp(&other.version),
            SortTarget::Create => kv.create_revision.cmp(&other.create_revision),
            SortTarget::Mod => kv.mod_revision.cmp(&other.mod_revision),
            SortTarget::Value => kv.value.cmp(&other.value),
        }
    };
    match r.sort_order {
        SortOrder::Descend => kvs.sort_by(|a, b| field(b, a)),
        _ => kvs.sort_by(field),
    }
    let mut more = false;
    if r.limit > 0 && kvs.len() > r.limit as usize {
        kvs.truncate(r.limit as usize);
        more = true;
    }
    if r.keys_only {
        for kv in &mut kvs {
            kv.value = Bytes::new();
        }
    }
    RangeResponse {
        header: ResponseHeader {
            revision: header_rev,
        },
        kvs,
        more,
        count,
    }
}

fn compare(state: &State, c: &Compare) -> bool {
    let kvs: Vec<&KeyValue> = state
        .values()
        .filter(|kv| in_range(&c.key, &c.range_end, &kv.key))
        .collect();
    let zero = KeyValue::default();
    let check = |kv: &KeyValue| {
        let ord = match &c.target {
            CompareTarget::Version(v) => kv.version.cmp(v),
            CompareTarget::Create(v) => kv.create_revision.cmp(v),
            CompareTarget::Mod(v) => kv.mod_revision.cmp(v),
            CompareTarget::Value(v) => kv.value.cmp(v),
            CompareTarget::Lease(v) => kv.lease.cmp(v),
        };
        match c.result {
            CompareResult::Equal => ord.is_eq(),
            CompareResult::NotEqual => ord.is_ne(),
            CompareResult::Greater => ord.is_gt(),
            CompareResult::Less => ord.is_lt(),
        }
    };
    if kvs.is_empty() {
        return !matches!(c.target, CompareTarget::Value(_)) && check(&zero);
    }
    kvs.into_iter().all(check)
}

/// What the store's [`History`] must answer.
impl Model {
    /// The events of `range` in `from..=to`.
    pub fn changes(&self, range: &KeyRange, from: i64, to: i64) -> Result<Vec<Event>, KvError> {
        if from < self.compacted {
            return Err(KvError::Compacted);
        }
        let mut out = Vec::new();
        for rev in from.max(1)..=to.min(self.rev()) {
            out.extend(
                self.events[(rev - 1) as usize]
                    .iter()
                    .filter(|e| range.contains(&e.kv.key) && self.visible(e, rev))
                    .cloned(),
            );
        }
        Ok(out)
    }

    /// Every event from the compaction revision on stays visible, the deletes made at it
    /// included (a watch may start at the compaction revision and must see them).
    fn visible(&self, _e: &Event, rev: i64) -> bool {
        rev >= self.compacted
    }

    pub fn event_at(&self, key: &[u8], rev: i64) -> Option<Event> {
        if rev < self.compacted.max(1) || rev > self.rev() {
            return None;
        }
        self.events[(rev - 1) as usize]
            .iter()
            .find(|e| &e.kv.key[..] == key && self.visible(e, rev))
            .cloned()
    }

    pub fn kv_at(&self, key: &[u8], rev: i64) -> Option<KeyValue> {
        if rev < self.compacted.max(1) || rev > self.rev() {
            return None;
        }
        self.states[(rev - 1) as usize].get(key).cloned()
    }
}

/// Leases: a table of TTLs; the keys attached are those whose value names the lease.
impl Model {
    fn check_lease(&self, p: &PutRequest) -> Result<(), KvError> {
        if p.lease != 0 && !self.leases.contains_key(&p.lease) {
            return Err(KvError::LeaseNotFound);
        }
        Ok(())
    }

    fn grant(&mut self, g: &LeaseGrantRequest) -> Result<LeaseGrantResponse, KvError> {
        if g.id == 0 {
            return Err(KvError::LeaseNotFound);
        }
        if g.ttl > LEASE_TTL_MAX {
            return Err(KvError::LeaseTtlTooLarge);
        }
        if self.leases.contains_key(&g.id) {
            return Err(KvError::LeaseExists);
        }
        self.leases.insert(g.id, g.ttl);
        Ok(LeaseGrantResponse {
            header: ResponseHeader {
                revision: self.rev(),
            },
            id: g.id,
            ttl: g.ttl,
        })
    }

    fn revoke(&mut self, r: &LeaseRevokeRequest) -> Result<LeaseRevokeResponse, KvError> {
        if r.expiry.is_some_and(|e| e != self.epoch) {
            return Err(KvError::LeaseExpiryStale);
        }
        if self.leases.remove(&r.id).is_none() {
            return Err(KvError::LeaseNotFound);
        }
        let keys = self.lease_keys(r.id);
        if !keys.is_empty() {
            let mut work = self.states.last().unwrap().clone();
            work.retain(|k, _| !keys.contains(k));
            self.commit(work, &keys);
        }
        Ok(LeaseRevokeResponse {
            header: ResponseHeader {
                revision: self.rev(),
            },
        })
    }

    /// The keys attached to `id` now, sorted.
    pub fn lease_keys(&self, id: i64) -> Vec<Bytes> {
        let state = self.states.last().unwrap();
        state
            .values()
            .filter(|kv| kv.lease == id)
            .map(|kv| kv.key.clone())
            .collect()
    }
}
