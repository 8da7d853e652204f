//! 3-member clusters of etcd or Synod on loopback, as child processes. Both take the same
//! flags (Synod accepts etcd's names), and neither is told anything about syncing: each runs
//! with its own durable default (etcd fsyncs its WAL on every commit, Synod on every batch).
//!
//! A [`Cluster`] kills its processes and removes its data when dropped, so an error, a panic
//! or Ctrl-C (turned into an error by the caller) never leaves servers behind.

use clap::ValueEnum;
use etcd_client::{Client, ConnectOptions};
use serde::Serialize;
use std::fmt;
use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum System {
    Etcd,
    Synod,
}

impl System {
    pub fn name(self) -> &'static str {
        match self {
            System::Etcd => "etcd",
            System::Synod => "synod",
        }
    }
}

impl fmt::Display for System {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

pub const MEMBERS: usize = 3;

/// Free loopback ports: bind port 0, note it, let it go. Another process could take one in
/// between; the member would then fail at bind, which [`Cluster::wait_ready`] reports.
pub fn free_ports(n: usize) -> Result<Vec<u16>, String> {
    let listeners = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("cannot find a free port: {e}"))?;
    listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("cannot find a free port: {e}"))
}

#[derive(Debug)]
pub struct Member {
    pub name: String,
    pub client_port: u16,
    pub peer_port: u16,
    pub log: PathBuf,
    /// This member's data directory (inside the cluster's).
    pub data_dir: PathBuf,
    /// Its command line after the binary, kept so that [`Cluster::restart`] can start it again.
    args: Vec<String>,
    /// How many times it has been started (the log of start n > 1 is
    /// `<system>-<name>.<n>.log`).
    starts: u32,
    child: Child,
}

impl Member {
    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

#[derive(Debug)]
pub struct Cluster {
    pub system: System,
    pub members: Vec<Member>,
    /// The members' data directories live in here; removed on drop (unless
    /// [`Cluster::keep_data`] was called).
    data: Option<tempfile::TempDir>,
    binary: PathBuf,
    log_dir: PathBuf,
}

impl Cluster {
    /// Starts the members (returns at once; see [`Cluster::wait_ready`]). Data directories go
    /// in a new directory under `data_parent`, logs to `log_dir/<system>-<name>.log`.
    pub fn start(
        system: System,
        binary: &Path,
        data_parent: &Path,
        log_dir: &Path,
        extra_flags: &[String],
    ) -> Result<Cluster, String> {
        let data = tempfile::Builder::new()
            .prefix(&format!("{system}-"))
            .tempdir_in(data_parent)
            .map_err(|e| {
                format!(
                    "cannot create a directory in {}: {e}",
                    data_parent.display()
                )
            })?;
        fs::create_dir_all(log_dir)
            .map_err(|e| format!("cannot create {}: {e}", log_dir.display()))?;
        let ports = free_ports(2 * MEMBERS)?;
        let names: Vec<String> = (1..=MEMBERS).map(|i| format!("m{i}")).collect();
        let initial_cluster = names
            .iter()
            .enumerate()
            .map(|(i, n)| format!("{n}=http://127.0.0.1:{}", ports[2 * i + 1]))
            .collect::<Vec<_>>()
            .join(",");
        // Unique per run, so that a member of an earlier run that somehow survived refuses
        // this cluster instead of joining it.
        let token = format!("synod-bench-{system}-{}", ports[0]);
        let mut cluster = Cluster {
            system,
            members: Vec::with_capacity(MEMBERS),
            data: None,
            binary: binary.to_path_buf(),
            log_dir: log_dir.to_path_buf(),
        };
        for (i, name) in names.iter().enumerate() {
            let (client_port, peer_port) = (ports[2 * i], ports[2 * i + 1]);
            let log = log_dir.join(format!("{system}-{name}.log"));
            let client_url = format!("http://127.0.0.1:{client_port}");
            let peer_url = format!("http://127.0.0.1:{peer_port}");
            let data_dir = data.path().join(name);
            let mut args = vec![
                format!("--name={name}"),
                format!("--data-dir={}", data_dir.display()),
                format!("--listen-client-urls={client_url}"),
                format!("--advertise-client-urls={client_url}"),
                format!("--listen-peer-urls={peer_url}"),
                format!("--initial-advertise-peer-urls={peer_url}"),
                format!("--initial-cluster={initial_cluster}"),
                "--initial-cluster-state=new".to_string(),
                format!("--initial-cluster-token={token}"),
            ];
            args.extend(extra_flags.iter().cloned());
            let child = spawn(binary, &args, &log)?;
            cluster.members.push(Member {
                name: name.clone(),
                client_port,
                peer_port,
                log,
                data_dir,
                args,
                starts: 1,
                child,
            });
        }
        cluster.data = Some(data);
        Ok(cluster)
    }

    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(Member::endpoint).collect()
    }

    pub fn pids(&self) -> Vec<u32> {
        self.members.iter().map(Member::pid).collect()
    }

    /// CPU seconds all members have used so far; `None` if one is gone.
    pub fn cpu_seconds(pids: &[u32]) -> Option<f64> {
        pids.iter().map(|&pid| super::sys::cpu_seconds(pid)).sum()
    }

    /// An error naming the first member that has exited, with the end of its log.
    pub fn check_running(&mut self) -> Result<(), String> {
        for m in &mut self.members {
            if let Ok(Some(status)) = m.child.try_wait() {
                return Err(format!(
                    "{} member {} exited ({status}); the end of {}:\n{}",
                    self.system,
                    m.name,
                    m.log.display(),
                    log_tail(&m.log, 20)
                ));
            }
        }
        Ok(())
    }

    /// Waits until every member reports the same leader and a write through the leader
    /// succeeds. Returns the leader's index in `members`.
    pub async fn wait_ready(&mut self, timeout: Duration) -> Result<usize, String> {
        let deadline = Instant::now() + timeout;
        let mut last_problem = String::from("no answer yet");
        while Instant::now() < deadline {
            self.check_running()?;
            match self.probe().await {
                Ok(leader) => return Ok(leader),
                Err(problem) => last_problem = problem,
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Err(format!(
            "{} cluster not ready after {timeout:?}: {last_problem}",
            self.system
        ))
    }

    async fn probe(&self) -> Result<usize, String> {
        let options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(1))
            .with_timeout(Duration::from_secs(2));
        let mut leaders = Vec::new();
        let mut ids = Vec::new();
        for m in &self.members {
            let endpoint = m.endpoint();
            let mut client = Client::connect([endpoint.as_str()], Some(options.clone()))
                .await
                .map_err(|e| format!("{}: {e}", m.name))?;
            let status = client
                .status()
                .await
                .map_err(|e| format!("{}: status: {e}", m.name))?;
            if status.leader() == 0 {
                return Err(format!("{} knows no leader", m.name));
            }
            leaders.push(status.leader());
            ids.push(status.header().map(|h| h.member_id()).unwrap_or(0));
        }
        if leaders.iter().any(|&l| l != leaders[0]) {
            return Err(format!("members disagree on the leader: {leaders:?}"));
        }
        let leader = ids.iter().position(|&id| id == leaders[0]).unwrap_or(0);
        let endpoint = self.members[leader].endpoint();
        let mut client = Client::connect([endpoint.as_str()], Some(options))
            .await
            .map_err(|e| format!("{endpoint}: {e}"))?;
        client
            .put("synod-bench/ready", "1", None)
            .await
            .map_err(|e| format!("a first write failed: {e}"))?;
        Ok(leader)
    }

    /// Stops the members numbered in `which` with SIGTERM, as an operator would (all signalled
    /// first, then waited for), allowing each up to `timeout` to exit (then kills it and says
    /// so). Returns how long each took to exit.
    pub fn terminate(
        &mut self,
        which: &[usize],
        timeout: Duration,
    ) -> Result<Vec<Duration>, String> {
        let started = Instant::now();
        for &i in which {
            let pid = self.members[i].child.id().to_string();
            // `kill` the command: the crate forbids the unsafe libc call.
            let status = Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .map_err(|e| format!("cannot run kill: {e}"))?;
            if !status.success() {
                return Err(format!("kill -TERM {pid} failed ({status})"));
            }
        }
        let mut took = Vec::with_capacity(which.len());
        for &i in which {
            let m = &mut self.members[i];
            loop {
                match m.child.try_wait() {
                    Ok(Some(_)) => break,
                    Ok(None) if started.elapsed() < timeout => {
                        std::thread::sleep(Duration::from_millis(5))
                    }
                    Ok(None) => {
                        let _ = m.child.kill();
                        let _ = m.child.wait();
                        return Err(format!(
                            "member {} did not exit within {timeout:?} of SIGTERM (killed)",
                            m.name
                        ));
                    }
                    Err(e) => return Err(format!("waiting for member {}: {e}", m.name)),
                }
            }
            took.push(started.elapsed());
        }
        Ok(took)
    }

    /// Starts member `i` again (after [`Cluster::terminate`]) with the same flags and data
    /// directory; its log goes to a new file, `<system>-<name>.<n>.log` for its n-th start.
    /// Returns the moment just before the process was spawned.
    pub fn restart(&mut self, i: usize) -> Result<(Instant, SystemTime), String> {
        let system = self.system;
        let m = &mut self.members[i];
        if let Ok(None) = m.child.try_wait() {
            return Err(format!("member {} is still running", m.name));
        }
        m.starts += 1;
        m.log = self
            .log_dir
            .join(format!("{system}-{}.{}.log", m.name, m.starts));
        let at = (Instant::now(), SystemTime::now());
        m.child = spawn(&self.binary, &m.args, &m.log)?;
        Ok(at)
    }

    /// Keeps the data directories after the cluster is dropped; returns where they are.
    pub fn keep_data(&mut self) -> Option<PathBuf> {
        self.data.take().map(tempfile::TempDir::keep)
    }

    /// Kills every member (SIGKILL: the data is thrown away anyway) and waits for them.
    pub fn stop(&mut self) {
        for m in &mut self.members {
            let _ = m.child.kill();
            let _ = m.child.wait();
        }
        self.members.clear();
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
        // `data` (a TempDir) removes the data directories after this.
    }
}

/// Starts `binary args`, stdout and stderr to a new file `log`.
fn spawn(binary: &Path, args: &[String], log: &Path) -> Result<Child, String> {
    let out = fs::File::create(log).map_err(|e| format!("cannot create {}: {e}", log.display()))?;
    let err = out
        .try_clone()
        .map_err(|e| format!("cannot open {}: {e}", log.display()))?;
    Command::new(binary)
        .args(args)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", binary.display()))
}

/// The last `lines` lines of a log file.
pub fn log_tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
