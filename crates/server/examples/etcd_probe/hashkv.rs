//! HashKV over the golden script of WATCH_LEASE.md 1.8.

use etcd_client::{Client, CompactionOptions, PutOptions, Txn, TxnOp};

use crate::{grant_opts, header, show, Res};

async fn hash_at(c: &mut Client, label: &str, rev: i64) {
    show(
        &format!("{label}: hash_kv({rev})"),
        c.hash_kv(rev).await,
        |r| {
            format!(
                "header={} hash={} compact_revision={} hash_revision={}",
                header(r.0.header.as_ref()),
                r.hash(),
                r.compact_version(),
                r.hash_revision()
            )
        },
    );
}

/// The golden script of WATCH_LEASE.md 1.8, revision by revision.
pub async fn run(c: &mut Client) -> Res {
    hash_at(c, "fresh", 0).await;
    hash_at(c, "fresh", 1).await;
    c.put("a", "1", None).await?; // 2
    c.put("b", "2", None).await?; // 3
    c.put("a", "3", None).await?; // 4
    c.delete("b", None).await?; // 5
    let txn = Txn::new().and_then([
        TxnOp::put("c", "4", None),
        TxnOp::put("d", "5", None),
        TxnOp::delete("a", None),
    ]);
    c.txn(txn).await?; // 6
    c.lease_grant(3600, grant_opts(0x1234)).await?;
    c.put("e", "6", Some(PutOptions::new().with_lease(0x1234)))
        .await?; // 7
    c.put("c", "7", None).await?; // 8
    for rev in [0, 4, 5, 6, 7, 8, 9] {
        hash_at(c, "before compaction", rev).await;
    }
    show(
        "compact 5 physical",
        c.compact(5, Some(CompactionOptions::new().with_physical()))
            .await,
        |r| format!("{:?}", r.0),
    );
    for rev in [0, 4, 5, 6, 7, 8] {
        hash_at(c, "after compaction at 5", rev).await;
    }
    c.put("f", "8", None).await?; // 9
    for rev in [0, 5, 7, 9] {
        hash_at(c, "after put f (rev 9)", rev).await;
    }
    Ok(())
}
