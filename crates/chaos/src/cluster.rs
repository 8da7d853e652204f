//! A cluster of real `synod` processes whose every peer link runs through a fault proxy.
//!
//! Every member gets the same `--initial-cluster` (real peer URLs: member ids derive from
//! them), and member `i` is told with the hidden `--peer-dial` flag to dial member `j` at the
//! proxy of link `i → j`, which forwards to `j`'s real peer port.

use crate::process::Member;
use crate::proxy::{Link, LinkMode};
use etcd_client::{Client, ConnectOptions};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

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

#[derive(Debug)]
pub struct Cluster {
    pub members: Vec<Member>,
    /// `links[i][j]`: the proxy carrying what `i` sends to `j` (`None` on the diagonal).
    links: Vec<Vec<Option<Link>>>,
    /// Member ids (from `Status` headers), learned once every member answered.
    ids: Vec<Option<u64>>,
    pub dir: PathBuf,
}

/// Free loopback ports for the members, chosen *below* the kernel's ephemeral range: a port
/// from there (bind to port 0) is free now but may be handed out again, to a proxy listener
/// or to some outgoing connection, before the member binds it (a long run hit exactly
/// that). Nothing is given ports below the range unless it asks for one by number.
fn member_ports(n: usize) -> std::io::Result<Vec<u16>> {
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let (lo, hi) = (10_000u16, ephemeral_low.saturating_sub(1));
    if hi <= lo + 1000 {
        return Err(std::io::Error::other(format!(
            "the ephemeral port range starts at {ephemeral_low}: no room below it for members"
        )));
    }
    let mut rng = synod_sim::rng::Rng::new(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
            ^ u64::from(std::process::id()) << 32,
    );
    // Held until all are chosen, so that no port is picked twice.
    let mut held = Vec::with_capacity(n);
    while held.len() < n {
        let port = rng.range(u64::from(lo), u64::from(hi)) as u16;
        if let Ok(l) = TcpListener::bind(("127.0.0.1", port)) {
            held.push(l);
        }
    }
    held.iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect()
}

impl Cluster {
    /// Starts the proxies, then every member, in `dir`.
    pub async fn start(spec: &ClusterSpec, dir: &Path, seed: u64) -> std::io::Result<Cluster> {
        let n = spec.nodes;
        let ports = member_ports(2 * n)?;
        let client_port = |i: usize| ports[2 * i];
        let peer_port = |i: usize| ports[2 * i + 1];
        let mut links: Vec<Vec<Option<Link>>> = (0..n).map(|_| Vec::new()).collect();
        for (i, row) in links.iter_mut().enumerate() {
            for j in 0..n {
                row.push(if i == j {
                    None
                } else {
                    let target: SocketAddr = ([127, 0, 0, 1], peer_port(j)).into();
                    let link_seed = seed ^ ((i as u64) << 32 | j as u64).wrapping_mul(0x9E37);
                    Some(Link::start(target, link_seed).await?)
                });
            }
        }
        // Unique per cluster, so that members of clusters started side by side refuse each
        // other should one reuse a port another just freed.
        let token = format!("chaos-{}-{}", std::process::id(), ports[0]);
        let mut members = Vec::with_capacity(n);
        for (i, row) in links.iter().enumerate() {
            let name = format!("m{}", i + 1);
            let initial_cluster = (0..n)
                .map(|j| format!("m{}=http://127.0.0.1:{}", j + 1, peer_port(j)))
                .collect::<Vec<_>>()
                .join(",");
            let peer_dial = row
                .iter()
                .enumerate()
                .filter_map(|(j, link)| {
                    link.as_ref()
                        .map(|l| format!("m{}=127.0.0.1:{}", j + 1, l.addr().port()))
                })
                .collect::<Vec<_>>()
                .join(",");
            let mut args = vec![
                format!("--name={name}"),
                format!("--data-dir={}", dir.join(&name).display()),
                format!("--listen-client-urls=http://127.0.0.1:{}", client_port(i)),
                format!(
                    "--advertise-client-urls=http://127.0.0.1:{}",
                    client_port(i)
                ),
                format!("--listen-peer-urls=http://127.0.0.1:{}", peer_port(i)),
                format!(
                    "--initial-advertise-peer-urls=http://127.0.0.1:{}",
                    peer_port(i)
                ),
                format!("--initial-cluster={initial_cluster}"),
                format!("--peer-dial={peer_dial}"),
                format!("--initial-cluster-token={token}"),
                format!("--heartbeat-interval={}", spec.heartbeat_ms),
                format!("--election-timeout={}", spec.election_ms),
                format!("--request-timeout={}", spec.request_timeout_ms),
                format!("--log-level={}", spec.log_level),
            ];
            args.extend(spec.flags.iter().cloned());
            args.extend(
                spec.member_flags
                    .iter()
                    .filter(|(m, _)| *m == i)
                    .map(|(_, f)| f.clone()),
            );
            members.push(Member::new(
                name,
                client_port(i),
                peer_port(i),
                dir,
                spec.binary.clone(),
                args,
            ));
        }
        let mut cluster = Cluster {
            members,
            links,
            ids: vec![None; n],
            dir: dir.to_path_buf(),
        };
        for m in &mut cluster.members {
            m.spawn()?;
        }
        Ok(cluster)
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    pub fn endpoint(&self, i: usize) -> String {
        self.members[i].endpoint()
    }

    pub fn link(&self, from: usize, to: usize) -> &Link {
        self.links[from][to]
            .as_ref()
            .expect("no link from a member to itself")
    }

    pub fn set_link(&self, from: usize, to: usize, mode: LinkMode) {
        self.link(from, to).set(mode);
    }

    pub fn reset_link(&self, from: usize, to: usize) {
        self.link(from, to).reset();
    }

    /// Every link back to [`LinkMode::Pass`], every paused member resumed, every killed one
    /// restarted.
    pub fn heal_all(&mut self) -> std::io::Result<()> {
        for row in &self.links {
            for link in row.iter().flatten() {
                link.set(LinkMode::Pass);
            }
        }
        for m in &mut self.members {
            m.resume();
            if !m.is_running() {
                m.spawn()?;
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

    /// The member that every answering member names as leader and that says so itself
    /// (members that do not answer in time are left out), if any.
    pub async fn leader(&mut self) -> Option<usize> {
        let mut views = Vec::new();
        for i in 0..self.len() {
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
        (self_view && 2 * agree > self.len()).then_some(index)
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

    /// Every exit of a member we did not cause: (name, exit status).
    pub fn crashes(&mut self) -> Vec<(String, String)> {
        let mut all = Vec::new();
        for m in &mut self.members {
            all.extend(m.crashes.iter().map(|c| (m.name.clone(), c.clone())));
            if let Some(status) = m.exited_on_its_own() {
                all.push((
                    m.name.clone(),
                    format!("{status}; log ends: {}", m.log_tail(1)),
                ));
            }
        }
        all
    }

    /// Kills every member (the proxies go with the cluster).
    pub fn shutdown(&mut self) {
        for m in &mut self.members {
            m.kill();
        }
    }
}
