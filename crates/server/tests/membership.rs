//! Membership changes end to end: grow a 3-member cluster to 5 and shrink it back to 3
//! while a client writes (no acknowledged write lost), move the leader with etcdctl, and
//! replace a member whose disk was wiped by a new member.

mod support;

use etcd_client::{Client, ConnectOptions, GetOptions, MemberAddOptions};
use std::collections::BTreeMap;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::{client, wait_leader, Cluster};
use synod_testkit::Tool;

async fn connect(ep: &str) -> Option<Client> {
    Client::connect(
        [ep.to_string()],
        Some(
            ConnectOptions::new()
                .with_connect_timeout(Duration::from_secs(1))
                .with_timeout(Duration::from_secs(3)),
        ),
    )
    .await
    .ok()
}

/// Writes `k{n}` = `n` for n = 0, 1, ... through the members in `endpoints` (round robin,
/// reading the list each time so the test can change it), until `stop`. Returns the
/// acknowledged ones.
async fn writer(endpoints: Arc<Mutex<Vec<String>>>, stop: Arc<AtomicBool>) -> Vec<u64> {
    let mut acked = Vec::new();
    let mut clients: BTreeMap<String, Client> = BTreeMap::new();
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let eps = endpoints.lock().unwrap().clone();
        let ep = eps[n as usize % eps.len()].clone();
        if !clients.contains_key(&ep) {
            match connect(&ep).await {
                Some(c) => {
                    clients.insert(ep.clone(), c);
                }
                None => {
                    n += 1; // not attempted: nothing to record
                    continue;
                }
            }
        }
        let c = clients.get_mut(&ep).expect("just inserted");
        if c.put(format!("k{n}"), n.to_string(), None).await.is_ok() {
            acked.push(n);
        } else {
            clients.remove(&ep);
        }
        n += 1;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    acked
}

async fn member_id_of(c: &mut Client, peer_url: &str) -> u64 {
    let list = c.member_list().await.expect("member list");
    list.members()
        .iter()
        .find(|m| m.peer_urls().iter().any(|u| u == peer_url))
        .unwrap_or_else(|| panic!("no member with peer URL {peer_url}"))
        .id()
}

/// Adds a member with peer URL `url` and returns its id, retrying while the cluster is busy;
/// a timed-out attempt may have taken effect, so a member with that URL means done.
async fn add(c: &mut Client, url: &str, learner: bool) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let options = learner.then(|| MemberAddOptions::new().with_is_learner());
        match c.member_add([url.to_string()], options).await {
            Ok(r) => {
                let m = r.member().expect("the added member");
                assert_eq!(m.is_learner(), learner);
                return m.id();
            }
            Err(e) => {
                if let Ok(list) = c.member_list().await {
                    if let Some(m) = list.members().iter().find(|m| m.peer_urls() == [url]) {
                        return m.id();
                    }
                }
                assert!(Instant::now() < deadline, "member add {url}: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Promotes learner `id`, retrying while the cluster is busy or the learner catches up; a
/// timed-out attempt may have taken effect, so a voter `id` means done.
async fn promote(c: &mut Client, id: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match c.member_promote(id).await {
            Ok(_) => return,
            Err(e) => {
                let voter = c
                    .member_list()
                    .await
                    .is_ok_and(|l| l.members().iter().any(|m| m.id() == id && !m.is_learner()));
                if voter {
                    return;
                }
                assert!(Instant::now() < deadline, "member promote {id:x}: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Removes member `id`, retrying while the cluster is busy; a timed-out attempt may have
/// taken effect, so "not found" after a first failure means done.
async fn remove(c: &mut Client, id: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match c.member_remove(id).await {
            Ok(_) => return,
            Err(e) => {
                let gone = c
                    .member_list()
                    .await
                    .is_ok_and(|l| l.members().iter().all(|m| m.id() != id));
                if gone {
                    return;
                }
                assert!(Instant::now() < deadline, "member remove {id:x}: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Waits until member `i` serves a linearizable read of `key` with `value`.
async fn wait_serves(cluster: &Cluster, i: usize, key: &str, value: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(mut c) = connect(&cluster.members[i].endpoint()).await {
            if let Ok(r) = c.get(key, None).await {
                if r.kvs().first().map(|kv| kv.value()) == Some(value.as_bytes()) {
                    return;
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "{} does not serve {key}",
            cluster.members[i].name
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits for member `i` to exit on its own (a removed member stops).
fn wait_exit(cluster: &mut Cluster, i: usize, within: Duration) {
    let deadline = Instant::now() + within;
    while cluster.members[i].is_running() {
        assert!(
            Instant::now() < deadline,
            "{} kept running after its removal",
            cluster.members[i].name
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn grow_to_five_and_shrink_to_three_while_writing() {
    let mut cluster = Cluster::start(3);
    let leader = wait_leader(&mut cluster, Duration::from_secs(20)).await;
    let endpoints = Arc::new(Mutex::new(cluster.endpoints()));
    let stop = Arc::new(AtomicBool::new(false));
    let writing = tokio::spawn(writer(endpoints.clone(), stop.clone()));
    let mut admin = client(&[cluster.members[leader].endpoint()]).await;

    // m4 joins as a learner, catches up, and is promoted.
    let m4 = cluster.prepare_join("m4", &[0, 1, 2]);
    let url4 = cluster.peer_url(m4);
    let id4 = add(&mut admin, &url4, true).await;
    cluster.spawn(m4);
    admin.put("probe", "1", None).await.expect("write");
    wait_serves(&cluster, m4, "probe", "1").await;
    promote(&mut admin, id4).await;

    // m5 joins as a voter directly (etcd allows it; a quorum of four is up meanwhile).
    let m5 = cluster.prepare_join("m5", &[0, 1, 2, m4]);
    let url5 = cluster.peer_url(m5);
    add(&mut admin, &url5, false).await;
    cluster.spawn(m5);
    admin.put("probe", "2", None).await.expect("write");
    wait_serves(&cluster, m5, "probe", "2").await;
    endpoints.lock().unwrap().extend([
        cluster.members[m4].endpoint(),
        cluster.members[m5].endpoint(),
    ]);
    let list = admin.member_list().await.expect("member list");
    assert_eq!(list.members().len(), 5);
    assert!(list.members().iter().all(|m| !m.is_learner()));

    // Shrink: remove the leader first (it hands over), then another original member.
    let others: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    let mut via = client(&[cluster.members[m4].endpoint()]).await;
    let leader_url = cluster.peer_url(leader);
    let leader_id = member_id_of(&mut via, &leader_url).await;
    endpoints
        .lock()
        .unwrap()
        .retain(|e| *e != cluster.members[leader].endpoint());
    remove(&mut via, leader_id).await;
    wait_exit(&mut cluster, leader, Duration::from_secs(20));
    let gone = others[0];
    let gone_url = cluster.peer_url(gone);
    let gone_id = member_id_of(&mut via, &gone_url).await;
    endpoints
        .lock()
        .unwrap()
        .retain(|e| *e != cluster.members[gone].endpoint());
    remove(&mut via, gone_id).await;
    wait_exit(&mut cluster, gone, Duration::from_secs(20));
    let list = via.member_list().await.expect("member list");
    assert_eq!(list.members().len(), 3);

    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let acked = writing.await.expect("the writer");
    assert!(
        acked.len() > 50,
        "the writer made progress: {}",
        acked.len()
    );
    // Every acknowledged write is there, read linearizably from the remaining members.
    let remaining = [others[1], m4, m5];
    for &i in &remaining {
        let mut c = client(&[cluster.members[i].endpoint()]).await;
        let all = c
            .get("k", Some(GetOptions::new().with_prefix()))
            .await
            .expect("read back");
        let present: BTreeMap<String, String> = all
            .kvs()
            .iter()
            .map(|kv| {
                (
                    kv.key_str().unwrap().to_string(),
                    kv.value_str().unwrap().to_string(),
                )
            })
            .collect();
        for n in &acked {
            assert_eq!(
                present.get(&format!("k{n}")).map(String::as_str),
                Some(n.to_string().as_str()),
                "acknowledged write k{n} lost at {}",
                cluster.members[i].name
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn move_leader_with_etcdctl() {
    // Before the cluster: a missing etcdctl fails the test at once, saying how to install it.
    let etcdctl = Tool::ETCDCTL.require();
    let mut cluster = Cluster::start(3);
    let leader = wait_leader(&mut cluster, Duration::from_secs(20)).await;
    let target = (leader + 1) % 3;
    let mut c = client(&[cluster.members[target].endpoint()]).await;
    let target_id = c
        .status()
        .await
        .expect("status")
        .header()
        .unwrap()
        .member_id();
    let out = Command::new(etcdctl)
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={}", cluster.endpoints().join(",")))
        .args(["move-leader", &format!("{target_id:x}")])
        .output()
        .expect("run etcdctl");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "etcdctl move-leader failed:\n{text}");
    assert!(text.contains("Leadership transferred"), "{text}");
    let now = wait_leader(&mut cluster, Duration::from_secs(10)).await;
    assert_eq!(now, target, "the leader moved to the target");
    c.put("after-move", "ok", None).await.expect("writes go on");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_member_is_replaced_by_a_new_one() {
    let mut cluster = Cluster::start(3);
    let leader = wait_leader(&mut cluster, Duration::from_secs(20)).await;
    let mut c = client(&[cluster.members[leader].endpoint()]).await;
    // Enough slots that the new member, replaying the log, spends a while at memberships
    // that do not name it yet (it must not take itself for a removed member).
    for i in 0..1500 {
        c.put(format!("before{i}"), "x", None).await.expect("write");
    }
    // A follower loses its disk.
    let victim = (leader + 1) % 3;
    cluster.kill(victim);
    std::fs::remove_dir_all(cluster.data_dir(victim)).expect("wipe");
    // The operator removes it and adds a new member in its place (a new peer URL: the old
    // identity never comes back).
    let victim_id = member_id_of(&mut c, &cluster.peer_url(victim)).await;
    remove(&mut c, victim_id).await;
    let again = c
        .member_add([cluster.peer_url(victim)], None)
        .await
        .expect_err("re-adding the removed identity is refused");
    assert!(again.to_string().contains("ID removed"), "{again}");
    let peers: Vec<usize> = (0..3).filter(|&i| i != victim).collect();
    let fresh = cluster.prepare_join("m3b", &peers);
    let url = cluster.peer_url(fresh);
    add(&mut c, &url, false).await;
    cluster.spawn(fresh);
    c.put("after", "y", None).await.expect("write");
    wait_serves(&cluster, fresh, "after", "y").await;
    wait_serves(&cluster, fresh, "before1499", "x").await;
    assert!(
        cluster.members[fresh].is_running(),
        "the new member keeps running"
    );
    let list = c.member_list().await.expect("member list");
    assert_eq!(list.members().len(), 3);
    // Names are published once members run.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let list = c.member_list().await.expect("member list");
        if list.members().iter().any(|m| m.name() == "m3b") {
            break;
        }
        assert!(Instant::now() < deadline, "m3b never published its name");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
