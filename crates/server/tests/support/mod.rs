//! A real cluster of `synod` processes on loopback, for end-to-end tests.

#![allow(dead_code)] // each test binary uses part of it

use etcd_client::{Client, ConnectOptions};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const HEARTBEAT_MS: u64 = 20;
pub const ELECTION_MS: u64 = 200;

/// Free loopback ports: bind port 0, note it, let it go. Another process could take one in
/// between; tests would then fail loudly at bind, never silently.
pub fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind a free port"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("bound").port())
        .collect()
}

#[derive(Debug)]
pub struct Member {
    pub name: String,
    pub client_port: u16,
    pub peer_port: u16,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    child: Option<Child>,
    /// A member that joined later: its own `--initial-cluster` and
    /// `--initial-cluster-state existing`.
    joined: Option<String>,
}

impl Member {
    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }

    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

#[derive(Debug)]
pub struct Cluster {
    pub members: Vec<Member>,
    initial_cluster: String,
    /// Unique per cluster, so that clusters of tests running side by side refuse each other
    /// should one reuse a port another just freed.
    token: String,
    _dir: tempfile::TempDir,
    extra_flags: Vec<String>,
}

impl Cluster {
    pub fn start(n: usize) -> Cluster {
        Cluster::start_with(n, &[])
    }

    pub fn start_with(n: usize, extra_flags: &[&str]) -> Cluster {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let ports = free_ports(2 * n);
        let members: Vec<Member> = (0..n)
            .map(|i| Member {
                name: format!("m{}", i + 1),
                client_port: ports[2 * i],
                peer_port: ports[2 * i + 1],
                data_dir: dir.path().join(format!("m{}", i + 1)),
                log: dir.path().join(format!("m{}.log", i + 1)),
                child: None,
                joined: None,
            })
            .collect();
        let initial_cluster = members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port))
            .collect::<Vec<_>>()
            .join(",");
        let token = format!("e2e-{}", ports[0]);
        let mut cluster = Cluster {
            members,
            initial_cluster,
            token,
            _dir: dir,
            extra_flags: extra_flags.iter().map(|s| s.to_string()).collect(),
        };
        for i in 0..n {
            cluster.spawn(i);
        }
        cluster
    }

    pub fn spawn(&mut self, i: usize) {
        let m = &mut self.members[i];
        assert!(
            m.child.is_none() || !m.is_running(),
            "{} is running",
            m.name
        );
        let (initial_cluster, state) = match &m.joined {
            Some(c) => (c.clone(), "existing"),
            None => (self.initial_cluster.clone(), "new"),
        };
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&m.log)
            .expect("open the member's log");
        let child = Command::new(env!("CARGO_BIN_EXE_synod"))
            .arg(format!("--name={}", m.name))
            .arg(format!("--data-dir={}", m.data_dir.display()))
            .arg(format!(
                "--listen-client-urls=http://127.0.0.1:{}",
                m.client_port
            ))
            .arg(format!(
                "--advertise-client-urls=http://127.0.0.1:{}",
                m.client_port
            ))
            .arg(format!(
                "--listen-peer-urls=http://127.0.0.1:{}",
                m.peer_port
            ))
            .arg(format!(
                "--initial-advertise-peer-urls=http://127.0.0.1:{}",
                m.peer_port
            ))
            .arg(format!("--initial-cluster={initial_cluster}"))
            .arg(format!("--initial-cluster-state={state}"))
            .arg(format!("--initial-cluster-token={}", self.token))
            .arg(format!("--heartbeat-interval={HEARTBEAT_MS}"))
            .arg(format!("--election-timeout={ELECTION_MS}"))
            .arg("--log-level=info,synod_server=debug")
            .args(&self.extra_flags)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log handle"))
            .stderr(log)
            .spawn()
            .expect("start synod");
        m.child = Some(child);
    }

    /// kill -9.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, and wait for a clean exit.
    pub fn stop(&mut self, i: usize) -> std::process::ExitStatus {
        let c = self.members[i].child.as_mut().expect("running");
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = c.try_wait() {
                self.members[i].child = None;
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not stop",
                self.members[i].name
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A new member's name and peer URL, not started: add it with `etcdctl member add` (or
    /// the client) first, then `spawn` it. It joins with `--initial-cluster-state existing`
    /// and an `--initial-cluster` naming the members given plus itself, as etcd documents.
    pub fn prepare_join(&mut self, name: &str, peers: &[usize]) -> usize {
        let ports = free_ports(2);
        let dir = self._dir.path();
        let mut initial: Vec<String> = peers
            .iter()
            .map(|&i| {
                let m = &self.members[i];
                format!("{}=http://127.0.0.1:{}", m.name, m.peer_port)
            })
            .collect();
        initial.push(format!("{name}=http://127.0.0.1:{}", ports[1]));
        self.members.push(Member {
            name: name.to_string(),
            client_port: ports[0],
            peer_port: ports[1],
            data_dir: dir.join(name),
            log: dir.join(format!("{name}.log")),
            child: None,
            joined: Some(initial.join(",")),
        });
        self.members.len() - 1
    }

    pub fn peer_url(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.members[i].peer_port)
    }

    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(Member::endpoint).collect()
    }

    pub fn log_of(&self, i: usize) -> String {
        std::fs::read_to_string(&self.members[i].log).unwrap_or_default()
    }

    /// Dumps every member's log (call when a test fails).
    pub fn dump_logs(&self) {
        for (i, m) in self.members.iter().enumerate() {
            eprintln!(
                "===== {} ({}) =====\n{}",
                m.name,
                m.log.display(),
                tail(&self.log_of(i), 80)
            );
        }
    }

    pub fn data_dir(&self, i: usize) -> &Path {
        &self.members[i].data_dir
    }
}

fn tail(s: &str, lines: usize) -> String {
    let all: Vec<&str> = s.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.dump_logs();
        }
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }
}

pub async fn client(endpoints: &[String]) -> Client {
    let options = ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(2))
        .with_timeout(Duration::from_secs(5));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match Client::connect(endpoints, Some(options.clone())).await {
            Ok(c) => return c,
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "cannot connect to {endpoints:?}: {e}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Waits until some member reports a leader that every running member agrees on; returns
/// the leader's index.
pub async fn wait_leader(cluster: &mut Cluster, within: Duration) -> usize {
    let deadline = Instant::now() + within;
    loop {
        let mut seen = Vec::new();
        for i in 0..cluster.members.len() {
            if !cluster.members[i].is_running() {
                continue;
            }
            let ep = cluster.members[i].endpoint();
            if let Ok(mut c) = Client::connect(
                [ep],
                Some(ConnectOptions::new().with_timeout(Duration::from_millis(500))),
            )
            .await
            {
                if let Ok(s) = c.status().await {
                    seen.push(s.leader());
                }
            }
        }
        let running = (0..cluster.members.len())
            .filter(|&i| cluster.members[i].is_running())
            .count();
        if seen.len() == running && !seen.is_empty() && seen.iter().all(|&l| l != 0 && l == seen[0])
        {
            let leader_id = seen[0];
            let mut statuses = Vec::new();
            for i in 0..cluster.members.len() {
                if !cluster.members[i].is_running() {
                    continue;
                }
                let mut c = client(&[cluster.members[i].endpoint()]).await;
                if let Ok(s) = c.status().await {
                    if s.header().map(|h| h.member_id()) == Some(leader_id) {
                        statuses.push(i);
                    }
                }
            }
            if let Some(&i) = statuses.first() {
                return i;
            }
        }
        if Instant::now() >= deadline {
            cluster.dump_logs();
            panic!("no agreed leader within {within:?} (saw {seen:x?})");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A put that retries while the cluster is between leaders (errors whose outcome is
/// unknown: a retried put of the same key and value is idempotent, so that is safe here).
/// Machines running these tests are often loaded, and elections then happen.
pub async fn put_retry(c: &mut Client, key: String, value: String) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match c.put(key.clone(), value.clone(), None).await {
            Ok(_) => return,
            Err(e) => {
                let transient = matches!(&e, etcd_client::Error::GRpcStatus(s)
                    if s.code() == tonic::Code::Unavailable
                        || s.code() == tonic::Code::ResourceExhausted);
                assert!(transient && Instant::now() < deadline, "put {key}: {e}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

/// GET over HTTP/1.1 on a fresh connection; the whole answer (status line, headers, body).
pub fn http_get(endpoint: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(endpoint).expect("connect for HTTP");
    s.set_read_timeout(Some(Duration::from_secs(5))).ok();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {endpoint}\r\nConnection: close\r\n\r\n"
    )
    .expect("send the HTTP request");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}
