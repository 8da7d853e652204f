//! KvStore against a deliberately naive model: the model keeps a full copy of the keyspace
//! for every revision and recomputes every answer from scratch. Random put / delete / range /
//! txn / compact sequences over a tiny keyspace must get identical responses from both.

use proptest::prelude::*;
use synod_kv::*;

mod support;

use support::gen::*;
use support::model::Model;

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
        // The lease table and the keys attached.
        let leases: Vec<(i64, i64)> = model.leases.clone().into_iter().collect();
        prop_assert_eq!(store.leases().collect::<Vec<_>>(), leases);
        for id in 0..4 {
            let want = if id == 0 { vec![] } else { model.lease_keys(id) };
            prop_assert_eq!(store.lease_keys(id), want);
        }
        prop_assert_eq!(store.lease_epoch(), model.epoch);
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
