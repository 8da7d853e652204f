//! The Lock and Election services: key format, headers, error codes and texts.

use std::time::Duration;

use etcd_client::{
    Client, Error, GetOptions, LeaderKey, LockOptions, LockResponse, ProclaimOptions, ResignOptions,
};

use crate::{grant_opts, header, kv, show, text, Res};

fn lock_line(r: &LockResponse) -> String {
    format!(
        "header={} key={:?}",
        header(r.0.header.as_ref()),
        text(r.key())
    )
}

fn with_lease(id: i64) -> Option<LockOptions> {
    Some(LockOptions::new().with_lease(id))
}

/// Key format, the same lease twice, and a waiter's header when the holder unlocks.
pub async fn run_lock(c: &mut Client) -> Res {
    c.lease_grant(600, grant_opts(0x1234abcd)).await?;
    c.lease_grant(600, grant_opts(0x77)).await?;
    c.put("bump", "1", None).await?;
    let lock = c.lock("mylock", with_lease(0x1234abcd)).await;
    let first = show("lock mylock lease 0x1234abcd", lock, lock_line);
    let again = c.lock("mylock", with_lease(0x1234abcd)).await;
    show("lock mylock same lease again", again, lock_line);
    let mut c2 = c.clone();
    let waiter = tokio::spawn(async move { c2.lock("mylock", with_lease(0x77)).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    c.put("bump", "2", None).await?;
    if let Some(first) = first {
        show("unlock first", c.unlock(first.key()).await, |r| {
            format!("header={}", header(r.0.header.as_ref()))
        });
    }
    let second = waiter.await.map_err(|e| Error::WatchError(e.to_string()))?;
    show("second lock (waited)", second, lock_line);
    lock_edges(c).await
}

/// A negative lease id, an unknown lease, no lease, unlocking a missing key.
async fn lock_edges(c: &mut Client) -> Res {
    c.lease_grant(600, grant_opts(-0x2a)).await?;
    let lock = c.lock("neg", with_lease(-0x2a)).await;
    show("lock neg with lease -0x2a", lock, lock_line);
    let lock = c.lock("other", with_lease(0x9999)).await;
    show("lock with unknown lease", lock, lock_line);
    match tokio::time::timeout(Duration::from_secs(3), c.lock("nolease", None)).await {
        Ok(lock) => {
            show("lock without lease", lock, lock_line);
        }
        Err(_) => println!("lock without lease: no answer in 3 s"),
    }
    let prefix = Some(GetOptions::new().with_prefix());
    let got = c.get("nolease/", prefix.clone()).await?;
    for k in got.kvs() {
        let ttl = c.lease_time_to_live(k.lease(), None).await;
        show(
            &format!("time-to-live of {}'s lease", text(k.key())),
            ttl,
            |r| format!("ttl={} granted={}", r.ttl(), r.granted_ttl()),
        );
    }
    show(
        "unlock a key that does not exist",
        c.unlock("mylock/none").await,
        |r| format!("header={}", header(r.0.header.as_ref())),
    );
    show("get mylock/", c.get("mylock/", prefix).await, |r| {
        let kvs: Vec<String> = r.kvs().iter().map(|k| kv(&k.0)).collect();
        kvs.join(" ")
    });
    Ok(())
}

fn leader_key(l: &LeaderKey) -> String {
    format!(
        "{{name={:?} key={:?} rev={} lease={}}}",
        text(l.name()),
        text(l.key()),
        l.rev(),
        l.lease()
    )
}

pub async fn run_election(c: &mut Client) -> Res {
    c.lease_grant(600, grant_opts(0xabc)).await?;
    c.lease_grant(600, grant_opts(0xdef)).await?;
    show("leader of an empty election", c.leader("el").await, |r| {
        format!("{:?}", r.0)
    });
    let won = show(
        "campaign el v1 lease 0xabc",
        c.campaign("el", "v1", 0xabc).await,
        |r| {
            let l = r.leader().map(leader_key);
            format!("header={} leader={l:?}", header(r.0.header.as_ref()))
        },
    );
    show(
        "campaign el v1b same lease again",
        c.campaign("el", "v1b", 0xabc).await,
        |r| {
            let l = r.leader().map(leader_key);
            format!("header={} leader={l:?}", header(r.0.header.as_ref()))
        },
    );
    show("leader el", c.leader("el").await, |r| {
        format!(
            "header={} kv={:?}",
            header(r.0.header.as_ref()),
            r.kv().map(|k| kv(&k.0))
        )
    });
    let Some(won) = won.and_then(|mut r| r.take_leader()) else {
        return Ok(());
    };
    let wrong = LeaderKey::new()
        .with_name("el")
        .with_key(won.key())
        .with_rev(won.rev() + 100)
        .with_lease(0xabc);
    let opts = Some(ProclaimOptions::new().with_leader(wrong.clone()));
    show(
        "proclaim with a wrong rev",
        c.proclaim("v2", opts).await,
        |r| format!("{:?}", r.0),
    );
    show(
        "proclaim without leader",
        c.proclaim("v2", None).await,
        |r| format!("{:?}", r.0),
    );
    let opts = Some(ProclaimOptions::new().with_leader(won.clone()));
    show("proclaim v2 as leader", c.proclaim("v2", opts).await, |r| {
        format!("header={}", header(r.0.header.as_ref()))
    });
    show("resign without leader", c.resign(None).await, |r| {
        format!("{:?}", r.0)
    });
    let opts = Some(ResignOptions::new().with_leader(wrong));
    show("resign with a wrong rev", c.resign(opts).await, |r| {
        format!("{:?}", r.0)
    });
    let opts = Some(ResignOptions::new().with_leader(won.clone()));
    show("resign as leader", c.resign(opts).await, |r| {
        format!("header={}", header(r.0.header.as_ref()))
    });
    let opts = Some(ResignOptions::new().with_leader(won));
    show("resign again (key gone)", c.resign(opts).await, |r| {
        format!("header={}", header(r.0.header.as_ref()))
    });
    show("leader el after resign", c.leader("el").await, |r| {
        format!("{:?}", r.0)
    });
    Ok(())
}
