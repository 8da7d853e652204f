//! KvStore against a deliberately naive model: the model keeps a full copy of the keyspace
//! for every revision and recomputes every answer from scratch. Random put / delete / range /
//! txn / compact sequences over a tiny keyspace must get identical responses from both.

use bytes::Bytes;
use proptest::prelude::*;
use std::cmp::Ordering;
use std::collections::BTreeMap;
use synod_kv::*;

type State = BTreeMap<Bytes, KeyValue>;

#[derive(Debug)]
struct Model {
    /// `states[i]` is the keyspace at revision `i + 1`.
    states: Vec<State>,
    compacted: i64,
}

fn in_range(key: &[u8], end: &[u8], k: &[u8]) -> bool {
    match end {
        b"" => k == key,
        b"\0" => k >= key,
        _ => k >= key && k < end,
    }
}

impl Model {
    fn new() -> Model {
        Model {
            states: vec![State::new()],
            compacted: -1,
        }
    }

    fn rev(&self) -> i64 {
        self.states.len() as i64
    }

    fn apply(&mut self, req: &Request) -> Result<Response, KvError> {
        match req {
            Request::Range(r) => self.range(r).map(Response::Range),
            Request::Put(p) => {
                if p.key.is_empty() {
                    return Err(KvError::EmptyKey);
                }
                if p.ignore_value && !self.states.last().unwrap().contains_key(&p.key) {
                    return Err(KvError::KeyNotFound);
                }
                let mut work = self.states.last().unwrap().clone();
                let rev = self.rev() + 1;
                let resp = put(&mut work, p, rev);
                self.states.push(work);
                Ok(Response::Put(resp))
            }
            Request::DeleteRange(d) => {
                if d.key.is_empty() {
                    return Err(KvError::EmptyKey);
                }
                let mut work = self.states.last().unwrap().clone();
                let mut changed = false;
                let resp = delete(&mut work, d, self.rev(), &mut changed);
                if changed {
                    self.states.push(work);
                }
                Ok(Response::DeleteRange(resp))
            }
            Request::Txn(t) => self.txn(t).map(Response::Txn),
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

    fn range(&self, r: &RangeRequest) -> Result<RangeResponse, KvError> {
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
                if p.ignore_value && !cur.contains_key(&p.key) {
                    return Err(KvError::KeyNotFound);
                }
            }
        }
        let begin = self.rev();
        let mut work = cur;
        let mut changed = false;
        let mut responses = Vec::new();
        for op in ops {
            let view = begin + i64::from(changed);
            responses.push(match op {
                RequestOp::Range(r) => ResponseOp::Range(range_in(&work, r, view)),
                RequestOp::Put(p) => {
                    changed = true;
                    ResponseOp::Put(put(&mut work, p, begin + 1))
                }
                RequestOp::DeleteRange(d) => {
                    ResponseOp::DeleteRange(delete(&mut work, d, begin, &mut changed))
                }
                RequestOp::Txn(_) => unreachable!("flat txns only"),
            });
        }
        if changed {
            self.states.push(work);
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
    let kv = match &prev {
        Some(old) => KeyValue {
            mod_revision: rev,
            version: old.version + 1,
            value,
            ..old.clone()
        },
        None => KeyValue {
            key: p.key.clone(),
            create_revision: rev,
            mod_revision: rev,
            version: 1,
            value,
            lease: 0,
        },
    };
    state.insert(p.key.clone(), kv);
    PutResponse {
        header: ResponseHeader { revision: rev },
        prev_kv: if p.prev_kv { prev } else { None },
    }
}

/// `begin` is the revision before the request; `changed` says whether it already changed.
fn delete(
    state: &mut State,
    d: &DeleteRangeRequest,
    begin: i64,
    changed: &mut bool,
) -> DeleteRangeResponse {
    let victims: Vec<KeyValue> = state
        .values()
        .filter(|kv| in_range(&d.key, &d.range_end, &kv.key))
        .cloned()
        .collect();
    for kv in &victims {
        state.remove(&kv.key);
    }
    if !victims.is_empty() {
        *changed = true;
    }
    DeleteRangeResponse {
        header: ResponseHeader {
            revision: begin + i64::from(*changed),
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

// ---- generators ----

fn key() -> impl Strategy<Value = Bytes> {
    prop::sample::select(vec!["a", "b", "c", "d", "e"]).prop_map(Bytes::from)
}

fn range_end() -> impl Strategy<Value = Bytes> {
    prop::sample::select(vec!["", "", "\0", "c", "e", "zz", "a"]).prop_map(Bytes::from)
}

fn value() -> impl Strategy<Value = Bytes> {
    prop::sample::select(vec!["", "x", "y", "zz"]).prop_map(Bytes::from)
}

fn range_req(rev_max: i64) -> impl Strategy<Value = RangeRequest> {
    (
        (key(), range_end(), -1i64..4, 0..rev_max),
        (0usize..3, 0usize..5, any::<bool>(), any::<bool>()),
        prop::collection::vec(0i64..8, 4),
        any::<bool>(),
    )
        .prop_map(
            |((k, e, limit, revision), (o, t, keys_only, count_only), f, filters)| {
                let mut r = RangeRequest::range(k, e);
                r.limit = limit;
                r.revision = revision;
                r.sort_order = [SortOrder::None, SortOrder::Ascend, SortOrder::Descend][o];
                r.sort_target = [
                    SortTarget::Key,
                    SortTarget::Version,
                    SortTarget::Create,
                    SortTarget::Mod,
                    SortTarget::Value,
                ][t];
                r.keys_only = keys_only;
                r.count_only = count_only;
                if filters {
                    r.min_mod_revision = f[0];
                    r.max_mod_revision = f[1];
                    r.min_create_revision = f[2];
                    r.max_create_revision = f[3];
                }
                r
            },
        )
}

fn put_req() -> impl Strategy<Value = PutRequest> {
    (key(), value(), any::<bool>(), prop::bool::weighted(0.15)).prop_map(
        |(k, v, prev_kv, ignore_value)| {
            let mut p = PutRequest::new(k, if ignore_value { Bytes::new() } else { v });
            p.prev_kv = prev_kv;
            p.ignore_value = ignore_value;
            p
        },
    )
}

fn delete_req() -> impl Strategy<Value = DeleteRangeRequest> {
    (key(), range_end(), any::<bool>()).prop_map(|(k, e, prev_kv)| {
        let mut d = DeleteRangeRequest::range(k, e);
        d.prev_kv = prev_kv;
        d
    })
}

fn compare_gen() -> impl Strategy<Value = Compare> {
    let target = prop_oneof![
        (0i64..4).prop_map(CompareTarget::Version),
        (0i64..10).prop_map(CompareTarget::Create),
        (0i64..10).prop_map(CompareTarget::Mod),
        value().prop_map(CompareTarget::Value),
        (0i64..2).prop_map(CompareTarget::Lease),
    ];
    let result = prop::sample::select(vec![
        CompareResult::Equal,
        CompareResult::Greater,
        CompareResult::Less,
        CompareResult::NotEqual,
    ]);
    (
        result,
        target,
        key(),
        prop::sample::select(vec!["", "", "\0", "d"]),
    )
        .prop_map(|(result, target, k, e)| Compare {
            result,
            target,
            key: k,
            range_end: Bytes::from(e),
        })
}

fn op() -> impl Strategy<Value = RequestOp> {
    prop_oneof![
        3 => put_req().prop_map(RequestOp::Put),
        2 => delete_req().prop_map(RequestOp::DeleteRange),
        2 => range_req(1).prop_map(RequestOp::Range),
    ]
}

fn request() -> impl Strategy<Value = Request> {
    prop_oneof![
        5 => put_req().prop_map(Request::Put),
        2 => delete_req().prop_map(Request::DeleteRange),
        3 => range_req(30).prop_map(Request::Range),
        3 => (
            prop::collection::vec(compare_gen(), 0..3),
            prop::collection::vec(op(), 0..4),
            prop::collection::vec(op(), 0..4),
        )
            .prop_map(|(compare, success, failure)| Request::Txn(TxnRequest {
                compare,
                success,
                failure,
            })),
        1 => (0i64..30).prop_map(|revision| Request::Compact(CompactionRequest { revision })),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 512,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn store_matches_naive_model(reqs in prop::collection::vec(request(), 1..80)) {
        let mut store = KvStore::new();
        let mut model = Model::new();
        for (i, req) in reqs.iter().enumerate() {
            let got = store.apply(0, 0, req);
            let want = model.apply(req);
            prop_assert_eq!(&got, &want, "request #{}: {:?}", i, req);
            prop_assert_eq!(store.revision(), model.rev());
            prop_assert_eq!(store.key_count(), model.states.last().unwrap().len());
        }
        // Every revision still readable reads the same everywhere.
        for rev in store.compact_revision().max(1)..=store.revision() {
            let mut r = RangeRequest::range("\0", "\0");
            r.revision = rev;
            prop_assert_eq!(store.range(&r), model.range(&r));
        }
        // And a restored copy is the same store.
        prop_assert_eq!(&KvStore::restore(&store.snapshot()).unwrap(), &store);
    }

    /// A snapshot view taken midway encodes the state as of when it was taken, however the
    /// store changes after it (puts, deletes, txns, compactions, dedup evictions) and on
    /// whichever thread it is encoded; and the store is not disturbed by it.
    #[test]
    fn snapshot_view_is_frozen(
        reqs in prop::collection::vec(request(), 1..80),
        cut in any::<prop::sample::Index>(),
    ) {
        let cut = cut.index(reqs.len() + 1);
        // Five clients in a table of three: the dedup table evicts too.
        let apply = |s: &mut KvStore, i: usize, req: &Request| {
            let _ = s.apply(1 + i as u64 % 5, i as u64, req);
        };
        let mut store = KvStore::with_clients_max(3);
        let mut as_of_cut = KvStore::with_clients_max(3);
        for (i, req) in reqs[..cut].iter().enumerate() {
            apply(&mut store, i, req);
            apply(&mut as_of_cut, i, req);
        }
        let view = store.snapshot_view();
        prop_assert_eq!(view.revision(), as_of_cut.revision());
        let mut untouched = KvStore::with_clients_max(3);
        for (i, req) in reqs.iter().enumerate() {
            if i >= cut {
                apply(&mut store, i, req);
            }
            apply(&mut untouched, i, req);
        }
        let encoded = std::thread::spawn(move || view.encode()).join().unwrap();
        prop_assert_eq!(&encoded[..], &as_of_cut.snapshot()[..]);
        prop_assert_eq!(&KvStore::restore(&encoded).unwrap(), &as_of_cut);
        prop_assert_eq!(&store, &untouched);
        prop_assert_eq!(&store.snapshot()[..], &untouched.snapshot()[..]);
    }

    /// Reads served off the applying path give the model's answers: a Range or read-only
    /// Txn within a budget or on a view, and the reads of any command applied with a budget
    /// and completed later, after more commands were applied (their views are frozen). What
    /// an apply computes of its reads does not change the state (snapshots compare equal
    /// with reads skipped), nor does how far compaction has trimmed the history.
    #[test]
    fn reads_off_the_apply_path_match_the_model(
        reqs in prop::collection::vec(request(), 1..80),
        budget in 0u64..8,
    ) {
        let mut store = KvStore::with_clients_max(3);
        let mut skipping = KvStore::with_clients_max(3);
        let mut full = KvStore::with_clients_max(3);
        let mut model = Model::new();
        let mut pending: Option<(usize, Applied, Result<Response, KvError>)> = None;
        for (i, req) in reqs.iter().enumerate() {
            let want = model.apply(req);
            let read = match req {
                Request::Range(r) => Some(ReadRequest::range(r.clone())),
                Request::Txn(t) => ReadRequest::txn(t.clone()).ok(),
                _ => None,
            };
            if let Some(read) = read {
                let got = match store.read_within(&read, budget) {
                    Some(got) => got,
                    None => store.read_view().read(&read, &|| false).unwrap(),
                };
                prop_assert_eq!(&got, &want, "read #{}: {:?}", i, req);
            }
            let (client, seq) = (1 + i as u64 % 5, i as u64);
            let payload = encode_request(req);
            let applied = store.apply_encoded_with(client, seq, &payload, Reads::Within(budget));
            // Compaction trimmed a little at a time here, never in the other two.
            store.compact_step(budget);
            skipping.apply_encoded_with(client, seq, &payload, Reads::Skip);
            let _ = full.apply_encoded(client, seq, &payload);
            if let Some((j, earlier, want)) = pending.replace((i, applied, want)) {
                prop_assert_eq!(earlier.complete(&|| false).unwrap(), want, "request #{}", j);
            }
        }
        if let Some((j, last, want)) = pending {
            prop_assert_eq!(last.complete(&|| false).unwrap(), want, "request #{}", j);
        }
        prop_assert_eq!(&store.snapshot()[..], &skipping.snapshot()[..]);
        prop_assert_eq!(&store.snapshot()[..], &full.snapshot()[..]);
        while store.compact_step(u64::MAX) {}
        prop_assert_eq!(&store, &full);
    }
}
