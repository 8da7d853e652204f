//! Records what a real etcd answers to the Watch, Lease, Lock, Election and HashKV requests
//! whose details docs/design/WATCH_LEASE.md (1.8) fixes, so Synod can be made to answer the
//! same. Not a test: it prints the raw responses (headers, ids, flags, error codes and texts)
//! for a person to read against the design.
//!
//! Usage: `cargo run -p synod-server --example etcd_probe -- ENDPOINT SECTION` where SECTION is
//! `watch`, `lease`, `hashkv`, `lock` or `election`. Each section expects a fresh etcd (revision
//! 1, nothing compacted), because the revisions it prints are part of what it records.
//! `scripts/fetch-etcd.sh` provides an etcd; section 1.8 of the design says how it was run.

mod hashkv;
mod lease;
mod lock;
mod watch;

use std::time::Duration;

use etcd_client::proto::{PbKeyValue, PbResponseHeader, PbWatchResponse};
use etcd_client::{Client, Error, GetOptions, LeaseGrantOptions, WatchStream};

type Res = Result<(), Error>;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(endpoint), Some(section)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: etcd_probe ENDPOINT watch|lease|hashkv|lock|election");
        std::process::exit(2);
    };
    let result = match Client::connect([endpoint.as_str()], None).await {
        Ok(client) => run(client, section).await,
        Err(e) => Err(e),
    };
    if let Err(e) = result {
        eprintln!("probe failed: {}", err(&e));
        std::process::exit(1);
    }
}

async fn run(mut c: Client, section: &str) -> Res {
    match section {
        "watch" => watch::run(&mut c).await,
        "lease" => lease::run(&mut c).await,
        "hashkv" => hashkv::run(&mut c).await,
        "lock" => lock::run_lock(&mut c).await,
        "election" => lock::run_election(&mut c).await,
        other => {
            eprintln!("unknown section {other}");
            Ok(())
        }
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn kv(k: &PbKeyValue) -> String {
    format!(
        "{{key={:?} create={} mod={} version={} value={:?} lease={}}}",
        text(&k.key),
        k.create_revision,
        k.mod_revision,
        k.version,
        text(&k.value),
        k.lease
    )
}

fn header(h: Option<&PbResponseHeader>) -> String {
    h.map_or_else(|| "none".to_owned(), |h| format!("rev={}", h.revision))
}

fn err(e: &Error) -> String {
    match e {
        Error::GRpcStatus(st) => format!("ERR code={:?} message={:?}", st.code(), st.message()),
        other => format!("ERR {other}"),
    }
}

fn watch_response(r: &PbWatchResponse) -> String {
    let events: Vec<String> = r
        .events
        .iter()
        .map(|e| {
            let kind = if e.r#type == 0 { "PUT" } else { "DELETE" };
            let prev = e.prev_kv.as_ref().map_or_else(|| "none".to_owned(), kv);
            let cur = e.kv.as_ref().map_or_else(|| "none".to_owned(), kv);
            format!("{kind} kv={cur} prev_kv={prev}")
        })
        .collect();
    format!(
        "header={} watch_id={} created={} canceled={} compact_revision={} cancel_reason={:?} \
         fragment={} events={}{:?}",
        header(r.header.as_ref()),
        r.watch_id,
        r.created,
        r.canceled,
        r.compact_revision,
        r.cancel_reason,
        r.fragment,
        events.len(),
        events
    )
}

fn show<T>(label: &str, r: Result<T, Error>, f: impl Fn(&T) -> String) -> Option<T> {
    match r {
        Ok(v) => {
            println!("{label}: {}", f(&v));
            Some(v)
        }
        Err(e) => {
            println!("{label}: {}", err(&e));
            None
        }
    }
}

/// Prints every response that arrives until `ms` pass without one.
async fn drain(label: &str, ws: &mut WatchStream, ms: u64) -> usize {
    println!("{label}:");
    let mut n = 0;
    loop {
        match tokio::time::timeout(Duration::from_millis(ms), ws.message()).await {
            Ok(Ok(Some(r))) => {
                n += 1;
                println!("  {}", watch_response(&r.0));
            }
            Ok(Ok(None)) => {
                println!("  (stream ended)");
                return n;
            }
            Ok(Err(e)) => {
                println!("  stream error {}", err(&e));
                return n;
            }
            Err(_) => {
                if n == 0 {
                    println!("  (nothing within {ms} ms)");
                }
                return n;
            }
        }
    }
}

async fn current_rev(c: &mut Client) -> Result<i64, Error> {
    let r = c
        .get("\0", Some(GetOptions::new().with_count_only()))
        .await?;
    Ok(r.header().map_or(0, |h| h.revision()))
}

fn grant_opts(id: i64) -> Option<LeaseGrantOptions> {
    Some(LeaseGrantOptions::new().with_id(id))
}
