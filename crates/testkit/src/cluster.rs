//! A cluster of member processes on loopback, started with etcd's flags (Synod accepts
//! etcd's names, so the same code runs either): free ports, a data directory each under one
//! directory that goes with the cluster, a log each, and a cluster token unique to it, so that
//! clusters started side by side refuse each other should one reuse a port another just
//! freed.
//!
//! The cluster kills its members when dropped, so an error or a panic never leaves servers
//! behind; dropped while a thread panics, it first prints the end of every member's log.

use crate::error::HarnessError;
use crate::member::Member;
use crate::ports::free_ports;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::{Duration, Instant};

/// Lines of each log printed when a test fails.
const DUMP_LINES_MAX: usize = 80;

/// What to start.
#[derive(Clone, Debug)]
pub struct ClusterSpec {
    pub binary: PathBuf,
    pub members: usize,
    /// Flags for every member, after the ones naming it and the cluster.
    pub flags: Vec<String>,
    /// The cluster token is this followed by a number unique to the cluster.
    pub token_prefix: String,
    /// The cluster's directory is a new directory in here (by default, the system's
    /// temporary directory), named with `dir_prefix`.
    pub dir_in: Option<PathBuf>,
    pub dir_prefix: String,
    /// Where the logs go (by default, the cluster's directory): `<log_prefix><name>.log`.
    pub log_dir: Option<PathBuf>,
    pub log_prefix: String,
}

impl ClusterSpec {
    pub fn new(binary: PathBuf, members: usize) -> ClusterSpec {
        ClusterSpec {
            binary,
            members,
            flags: Vec::new(),
            token_prefix: "synod-testkit".into(),
            dir_in: None,
            dir_prefix: "synod-cluster-".into(),
            log_dir: None,
            log_prefix: String::new(),
        }
    }
}

#[derive(Debug)]
pub struct Cluster {
    /// In the order they were created (`m1` is 0), members that joined later included.
    pub members: Vec<Member>,
    token: String,
    /// Removed on drop unless [`Cluster::keep_data`] took it.
    dir: Option<tempfile::TempDir>,
    dir_path: PathBuf,
    log_dir: PathBuf,
    log_prefix: String,
    binary: PathBuf,
    flags: Vec<String>,
}

impl Cluster {
    /// Creates the members and starts them all (returns at once: waiting for a leader is the
    /// caller's, with its client).
    pub fn start(spec: &ClusterSpec) -> Result<Cluster, HarnessError> {
        let parent = spec.dir_in.clone().unwrap_or_else(std::env::temp_dir);
        std::fs::create_dir_all(&parent)
            .map_err(|e| HarnessError::io(format!("creating {}", parent.display()), e))?;
        let dir = tempfile::Builder::new()
            .prefix(&spec.dir_prefix)
            .tempdir_in(&parent)
            .map_err(|e| {
                HarnessError::io(format!("creating a directory in {}", parent.display()), e)
            })?;
        let log_dir = spec
            .log_dir
            .clone()
            .unwrap_or_else(|| dir.path().to_path_buf());
        std::fs::create_dir_all(&log_dir)
            .map_err(|e| HarnessError::io(format!("creating {}", log_dir.display()), e))?;
        let n = spec.members;
        let ports = free_ports(2 * n)?;
        let mut cluster = Cluster {
            members: Vec::with_capacity(n),
            token: format!("{}-{}-{}", spec.token_prefix, std::process::id(), ports[0]),
            dir_path: dir.path().to_path_buf(),
            dir: Some(dir),
            log_dir,
            log_prefix: spec.log_prefix.clone(),
            binary: spec.binary.clone(),
            flags: spec.flags.clone(),
        };
        for i in 0..n {
            cluster.push_member(format!("m{}", i + 1), ports[2 * i], ports[2 * i + 1]);
        }
        let initial_cluster = cluster.initial_cluster(0..n);
        for i in 0..n {
            cluster.set_args(i, &initial_cluster, "new");
            cluster.members[i].spawn()?;
        }
        Ok(cluster)
    }

    fn push_member(&mut self, name: String, client_port: u16, peer_port: u16) -> usize {
        let log = self.log_dir.join(format!("{}{name}.log", self.log_prefix));
        let member = Member::new(
            name,
            client_port,
            peer_port,
            &self.dir_path,
            log,
            self.binary.clone(),
        );
        self.members.push(member);
        self.members.len() - 1
    }

    /// `--initial-cluster` naming the members `which`.
    fn initial_cluster(&self, which: impl IntoIterator<Item = usize>) -> String {
        which
            .into_iter()
            .map(|i| format!("{}={}", self.members[i].name, self.members[i].peer_url()))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn set_args(&mut self, i: usize, initial_cluster: &str, state: &str) {
        let m = &self.members[i];
        let mut args = m.identity_flags(&m.peer_url(), &self.token);
        args.push(format!("--initial-cluster={initial_cluster}"));
        args.push(format!("--initial-cluster-state={state}"));
        args.extend(self.flags.iter().cloned());
        self.members[i].set_args(args);
    }

    /// A new member, not started: add it to the cluster first (`MemberAdd`), then
    /// [`Cluster::spawn`] it. It joins with `--initial-cluster-state existing` and an
    /// `--initial-cluster` naming the members `peers` plus itself, as etcd documents.
    pub fn prepare_join(&mut self, name: &str, peers: &[usize]) -> Result<usize, HarnessError> {
        let ports = free_ports(2)?;
        let i = self.push_member(name.to_string(), ports[0], ports[1]);
        let initial = self.initial_cluster(peers.iter().copied().chain([i]));
        self.set_args(i, &initial, "existing");
        Ok(i)
    }

    /// Starts member `i` (again), with its flags and data directory.
    pub fn spawn(&mut self, i: usize) -> Result<(), HarnessError> {
        self.members[i].spawn()
    }

    /// kill -9.
    pub fn kill(&mut self, i: usize) {
        self.members[i].kill();
    }

    /// SIGTERM, and wait up to `within` for a clean exit.
    pub fn stop(&mut self, i: usize, within: Duration) -> Result<ExitStatus, HarnessError> {
        self.members[i].stop(within)
    }

    /// SIGTERM to every member of `which` at once (as an operator stopping them), then waits
    /// up to `within` for all; returns how long each took to exit.
    pub fn stop_together(
        &mut self,
        which: &[usize],
        within: Duration,
    ) -> Result<Vec<Duration>, HarnessError> {
        let started = Instant::now();
        for &i in which {
            self.members[i].terminate()?;
        }
        let mut took = Vec::with_capacity(which.len());
        for &i in which {
            self.members[i].wait_exit(started + within, within)?;
            took.push(started.elapsed());
        }
        Ok(took)
    }

    /// An error naming the first member whose process exited by itself, with its log's end.
    pub fn check_running(&mut self) -> Result<(), HarnessError> {
        self.members.iter_mut().try_for_each(Member::check_running)
    }

    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(Member::endpoint).collect()
    }

    pub fn peer_url(&self, i: usize) -> String {
        self.members[i].peer_url()
    }

    /// Process ids of the members that have a process.
    pub fn pids(&self) -> Vec<u32> {
        self.members.iter().filter_map(Member::pid).collect()
    }

    pub fn data_dir(&self, i: usize) -> &Path {
        &self.members[i].data_dir
    }

    /// The directory holding the data directories.
    pub fn dir(&self) -> &Path {
        &self.dir_path
    }

    pub fn log_of(&self, i: usize) -> String {
        self.members[i].log_text()
    }

    /// Prints the end of every member's log (for a failing test).
    pub fn dump_logs(&self) {
        for m in &self.members {
            eprintln!(
                "===== {} ({}) =====\n{}",
                m.name,
                m.log.display(),
                m.log_tail(DUMP_LINES_MAX)
            );
        }
    }

    /// Keeps the data directories after the cluster is dropped; returns where they are.
    pub fn keep_data(&mut self) -> Option<PathBuf> {
        self.dir.take().map(tempfile::TempDir::keep)
    }

    /// Kills every member (SIGKILL) and reaps it.
    pub fn kill_all(&mut self) {
        self.members.iter_mut().for_each(Member::kill);
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.dump_logs();
        }
        self.kill_all();
        // `dir` (a TempDir) removes the data directories after this.
    }
}
