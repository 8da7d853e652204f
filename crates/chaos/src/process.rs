//! One `synod` member as an OS process: start, kill -9, SIGSTOP/SIGCONT, restart with the
//! same flags and data directory.

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

#[derive(Debug)]
pub struct Member {
    pub name: String,
    pub client_port: u16,
    pub peer_port: u16,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    binary: PathBuf,
    args: Vec<String>,
    child: Option<Child>,
    paused: bool,
    /// Times this member was started (restarts included).
    pub starts: u64,
    /// Exits we did not cause (a crash is a finding), as found when restarting.
    pub crashes: Vec<String>,
}

impl Member {
    pub fn new(
        name: String,
        client_port: u16,
        peer_port: u16,
        dir: &std::path::Path,
        binary: PathBuf,
        args: Vec<String>,
    ) -> Member {
        Member {
            data_dir: dir.join(&name),
            log: dir.join(format!("{name}.log")),
            name,
            client_port,
            peer_port,
            binary,
            args,
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

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    pub fn spawn(&mut self) -> std::io::Result<()> {
        if self.is_running() {
            return Ok(());
        }
        if let Some(status) = self.exited_on_its_own() {
            self.crashes
                .push(format!("{status}; log ends: {}", self.log_tail(1)));
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let child = Command::new(&self.binary)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
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
        if let Some(pid) = self.pid() {
            if !self.paused && kill(pid, Signal::SIGSTOP).is_ok() {
                self.paused = true;
            }
        }
    }

    pub fn resume(&mut self) {
        if let Some(pid) = self.pid() {
            if self.paused && kill(pid, Signal::SIGCONT).is_ok() {
                self.paused = false;
            }
        }
    }

    fn pid(&self) -> Option<Pid> {
        self.child.as_ref().map(|c| Pid::from_raw(c.id() as i32))
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

    /// A member that exited by itself (not killed by us) is a finding: it crashed.
    pub fn exited_on_its_own(&mut self) -> Option<std::process::ExitStatus> {
        match &mut self.child {
            Some(c) => c.try_wait().ok().flatten(),
            None => None,
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

    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.kill();
    }
}
