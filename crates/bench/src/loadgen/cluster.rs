//! 3-member clusters of etcd or Synod on loopback, as child processes. Both take the same
//! flags (Synod accepts etcd's names), and neither is told anything about syncing: each runs
//! with its own durable default (etcd fsyncs its WAL on every commit, Synod on every batch).
//!
//! A [`Cluster`] (the test kit's underneath) kills its processes and removes its data when
//! dropped, so an error, a panic or Ctrl-C (turned into an error by the caller) never leaves
//! servers behind.

use clap::ValueEnum;
use etcd_client::{Client, ConnectOptions};
use serde::Serialize;
use std::fmt;
use std::ops::{Deref, DerefMut};
use std::path::Path;
use std::time::{Duration, Instant};
use synod_testkit::ClusterSpec;

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

/// The test kit's cluster (a data directory, a log and free ports per member) running etcd or
/// Synod, with what the benchmarks need on top: waiting until it serves a write, timed stops.
#[derive(Debug)]
pub struct Cluster {
    pub system: System,
    kit: synod_testkit::Cluster,
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
        let mut spec = ClusterSpec::new(binary.to_path_buf(), MEMBERS);
        spec.flags = extra_flags.to_vec();
        // Unique per run, so that a member of an earlier run that somehow survived refuses
        // this cluster instead of joining it.
        spec.token_prefix = format!("synod-bench-{system}");
        spec.dir_in = Some(data_parent.to_path_buf());
        spec.dir_prefix = format!("{system}-");
        spec.log_dir = Some(log_dir.to_path_buf());
        spec.log_prefix = format!("{system}-");
        let kit = synod_testkit::Cluster::start(&spec)
            .map_err(|e| format!("cannot start the {system} cluster: {e}"))?;
        Ok(Cluster { system, kit })
    }

    /// CPU seconds all members have used so far; `None` if one is gone.
    pub fn cpu_seconds(pids: &[u32]) -> Option<f64> {
        pids.iter().map(|&pid| super::sys::cpu_seconds(pid)).sum()
    }

    /// An error naming the first member that has exited, with the end of its log.
    pub fn check_running(&mut self) -> Result<(), String> {
        let system = self.system;
        self.kit
            .check_running()
            .map_err(|e| format!("{system} {e}"))
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
        self.kit
            .stop_together(which, timeout)
            .map_err(|e| e.to_string())
    }

    /// Starts member `i` again (after [`Cluster::terminate`]) with the same flags and data
    /// directory; its log goes on in the same file. Returns the moment just before the
    /// process was spawned.
    pub fn restart(&mut self, i: usize) -> Result<Instant, String> {
        let at = Instant::now();
        self.kit.spawn(i).map_err(|e| e.to_string())?;
        Ok(at)
    }

    /// Kills every member (SIGKILL: the data is thrown away anyway) and waits for them.
    pub fn stop(&mut self) {
        self.kit.kill_all();
    }
}

impl Deref for Cluster {
    type Target = synod_testkit::Cluster;

    fn deref(&self) -> &synod_testkit::Cluster {
        &self.kit
    }
}

impl DerefMut for Cluster {
    fn deref_mut(&mut self) -> &mut synod_testkit::Cluster {
        &mut self.kit
    }
}
