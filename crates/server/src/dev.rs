//! `synod dev`: a 3-member cluster on loopback, as three OS processes of this binary, so it
//! behaves like a real deployment (a kill -9 of one member is a real crash).

use crate::cli::DevArgs;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::fs;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};

const NAMES: [&str; 3] = ["s1", "s2", "s3"];

/// How long members get to stop after SIGTERM before they are killed.
const STOP_GRACE: Duration = Duration::from_secs(5);

pub async fn run(args: DevArgs) -> Result<(), String> {
    if args.client_ports.len() != NAMES.len() {
        return Err(format!(
            "--client-ports: give {} ports, got {}",
            NAMES.len(),
            args.client_ports.len()
        ));
    }
    if args.client_ports.iter().any(|&p| p == 0 || p == u16::MAX) {
        return Err(
            "--client-ports: ports must be in 1..65534 (peer port = client port + 1)".into(),
        );
    }
    let dir = match args.data_dir {
        Some(dir) => dir,
        None => std::env::temp_dir().join(format!("synod-dev-{}", std::process::id())),
    };
    fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let exe = std::env::current_exe().map_err(|e| format!("cannot find my own binary: {e}"))?;

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
            .map_err(|e| format!("cannot open {}: {e}", log_path.display()))?;
        let log_err = log
            .try_clone()
            .map_err(|e| format!("cannot open {}: {e}", log_path.display()))?;
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
            .map_err(|e| format!("cannot start {}: {e}", exe.display()))?;
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
        (name, status) = exited => Err(format!("member {name} exited unexpectedly ({status}); see its log")),
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
