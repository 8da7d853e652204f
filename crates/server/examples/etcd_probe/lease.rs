//! Lease: minimum TTL, ids, errors, keep-alive and TimeToLive of unknown leases, listing order,
//! attach/detach, compare on LEASE, the events of a revoke.

use etcd_client::{
    Client, Compare, CompareOp, GetOptions, LeaseTimeToLiveOptions, PutOptions, Txn, WatchOptions,
};

use crate::{drain, grant_opts, header, kv, show, text, Res};

pub async fn run(c: &mut Client) -> Res {
    for ttl in [-5, 0, 1, 2, 3, 5] {
        show(
            &format!("grant ttl={ttl}"),
            c.lease_grant(ttl, None).await,
            |r| format!("{:?}", r.0),
        );
    }
    let big = 9_000_000_000;
    for (ttl, id) in [
        (60, 0x1234),
        (60, 0x1234),
        (big, 0x51),
        (big + 1, 0x52),
        (60, -5),
    ] {
        let label = format!("grant ttl={ttl} id={id:#x}");
        show(&label, c.lease_grant(ttl, grant_opts(id)).await, |r| {
            format!("{:?}", r.0)
        });
    }
    show("revoke unknown 0x9999", c.lease_revoke(0x9999).await, |r| {
        format!("{:?}", r.0)
    });
    show(
        "put with unknown lease 0x9999",
        c.put("k", "v", Some(PutOptions::new().with_lease(0x9999)))
            .await,
        |r| format!("{:?}", r.0),
    );
    lease_keepalive_and_ttl(c).await?;
    lease_keys_and_revoke(c).await
}

async fn lease_keepalive_and_ttl(c: &mut Client) -> Res {
    c.put("bump", "1", None).await?;
    c.put("bump", "2", None).await?;
    // etcd-client reads the first answer itself (and turns TTL 0 into an error, so an unknown
    // lease is probed with `etcdctl lease keep-alive --once` instead).
    let (mut keeper, mut stream) = c.lease_keep_alive(0x1234).await?;
    for round in 1..=2 {
        keeper.keep_alive().await?;
        show(
            &format!("keep-alive 0x1234 #{round}"),
            stream.message().await,
            |r| format!("{:?}", r.as_ref().map(|r| &r.0)),
        );
    }
    // A keeper opened on a live lease sends raw requests after the lease is gone.
    c.lease_grant(60, grant_opts(0x4321)).await?;
    let (mut keeper, mut stream) = c.lease_keep_alive(0x4321).await?;
    c.lease_revoke(0x4321).await?;
    keeper.keep_alive().await?;
    show(
        "keep-alive 0x4321 after its revoke",
        stream.message().await,
        |r| format!("{:?}", r.as_ref().map(|r| &r.0)),
    );
    for id in [0x9999, 0x1234] {
        let opts = Some(LeaseTimeToLiveOptions::new().with_keys());
        show(
            &format!("time-to-live {id:#x} keys"),
            c.lease_time_to_live(id, opts).await,
            |r| format!("{:?}", r.0),
        );
    }
    Ok(())
}

async fn lease_keys_and_revoke(c: &mut Client) -> Res {
    for id in [300, 100, 200] {
        c.lease_grant(600, grant_opts(id)).await?;
    }
    show("leases", c.leases().await, |r| {
        let ids: Vec<i64> = r.leases().iter().map(|l| l.id()).collect();
        format!("header={} ids={ids:?}", header(r.0.header.as_ref()))
    });
    for k in ["lk/z", "lk/a", "lk/m"] {
        c.put(k, "v", Some(PutOptions::new().with_lease(0x1234)))
            .await?;
    }
    let opts = Some(LeaseTimeToLiveOptions::new().with_keys());
    show(
        "time-to-live 0x1234 keys after put lk/z, lk/a, lk/m",
        c.lease_time_to_live(0x1234, opts).await,
        |r| {
            let keys: Vec<String> = r.keys().iter().map(|k| text(k)).collect();
            format!(
                "header={} ttl={} granted={} keys={keys:?}",
                header(r.0.header.as_ref()),
                r.ttl(),
                r.granted_ttl()
            )
        },
    );
    lease_compares(c).await?;
    lease_revoke_events(c).await?;
    lease_detach(c).await
}

/// One revoke of a lease with three keys: one response? which order?
async fn lease_revoke_events(c: &mut Client) -> Res {
    let opts = Some(WatchOptions::new().with_prefix().with_prev_key());
    let mut ws = c.watch("lk/", opts).await?;
    drain("watch lk/ prefix prev_kv", &mut ws, 300).await;
    let revoke = c.lease_revoke(0x1234).await;
    show("revoke 0x1234", revoke, |r| format!("{:?}", r.0));
    drain("events of the revoke", &mut ws, 300).await;
    let revoke = c.lease_revoke(300).await;
    show("revoke 300 (no keys)", revoke, |r| format!("{:?}", r.0));
    Ok(())
}

/// A put without a lease detaches the key; `ignore_lease` keeps it attached.
async fn lease_detach(c: &mut Client) -> Res {
    let leased = Some(PutOptions::new().with_lease(100));
    c.put("lk2/x", "1", leased.clone()).await?;
    c.put("lk2/x", "2", None).await?;
    c.put("lk2/y", "1", leased).await?;
    let keep = Some(PutOptions::new().with_ignore_lease());
    c.put("lk2/y", "2", keep).await?;
    let opts = Some(LeaseTimeToLiveOptions::new().with_keys());
    let label = "time-to-live 100 after put x lease, put x plain, put y lease, put y ignore_lease";
    show(label, c.lease_time_to_live(100, opts).await, |r| {
        let keys: Vec<String> = r.keys().iter().map(|k| text(k)).collect();
        format!("keys={keys:?}")
    });
    let got = c.get("lk2/", Some(GetOptions::new().with_prefix())).await;
    show("get lk2/", got, |r| {
        let kvs: Vec<String> = r.kvs().iter().map(|k| kv(&k.0)).collect();
        kvs.join(" ")
    });
    Ok(())
}

async fn lease_compares(c: &mut Client) -> Res {
    for (key, id) in [
        ("lk/a", 0x1234),
        ("lk/a", 0),
        ("nokey", 0),
        ("nokey", 0x1234),
    ] {
        let txn = Txn::new().when([Compare::lease(key, CompareOp::Equal, id)]);
        show(
            &format!("txn compare lease({key}) == {id:#x}"),
            c.txn(txn).await,
            |r| format!("succeeded={}", r.succeeded()),
        );
    }
    Ok(())
}
