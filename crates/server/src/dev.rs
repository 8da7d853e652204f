//! `synod dev`: a 3-member cluster on loopback, as three OS processes of this binary, so it
//! behaves like a real deployment (a kill -9 of one member is a real crash).

use crate::cli::DevArgs;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::fmt;
use std::fs;
use std::io;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};

const NAMES: [&str; 3] = ["s1", "s2", "s3"];

/// How long members get to stop after SIGTERM before they are killed.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Why `synod dev` could not start its cluster, or stopped with an error.
#[derive(Debug)]
pub enum DevError {
    /// `--client-ports` names another number of ports than there are members.
    ClientPortCount {
        given: usize,
    },
    /// A client port leaves no room for its peer port (client port + 1).
    ClientPortRange,
    CreateDir {
        dir: PathBuf,
        source: io::Error,
    },
    OwnBinary(io::Error),
    OpenLog {
        path: PathBuf,
        source: io::Error,
    },
    Spawn {
        exe: PathBuf,
        source: io::Error,
    },
    /// A member exited with an error (`status`, as the OS reports it).
    MemberExited {
        name: String,
        status: String,
    },
}

impl fmt::Display for DevError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DevError::ClientPortCount { given } => {
                write!(f, "--client-ports: give {} ports, got {given}", NAMES.len())
            }
            DevError::ClientPortRange => f.write_str(
                "--client-ports: ports must be in 1..65534 (peer port = client port + 1)",
            ),
            DevError::CreateDir { dir, source } => {
                write!(f, "cannot create {}: {source}", dir.display())
            }
            DevError::OwnBinary(e) => write!(f, "cannot find my own binary: {e}"),
            DevError::OpenLog { path, source } => {
                write!(f, "cannot open {}: {source}", path.display())
            }
            DevError::Spawn { exe, source } => {
                write!(f, "cannot start {}: {source}", exe.display())
            }
            DevError::MemberExited { name, status } => {
                write!(
                    f,
                    "member {name} exited unexpectedly ({status}); see its log"
                )
            }
        }
    }
}

impl std::error::Error for DevError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DevError::CreateDir { source, .. }
            | DevError::OpenLog { source, .. }
            | DevError::Spawn { source, .. }
            | DevError::OwnBinary(source) => Some(source),
            DevError::ClientPortCount { .. }
            | DevError::ClientPortRange
            | DevError::MemberExited { .. } => None,
        }
    }
}

pub async fn run(args: DevArgs) -> Result<(), DevError> {
    if args.client_ports.len() != NAMES.len() {
        return Err(DevError::ClientPortCount {
            given: args.client_ports.len(),
        });
    }
    if args.client_ports.iter().any(|&p| p == 0 || p == u16::MAX) {
        return Err(DevError::ClientPortRange);
    }
    let dir = match args.data_dir {
        Some(dir) => dir,
        None => std::env::temp_dir().join(format!("synod-dev-{}", std::process::id())),
    };
    fs::create_dir_all(&dir).map_err(|source| DevError::CreateDir {
        dir: dir.clone(),
        source,
    })?;
    let exe = std::env::current_exe().map_err(DevError::OwnBinary)?;

    let peer_url = |i: usize| format!("http://127.0.0.1:{}", args.client_ports[i] + 1);
    let client_url = |i: usize| format!("http://127.0.0.1:{}", args.client_ports[i]);
    let initial_cluster = NAMES
        .iter()
        .enumerate()
        .map(|(i, n)| format!("{n}={}", peer_url(i)))
        .collect::<Vec<_>>()
        .join(",");

    let mut children = Vec::new();
    for (i, name) in NAMES.iter().enumerate() {
        let log_path = dir.join(format!("{name}.log"));
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .and_then(|log| Ok((log.try_clone()?, log)))
            .map_err(|source| DevError::OpenLog {
                path: log_path.clone(),
                source,
            })?;
        let (log_err, log) = log;
        let child = Command::new(&exe)
            .arg(format!("--name={name}"))
            .arg(format!("--data-dir={}", dir.join(name).display()))
            .arg(format!("--listen-client-urls={}", client_url(i)))
            .arg(format!("--advertise-client-urls={}", client_url(i)))
            .arg(format!("--listen-peer-urls={}", peer_url(i)))
            .arg(format!("--initial-advertise-peer-urls={}", peer_url(i)))
            .arg(format!("--initial-cluster={initial_cluster}"))
            .arg("--initial-cluster-token=synod-dev")
            .args(&args.member_flags)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| DevError::Spawn {
                exe: exe.clone(),
                source,
            })?;
        children.push((name.to_string(), child, log_path));
    }

    let endpoints = (0..NAMES.len())
        .map(|i| format!("127.0.0.1:{}", args.client_ports[i]))
        .collect::<Vec<_>>()
        .join(",");
    println!(
        "synod dev: 3 members running, data and logs under {}",
        dir.display()
    );
    for (i, (name, child, log)) in children.iter().enumerate() {
        println!(
            "  {name}: client {}  peer {}  pid {}  log {}",
            client_url(i),
            peer_url(i),
            child.id().map_or("?".into(), |p| p.to_string()),
            log.display()
        );
    }
    println!();
    println!("try:");
    println!("  export ETCDCTL_API=3 ENDPOINTS={endpoints}");
    println!("  etcdctl --endpoints=$ENDPOINTS put greeting hello");
    println!("  etcdctl --endpoints=$ENDPOINTS get greeting");
    println!("  etcdctl --endpoints=$ENDPOINTS endpoint status -w table");
    println!();
    println!(
        "Ctrl-C (or SIGTERM) stops the cluster (the data stays in {}).",
        dir.display()
    );

    let exited = wait_failed_exit(&mut children);
    let outcome = tokio::select! {
        _ = crate::stop_signal() => Ok(()),
        (name, status) = exited => Err(DevError::MemberExited { name, status }),
    };
    println!("stopping...");
    stop_all(&mut children).await;
    println!("stopped");
    outcome
}

/// Resolves when a child fails, with its name and exit status. A member that exits cleanly
/// on its own was removed from the cluster (`etcdctl member remove`): the others go on.
async fn wait_failed_exit(children: &mut [(String, Child, PathBuf)]) -> (String, String) {
    let mut gone = vec![false; children.len()];
    loop {
        for (i, (name, child, _)) in children.iter_mut().enumerate() {
            if gone[i] {
                continue;
            }
            match child.try_wait() {
                Ok(Some(status)) if status.success() => {
                    println!("{name} stopped on its own (removed from the cluster)");
                    gone[i] = true;
                }
                Ok(Some(status)) => return (name.clone(), status.to_string()),
                _ => {}
            }
        }
        if gone.iter().all(|&g| g) {
            return ("every member".into(), "all removed".into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn stop_all(children: &mut [(String, Child, PathBuf)]) {
    for (_, child, _) in children.iter() {
        if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
            // SIGTERM lets a member finish its in-flight write and exit cleanly.
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
    }
    for (name, child, _) in children.iter_mut() {
        if tokio::time::timeout(STOP_GRACE, child.wait())
            .await
            .is_err()
        {
            eprintln!("{name} did not stop in {STOP_GRACE:?}; killing it");
            let _ = child.kill().await;
        }
    }
}
