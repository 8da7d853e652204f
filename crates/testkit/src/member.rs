//! One member as an OS process on loopback: its ports, data directory and log, and the
//! process itself: start, kill -9, SIGSTOP/SIGCONT, SIGTERM, start again with the same flags
//! and data directory.

use crate::error::HarnessError;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How often a stopping member is checked for its exit.
const EXIT_POLL: Duration = Duration::from_millis(5);

#[derive(Debug)]
pub struct Member {
    pub name: String,
    pub client_port: u16,
    pub peer_port: u16,
    pub data_dir: PathBuf,
    /// stdout and stderr of every start: created by the first, appended to by the others.
    pub log: PathBuf,
    binary: PathBuf,
    args: Vec<String>,
    child: Option<Child>,
    paused: bool,
    /// Times this member was started (restarts included).
    pub starts: u64,
    /// Exits we did not cause (a crash is a finding), as found when starting it again.
    pub crashes: Vec<String>,
}

impl Member {
    /// A member not started yet, with no flags (see [`Member::set_args`]); its data directory
    /// is `<dir>/<name>`.
    pub fn new(
        name: String,
        client_port: u16,
        peer_port: u16,
        dir: &Path,
        log: PathBuf,
        binary: PathBuf,
    ) -> Member {
        Member {
            data_dir: dir.join(&name),
            name,
            client_port,
            peer_port,
            log,
            binary,
            args: Vec::new(),
            child: None,
            paused: false,
            starts: 0,
            crashes: Vec::new(),
        }
    }

    /// The flags of every later start.
    pub fn set_args(&mut self, args: Vec<String>) {
        self.args = args;
    }

    pub fn args(&self) -> &[String] {
        &self.args
    }

    /// `127.0.0.1:<client port>`, as etcd clients take it.
    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }

    pub fn client_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// The URL its peers listener binds (what it advertises, unless told otherwise).
    pub fn peer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.peer_port)
    }

    /// etcd's flags naming this member, its data directory and its URLs, advertising
    /// `advertised_peer_url` to its peers and joining the cluster `token` (the cluster's
    /// composition and state are the caller's to add).
    pub fn identity_flags(&self, advertised_peer_url: &str, token: &str) -> Vec<String> {
        let client = self.client_url();
        vec![
            format!("--name={}", self.name),
            format!("--data-dir={}", self.data_dir.display()),
            format!("--listen-client-urls={client}"),
            format!("--advertise-client-urls={client}"),
            format!("--listen-peer-urls={}", self.peer_url()),
            format!("--initial-advertise-peer-urls={advertised_peer_url}"),
            format!("--initial-cluster-token={token}"),
        ]
    }

    /// Starts the process; an earlier process that exited by itself is recorded in
    /// [`Member::crashes`]. Errs if it runs.
    pub fn spawn(&mut self) -> Result<(), HarnessError> {
        if self.is_running() {
            return Err(HarnessError::Running {
                member: self.name.clone(),
                running: true,
            });
        }
        if let Some(status) = self.exited_on_its_own() {
            self.crashes
                .push(format!("{status}; log ends: {}", self.log_tail(1)));
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .append(self.starts > 0)
            .truncate(self.starts == 0)
            .open(&self.log)
            .map_err(|e| HarnessError::io(format!("opening {}", self.log.display()), e))?;
        let err = log
            .try_clone()
            .map_err(|e| HarnessError::io(format!("opening {}", self.log.display()), e))?;
        let child = Command::new(&self.binary)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .map_err(|e| HarnessError::io(format!("starting {}", self.binary.display()), e))?;
        self.child = Some(child);
        self.paused = false;
        self.starts += 1;
        Ok(())
    }

    /// kill -9 (a stopped process dies too), and reap it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.paused = false;
    }

    /// SIGSTOP: the process keeps its sockets but handles nothing, as in a long GC pause or
    /// a VM migration.
    pub fn pause(&mut self) {
        if !self.paused && self.signal(Signal::SIGSTOP) {
            self.paused = true;
        }
    }

    pub fn resume(&mut self) {
        if self.paused && self.signal(Signal::SIGCONT) {
            self.paused = false;
        }
    }

    /// SIGTERM, as an operator stops a member; see [`Member::wait_exit`].
    pub fn terminate(&mut self) -> Result<(), HarnessError> {
        self.resume();
        if self.signal(Signal::SIGTERM) {
            Ok(())
        } else {
            Err(HarnessError::Running {
                member: self.name.clone(),
                running: false,
            })
        }
    }

    /// Waits until the process exits, at most until `deadline`; past it kills the process
    /// and errs (`within` is what the error reports).
    pub fn wait_exit(
        &mut self,
        deadline: Instant,
        within: Duration,
    ) -> Result<ExitStatus, HarnessError> {
        let Some(child) = self.child.as_mut() else {
            return Err(HarnessError::Running {
                member: self.name.clone(),
                running: false,
            });
        };
        loop {
            match child.try_wait() {
                Ok(Some(status)) => {
                    self.child = None;
                    return Ok(status);
                }
                Ok(None) if Instant::now() < deadline => std::thread::sleep(EXIT_POLL),
                Ok(None) => {
                    self.kill();
                    return Err(HarnessError::StopTimeout {
                        member: self.name.clone(),
                        within,
                    });
                }
                Err(e) => {
                    return Err(HarnessError::io(format!("waiting for {}", self.name), e));
                }
            }
        }
    }

    /// SIGTERM, and wait up to `within` for the exit (then kill -9 and err).
    pub fn stop(&mut self, within: Duration) -> Result<ExitStatus, HarnessError> {
        self.terminate()?;
        self.wait_exit(Instant::now() + within, within)
    }

    fn signal(&self, signal: Signal) -> bool {
        self.pid()
            .is_some_and(|pid| kill(Pid::from_raw(pid as i32), signal).is_ok())
    }

    /// The process id while it has a process (running, or exited and not yet reaped).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    pub fn is_paused(&self) -> bool {
        self.paused
    }

    /// Running and not paused: it can answer.
    pub fn is_serving(&mut self) -> bool {
        self.is_running() && !self.paused
    }

    /// How its process ended, if it exited by itself (we reap the ones we kill or stop).
    pub fn exited_on_its_own(&mut self) -> Option<ExitStatus> {
        match &mut self.child {
            Some(c) => c.try_wait().ok().flatten(),
            None => None,
        }
    }

    /// An error with the end of its log if its process exited by itself.
    pub fn check_running(&mut self) -> Result<(), HarnessError> {
        match self.exited_on_its_own() {
            Some(status) => Err(HarnessError::Exited {
                member: self.name.clone(),
                status: status.to_string(),
                log_tail: self.log_tail(20),
            }),
            None => Ok(()),
        }
    }

    /// Whether it was ever started.
    pub fn started(&self) -> bool {
        self.starts > 0
    }

    /// Exited by itself with status 0: a removed member that stopped once the change was in
    /// force (a crash, an assertion or a disk error exits otherwise).
    pub fn exited_cleanly(&mut self) -> bool {
        self.exited_on_its_own().is_some_and(|s| s.success())
    }

    /// Its whole log so far (empty if there is none yet).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn log_tail(&self, lines: usize) -> String {
        let text = self.log_text();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sleeper(dir: &Path) -> Member {
        let mut m = Member::new(
            "s1".into(),
            1,
            2,
            dir,
            dir.join("s1.log"),
            PathBuf::from("/bin/sh"),
        );
        m.set_args(vec!["-c".into(), "echo started; exec sleep 30".into()]);
        m
    }

    #[test]
    fn a_member_is_paused_stopped_and_started_again() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = sleeper(dir.path());
        assert!(!m.started() && !m.is_running());
        m.spawn().unwrap();
        assert!(m.spawn().is_err(), "it runs");
        m.pause();
        assert!(m.is_paused() && !m.is_serving());
        // SIGTERM reaches a paused member too (it is resumed first).
        let status = m.stop(Duration::from_secs(10)).unwrap();
        assert!(!status.success());
        assert!(!m.is_running() && m.crashes.is_empty());
        m.spawn().unwrap();
        m.kill();
        assert_eq!(m.starts, 2);
        // The log of the first start is kept: later starts append.
        let deadline = Instant::now() + Duration::from_secs(10);
        while m.log_text().lines().count() < 2 && Instant::now() < deadline {
            m.spawn().unwrap();
            std::thread::sleep(Duration::from_millis(50));
            m.kill();
        }
        assert!(m.log_text().lines().count() >= 2, "{}", m.log_text());
    }

    #[test]
    fn an_exit_we_did_not_cause_is_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = sleeper(dir.path());
        m.set_args(vec!["-c".into(), "echo dying; exit 3".into()]);
        m.spawn().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while m.exited_on_its_own().is_none() && Instant::now() < deadline {
            std::thread::sleep(EXIT_POLL);
        }
        let e = m.check_running().unwrap_err().to_string();
        assert!(e.contains("dying"), "{e}");
        m.spawn().unwrap();
        assert_eq!(m.crashes.len(), 1, "{:?}", m.crashes);
    }
}
