//! The lease part of the script (docs/design/WATCH_LEASE.md 1.2): grants with chosen ids and
//! TTLs (raised to the minimum, refused above the maximum or when taken), puts with a lease
//! (an unknown one refused), keep-alives, time-to-live, the list, and a revoke that deletes
//! its keys at one revision, seen as one watch response in key order.
//!
//! Deliberate deviations (WATCH_LEASE.md 1.7, docs/SERVER.md "Leases"), asserted as such:
//! the ids a member picks (random in Synod, a sequence in etcd), and the order of a
//! time-to-live's keys and of the list (sorted in Synod, no defined order in etcd).

use super::{number, Pair};
use etcd_client::{
    Client, Error, LeaseGrantOptions, LeaseTimeToLiveOptions, PutOptions, WatchOptions,
};

/// A lease nobody granted.
const UNKNOWN: i64 = 0x999;

/// The lease whose keys are revoked.
const REVOKED: i64 = 0x77;

pub async fn leases(p: &Pair) {
    grants(p).await;
    let mut w = p
        .watch("l/", WatchOptions::new().with_prefix().with_prev_key())
        .await;
    w.expect("a watch on the lease's keys", 1).await;
    let with_lease = || Some(PutOptions::new().with_lease(REVOKED));
    for key in ["l/z", "l/a", "l/m"] {
        p.same("put with a lease", |mut c| async move {
            c.put(key, "v", with_lease()).await
        })
        .await;
        w.expect("a put with a lease", 1).await;
    }
    let unknown = || Some(PutOptions::new().with_lease(UNKNOWN));
    p.same("put with an unknown lease", |mut c| async move {
        c.put("l/x", "v", unknown()).await
    })
    .await;
    questions(p).await;
    p.same(
        "revoke",
        |mut c| async move { c.lease_revoke(REVOKED).await },
    )
    .await;
    w.expect("a revoke's deletes, in key order, in one response", 1)
        .await;
    p.same("revoke again", |mut c| async move {
        c.lease_revoke(REVOKED).await
    })
    .await;
    p.same("revoke a lease without keys", |mut c| async move {
        c.lease_revoke(-5).await
    })
    .await;
    picked_ids(p).await;
}

fn grant(ttl: i64, id: i64) -> impl Fn(Client) -> super::Answer<etcd_client::LeaseGrantResponse> {
    move |mut c: Client| {
        Box::pin(async move {
            let options = LeaseGrantOptions::new().with_id(id);
            c.lease_grant(ttl, Some(options)).await
        })
    }
}

/// Grants with chosen ids: TTLs raised to the minimum (the same on both: same timing
/// flags), refused when too large, ids refused when taken, negative ids taken.
async fn grants(p: &Pair) {
    p.same("grant", grant(3600, REVOKED)).await;
    let taken = p.same("grant a taken id", grant(60, REVOKED)).await;
    assert!(taken.contains("lease already exists"), "{taken}");
    let large = p.same("grant too long", grant(9_000_000_001, 0x78)).await;
    assert!(large.contains("too large lease TTL"), "{large}");
    let short = p.same("grant below the minimum", grant(1, 0x79)).await;
    assert!(number(&short, "ttl") > 1, "{short}");
    p.same("grant a negative id", grant(60, -5)).await;
    p.same("revoke", |mut c| async move { c.lease_revoke(0x79).await })
        .await;
}

/// Keep-alives and time-to-live of known and unknown leases, and the list.
async fn questions(p: &Pair) {
    // etcd-client reads the first answer itself (and turns TTL 0 into "lease not found");
    // the second is compared whole.
    let keep_alive = |id| {
        move |mut c: Client| async move {
            let (mut keeper, mut stream) = c.lease_keep_alive(id).await?;
            keeper.keep_alive().await?;
            stream.message().await
        }
    };
    p.same("keep-alive", keep_alive(REVOKED)).await;
    p.same("keep-alive of an unknown lease", keep_alive(UNKNOWN))
        .await;
    let keys = || Some(LeaseTimeToLiveOptions::new().with_keys());
    p.same("time-to-live of an unknown lease", |mut c| async move {
        c.lease_time_to_live(UNKNOWN, keys()).await
    })
    .await;
    let ttl = |mut c: Client| async move {
        let r = c.lease_time_to_live(REVOKED, keys()).await?;
        Ok::<_, Error>((r.id(), r.granted_ttl(), r.ttl(), r.keys().to_vec()))
    };
    let (etcd, synod) = (ttl(p.etcd.clone()).await, ttl(p.synod.clone()).await);
    let (etcd, synod) = (etcd.expect("etcd's TTL"), synod.expect("Synod's TTL"));
    assert_eq!((synod.0, synod.1), (etcd.0, etcd.1), "id and granted TTL");
    // Seconds left, truncated: the two were asked a moment apart.
    assert!(
        (synod.2 - etcd.2).abs() <= 1,
        "TTL left: {synod:?} {etcd:?}"
    );
    assert!(
        is_sorted(&synod.3),
        "Synod lists the keys sorted: {:?}",
        synod.3
    );
    assert_eq!(sorted(synod.3), sorted(etcd.3), "the same keys");
    let list = |mut c: Client| async move {
        let r = c.leases().await?;
        Ok::<_, Error>(r.leases().iter().map(|l| l.id()).collect::<Vec<i64>>())
    };
    let (etcd, synod) = (list(p.etcd.clone()).await, list(p.synod.clone()).await);
    let (etcd, synod) = (etcd.expect("etcd's leases"), synod.expect("Synod's leases"));
    assert!(is_sorted(&synod), "Synod lists leases by id: {synod:?}");
    assert_eq!(sorted(synod), sorted(etcd), "the same leases");
}

/// A grant without an id: each member picks one (the deviation: random in Synod), with the
/// TTL asked for.
async fn picked_ids(p: &Pair) {
    let grant = |mut c: Client| async move { c.lease_grant(60, None).await };
    let etcd = grant(p.etcd.clone()).await.expect("etcd grants");
    let synod = grant(p.synod.clone()).await.expect("Synod grants");
    assert_eq!(synod.ttl(), etcd.ttl());
    assert!(synod.id() > 0 && etcd.id() > 0);
    for (mut c, id) in [(p.etcd.clone(), etcd.id()), (p.synod.clone(), synod.id())] {
        c.lease_revoke(id).await.expect("revoke a picked id");
    }
}

fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v
}

fn is_sorted<T: Ord>(v: &[T]) -> bool {
    v.windows(2).all(|w| w[0] <= w[1])
}
