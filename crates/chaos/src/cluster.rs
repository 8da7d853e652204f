//! A cluster of real `synod` processes whose every peer link runs through a fault proxy.
//!
//! The initial members get the same `--initial-cluster` (real peer URLs: member ids derive
//! from them), and member `i` is told with the hidden `--peer-dial` flag to dial member `j`
//! at the proxy of link `i → j`, which forwards to `j`'s real peer port.
//!
//! Members added at run time (`membership.rs`) cannot be reached that way: members started
//! before them dial them at the peer URL in the member table, and `--peer-dial` accepts only
//! names of `--initial-cluster`. So an added member advertises a [`FrontDoor`] as its peer URL
//! (its id derives from that URL) and listens elsewhere; the front door tells the links apart
//! by the sender id in the transport's hello. An added member itself dials the initial members
//! through `--peer-dial` entries (they are in its `--initial-cluster`) and other added members
//! through their front doors. Every directed link between members is thus a [`Link`].
//!
//! Members are indexed by the order they were created (`m1` is 0) and keep their index
//! after they are removed; [`Standing`] says where each is.

use crate::clients::Roster;
use crate::proxy::{FrontDoor, Link, LinkMode};
use crate::schedule::TailDamage;
use crate::tail::Tails;
use etcd_client::{Client, ConnectOptions};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use synod_testkit::{free_ports, HarnessError, Member};

#[derive(Clone, Debug)]
pub struct ClusterSpec {
    pub nodes: usize,
    pub binary: PathBuf,
    pub heartbeat_ms: u64,
    pub election_ms: u64,
    pub request_timeout_ms: u64,
    /// Flags for every member (e.g. `--read-mode=quorum`).
    pub flags: Vec<String>,
    /// Flags for one member only: (index, flag), e.g. a clock skew.
    pub member_flags: Vec<(usize, String)>,
    pub log_level: String,
}

/// Where a member stands in the cluster's member table, as far as the harness knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Standing {
    Voter,
    Learner,
    /// Asked for (`MemberAdd` sent), not seen in the table yet, so not started: a timed-out
    /// add may still land, and the member is started when it shows up.
    Adding,
    /// Out of the table for good; it stops by itself once the change is in force.
    Removed,
}

/// One member as the member table lists it.
#[derive(Clone, Debug)]
pub struct TableEntry {
    pub id: u64,
    pub peer_url: String,
    pub learner: bool,
}

#[derive(Debug)]
pub struct Cluster {
    pub members: Vec<Member>,
    pub standing: Vec<Standing>,
    /// Member ids: from `Status` headers and the member table.
    ids: Vec<Option<u64>>,
    /// The peer URL each member advertises (its member id derives from it).
    peer_urls: Vec<String>,
    /// Members added at run time: the listener every peer dials them through.
    fronts: Vec<Option<FrontDoor>>,
    /// `links[(i, j)]`: the proxy carrying what `i` sends to `j`.
    links: BTreeMap<(usize, usize), Link>,
    /// When the harness learned that a member was removed.
    pub removed_at: Vec<Option<Instant>>,
    spec: ClusterSpec,
    token: String,
    seed: u64,
    /// What clients may talk to: kept in step with the standings.
    pub roster: Arc<Roster>,
    /// Members whose log tail was destroyed, and their recovery.
    pub tails: Tails,
    pub dir: PathBuf,
}

/// The test kit's errors as the harness's I/O errors.
fn io(e: HarnessError) -> std::io::Error {
    std::io::Error::other(e)
}

fn loopback(port: u16) -> SocketAddr {
    ([127, 0, 0, 1], port).into()
}

impl Cluster {
    /// Starts the proxies, then every member, in `dir`.
    pub async fn start(spec: &ClusterSpec, dir: &Path, seed: u64) -> std::io::Result<Cluster> {
        let n = spec.nodes;
        // Below the ephemeral range: the proxies' listeners (port 0) never take them.
        let ports = free_ports(2 * n).map_err(io)?;
        // Unique per cluster, so that members of clusters started side by side refuse each
        // other should one reuse a port another just freed.
        let token = format!("chaos-{}-{}", std::process::id(), ports[0]);
        let mut cluster = Cluster {
            members: Vec::new(),
            standing: Vec::new(),
            ids: Vec::new(),
            peer_urls: Vec::new(),
            fronts: Vec::new(),
            links: BTreeMap::new(),
            removed_at: Vec::new(),
            spec: spec.clone(),
            token,
            seed,
            roster: Roster::new(Vec::new()),
            tails: Tails::default(),
            dir: dir.to_path_buf(),
        };
        for i in 0..n {
            let (client_port, peer_port) = (ports[2 * i], ports[2 * i + 1]);
            cluster.push_member(client_port, peer_port, None, Standing::Voter);
        }
        for i in 0..n {
            for j in (0..n).filter(|&j| j != i) {
                let link = Link::start(
                    loopback(cluster.members[j].peer_port),
                    cluster.link_seed(i, j),
                )
                .await?;
                cluster.links.insert((i, j), link);
            }
        }
        let initial_cluster = (0..n)
            .map(|j| format!("{}={}", cluster.members[j].name, cluster.peer_urls[j]))
            .collect::<Vec<_>>()
            .join(",");
        for i in 0..n {
            let mut args = cluster.base_args(i);
            args.push(format!("--initial-cluster={initial_cluster}"));
            args.push(format!("--peer-dial={}", cluster.peer_dial(i, 0..n)));
            cluster.members[i].set_args(args);
        }
        for i in 0..n {
            cluster.roster.set_current(i, true);
            cluster.members[i].spawn().map_err(io)?;
        }
        Ok(cluster)
    }

    fn link_seed(&self, i: usize, j: usize) -> u64 {
        self.seed ^ ((i as u64) << 32 | j as u64).wrapping_mul(0x9E37)
    }

    /// Creates member `members.len()` (not started): `front` is its front door for one added
    /// at run time.
    fn push_member(
        &mut self,
        client_port: u16,
        peer_port: u16,
        front: Option<FrontDoor>,
        standing: Standing,
    ) -> usize {
        let i = self.members.len();
        let name = format!("m{}", i + 1);
        let advertised = front.as_ref().map_or(peer_port, |f| f.addr().port());
        let log = self.dir.join(format!("{name}.log"));
        let member = Member::new(
            name,
            client_port,
            peer_port,
            &self.dir,
            log,
            self.spec.binary.clone(),
        );
        self.roster.put(i, member.client_url());
        self.members.push(member);
        self.standing.push(standing);
        self.ids.push(None);
        self.peer_urls
            .push(format!("http://127.0.0.1:{advertised}"));
        self.fronts.push(front);
        self.removed_at.push(None);
        i
    }

    /// The flags every start of member `i` gets, bar the cluster's composition.
    fn base_args(&self, i: usize) -> Vec<String> {
        let mut args = self.members[i].identity_flags(&self.peer_urls[i], &self.token);
        args.extend([
            format!("--heartbeat-interval={}", self.spec.heartbeat_ms),
            format!("--election-timeout={}", self.spec.election_ms),
            format!("--request-timeout={}", self.spec.request_timeout_ms),
            format!("--log-level={}", self.spec.log_level),
        ]);
        args.extend(self.spec.flags.iter().cloned());
        args.extend(
            self.spec
                .member_flags
                .iter()
                .filter(|(m, _)| *m == i)
                .map(|(_, f)| f.clone()),
        );
        args
    }

    /// `--peer-dial` of member `i` for the members `peers` that have no front door.
    fn peer_dial(&self, i: usize, peers: impl IntoIterator<Item = usize>) -> String {
        peers
            .into_iter()
            .filter(|&j| j != i && self.fronts[j].is_none())
            .filter_map(|j| {
                let l = self.links.get(&(i, j))?;
                Some(format!(
                    "{}=127.0.0.1:{}",
                    self.members[j].name,
                    l.addr().port()
                ))
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    /// A new member for the cluster to add: fresh ports, data directory, front door and
    /// links from every member whose id is known. Not started (see [`Cluster::sync`]).
    pub async fn new_member(&mut self) -> std::io::Result<usize> {
        let ports = free_ports(2).map_err(io)?;
        let front = FrontDoor::start(loopback(ports[1])).await?;
        let i = self.push_member(ports[0], ports[1], Some(front), Standing::Adding);
        self.ensure_links().await?;
        Ok(i)
    }

    /// Creates every missing link that can be made: to a member without a front door, a
    /// listening proxy (used by members started after it, through `--peer-dial`); to one with
    /// a front door, a route for the sender's id, once that id is known. Routes are made
    /// before the member they lead to is added, so the first connection already takes them.
    async fn ensure_links(&mut self) -> std::io::Result<()> {
        let n = self.members.len();
        for i in 0..n {
            for j in (0..n).filter(|&j| j != i) {
                if self.links.contains_key(&(i, j)) {
                    continue;
                }
                let seed = self.link_seed(i, j);
                let link = match (&self.fronts[j], self.ids[i]) {
                    (Some(front), Some(sender)) => front.link(sender, seed),
                    (Some(_), None) => continue,
                    (None, _) => {
                        // Only a member started later dials through it.
                        if self.members[i].started() {
                            continue;
                        }
                        Link::start(loopback(self.members[j].peer_port), seed).await?
                    }
                };
                self.links.insert((i, j), link);
            }
        }
        Ok(())
    }

    /// Connections that reached a front door from a sender it had no route for (so went
    /// through unfaulted). Zero unless the transport's hello changed.
    pub fn unrouted_connections(&self) -> u64 {
        self.fronts
            .iter()
            .flatten()
            .map(FrontDoor::unknown_senders)
            .sum()
    }

    pub fn peer_url(&self, i: usize) -> &str {
        &self.peer_urls[i]
    }

    pub fn id(&self, i: usize) -> Option<u64> {
        self.ids[i]
    }

    /// Brings the harness's view in line with the member table `table` (which must be at
    /// least as new as every change acknowledged so far): members it lists are voters or
    /// learners and are started if they were not (an add that was acknowledged, or that
    /// timed out and landed anyway); members it no longer lists are removed.
    pub async fn sync(&mut self, table: &[TableEntry]) -> Result<(), String> {
        let mut listed = BTreeSet::new();
        for e in table {
            let Some(i) = self.index_of_url(&e.peer_url) else {
                return Err(format!(
                    "the member table lists {:x} at {}, which the harness never made",
                    e.id, e.peer_url
                ));
            };
            listed.insert(i);
            self.ids[i] = Some(e.id);
            self.standing[i] = if e.learner {
                Standing::Learner
            } else {
                Standing::Voter
            };
        }
        for i in 0..self.members.len() {
            let in_table = matches!(self.standing[i], Standing::Voter | Standing::Learner);
            if in_table && !listed.contains(&i) {
                self.standing[i] = Standing::Removed;
                self.removed_at[i] = Some(Instant::now());
                self.tails.removed(i);
                self.roster.set_current(i, false);
            }
        }
        self.ensure_links().await.map_err(|e| e.to_string())?;
        for &i in &listed {
            if !self.members[i].started() {
                self.launch(i, &listed)
                    .map_err(|e| format!("starting m{}: {e}", i + 1))?;
            }
            self.roster.set_current(i, true);
        }
        Ok(())
    }

    fn index_of_url(&self, url: &str) -> Option<usize> {
        let url = url.trim_end_matches('/');
        self.peer_urls.iter().position(|u| u == url)
    }

    /// Starts an added member: `--initial-cluster-state existing`, an `--initial-cluster`
    /// naming the members of the table and itself.
    fn launch(&mut self, i: usize, table: &BTreeSet<usize>) -> std::io::Result<()> {
        let mut args = self.base_args(i);
        let initial = table
            .iter()
            .map(|&j| format!("{}={}", self.members[j].name, self.peer_urls[j]))
            .collect::<Vec<_>>()
            .join(",");
        args.push(format!("--initial-cluster={initial}"));
        args.push("--initial-cluster-state=existing".into());
        let dial = self.peer_dial(i, table.iter().copied());
        if !dial.is_empty() {
            args.push(format!("--peer-dial={dial}"));
        }
        self.members[i].set_args(args);
        self.members[i].spawn().map_err(io)
    }

    /// The member table, read from the first member (of `order`) that answers a linearizable
    /// read and then `MemberList`: after the read, its table is at least as new as every
    /// change acknowledged before the read began.
    pub async fn table(&mut self, order: &[usize]) -> Result<Vec<TableEntry>, String> {
        let mut last = String::from("no member to ask");
        for &i in order {
            if !self.members[i].is_serving() {
                continue;
            }
            let within = Duration::from_secs(2);
            let endpoint = self.endpoint(i);
            let ask = async move {
                let options = ConnectOptions::new()
                    .with_connect_timeout(within)
                    .with_timeout(within);
                let mut c = Client::connect([endpoint], Some(options))
                    .await
                    .map_err(|e| e.to_string())?;
                c.get("chaos/members", None)
                    .await
                    .map_err(|e| e.to_string())?;
                let list = c.member_list().await.map_err(|e| e.to_string())?;
                Ok::<_, String>(
                    list.members()
                        .iter()
                        .map(|m| TableEntry {
                            id: m.id(),
                            peer_url: m.peer_urls().first().cloned().unwrap_or_default(),
                            learner: m.is_learner(),
                        })
                        .collect::<Vec<_>>(),
                )
            };
            match tokio::time::timeout(within * 2, ask).await {
                Ok(Ok(t)) => return Ok(t),
                Ok(Err(e)) => last = format!("m{}: {e}", i + 1),
                Err(_) => last = format!("m{}: timed out", i + 1),
            }
        }
        Err(last)
    }

    /// Every member ever created (removed ones included).
    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The members in the cluster now (voters and learners the harness started).
    pub fn current(&self) -> Vec<usize> {
        (0..self.members.len())
            .filter(|&i| {
                matches!(self.standing[i], Standing::Voter | Standing::Learner)
                    && self.members[i].started()
            })
            .collect()
    }

    /// The current voters.
    pub fn voters(&self) -> Vec<usize> {
        self.current()
            .into_iter()
            .filter(|&i| self.standing[i] == Standing::Voter)
            .collect()
    }

    pub fn endpoint(&self, i: usize) -> String {
        self.members[i].client_url()
    }

    /// The proxy of `from → to`, if there is one (there is for every pair of members
    /// created at start, and for every pair involving an added member once both ids are
    /// known).
    pub fn link(&self, from: usize, to: usize) -> Option<&Link> {
        self.links.get(&(from, to))
    }

    pub fn set_link(&self, from: usize, to: usize, mode: LinkMode) {
        if let Some(l) = self.link(from, to) {
            l.set(mode);
        }
    }

    pub fn reset_link(&self, from: usize, to: usize) {
        if let Some(l) = self.link(from, to) {
            l.reset();
        }
    }

    /// Starts member `i` again after a kill or a crash, as a supervisor would, removed
    /// members included (one killed while it was being removed must learn so when it comes
    /// back, and stop). A member that exited by itself with status 0 stopped because it was
    /// removed, and stays down (should it not have been removed, [`Cluster::crashes`] says
    /// so).
    pub fn restart(&mut self, i: usize) -> std::io::Result<()> {
        let m = &mut self.members[i];
        if self.standing[i] == Standing::Adding
            || !m.started()
            || m.exited_cleanly()
            || m.is_running()
        {
            return Ok(());
        }
        m.spawn().map_err(io)?;
        self.tails.restarted(i, m.client_url(), m.data_dir.clone());
        Ok(())
    }

    /// Destroys the synced tail of member `i`'s log (`tail.rs`); it must be down. Returns what
    /// was done.
    pub fn lose_tail(&mut self, i: usize, how: TailDamage) -> std::io::Result<String> {
        let m = &mut self.members[i];
        if m.is_running() {
            return Err(std::io::Error::other(format!(
                "{} runs: its log is not damaged under it",
                m.name
            )));
        }
        let what = crate::tail::damage(&m.data_dir, how)?;
        self.tails.damaged(i, what.clone());
        Ok(what)
    }

    /// Every link back to [`LinkMode::Pass`], every paused member resumed, every killed one
    /// restarted (see [`Cluster::restart`]).
    pub fn heal_all(&mut self) -> std::io::Result<()> {
        for link in self.links.values() {
            link.set(LinkMode::Pass);
        }
        for i in 0..self.members.len() {
            self.members[i].resume();
            if !self.members[i].is_running() {
                self.restart(i)?;
            }
        }
        Ok(())
    }

    /// This member's view: (its own id, the leader it knows of, 0 for none).
    pub async fn status(&self, i: usize, within: Duration) -> Option<(u64, u64)> {
        let options = ConnectOptions::new()
            .with_connect_timeout(within)
            .with_timeout(within);
        let fut = async {
            let mut c = Client::connect([self.endpoint(i)], Some(options))
                .await
                .ok()?;
            let s = c.status().await.ok()?;
            Some((s.header()?.member_id(), s.leader()))
        };
        tokio::time::timeout(within, fut).await.ok().flatten()
    }

    /// The member that a majority of the current members names as leader and that says so
    /// itself (members that do not answer in time are left out), if any.
    pub async fn leader(&mut self) -> Option<usize> {
        let current = self.current();
        let mut views = Vec::new();
        for &i in &current {
            if !self.members[i].is_serving() {
                continue;
            }
            if let Some((id, leader)) = self.status(i, Duration::from_millis(400)).await {
                self.ids[i] = Some(id);
                views.push((i, leader));
            }
        }
        let (_, candidate) = *views.iter().find(|(_, l)| *l != 0)?;
        let index = self.ids.iter().position(|&id| id == Some(candidate))?;
        let agree = views.iter().filter(|(_, l)| *l == candidate).count();
        let self_view = views.iter().any(|&(i, l)| i == index && l == candidate);
        (self_view && 2 * agree > current.len()).then_some(index)
    }

    /// Whether member `i` itself claims to lead.
    pub async fn claims_leadership(&mut self, i: usize) -> bool {
        match self.status(i, Duration::from_millis(400)).await {
            Some((id, leader)) => {
                self.ids[i] = Some(id);
                id == leader
            }
            None => false,
        }
    }

    pub async fn wait_leader(&mut self, within: Duration) -> Result<usize, String> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(l) = self.leader().await {
                return Ok(l);
            }
            if Instant::now() >= deadline {
                return Err(format!("no leader agreed on within {within:?}"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Every exit of a member we did not cause: (name, exit status). A removed member that
    /// exited with status 0 stopped as it should.
    pub fn crashes(&mut self) -> Vec<(String, String)> {
        let mut all = Vec::new();
        for (i, m) in self.members.iter_mut().enumerate() {
            all.extend(m.crashes.iter().map(|c| (m.name.clone(), c.clone())));
            if let Some(status) = m.exited_on_its_own() {
                if self.standing[i] == Standing::Removed && status.success() {
                    continue;
                }
                let what = if status.success() {
                    "stopped although it was not removed".to_string()
                } else {
                    status.to_string()
                };
                all.push((
                    m.name.clone(),
                    format!("{what}; log ends: {}", m.log_tail(1)),
                ));
            }
        }
        all
    }

    /// Removed members whose process still runs (or is paused), with how long ago the
    /// harness learned of the removal.
    pub fn removed_but_running(&mut self) -> Vec<(usize, Duration)> {
        let mut out = Vec::new();
        for i in 0..self.members.len() {
            if self.standing[i] == Standing::Removed && self.members[i].is_running() {
                let since = self.removed_at[i].map_or(Duration::ZERO, |t| t.elapsed());
                out.push((i, since));
            }
        }
        out
    }

    /// Kills every member (the proxies go with the cluster).
    pub fn shutdown(&mut self) {
        for m in &mut self.members {
            m.kill();
        }
    }
}
