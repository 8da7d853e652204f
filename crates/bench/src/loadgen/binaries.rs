//! The binaries `compare` and `restart` run: etcd (by default the release the project's etcd
//! behaviour was checked against, fetched by `scripts/fetch-etcd.sh`; Debian's on request)
//! and synod (given, or built from this workspace).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use synod_testkit::Tool;

fn is_root() -> bool {
    // Effective uid from /proc (the crate forbids the unsafe geteuid call).
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// The etcd to compare with: --etcd-bin; with --etcd-debian, Debian's (see
/// [`debian_etcd`]); else $ETCD_BIN, else etcd [`ETCD_VERSION`] from
/// `scripts/fetch-etcd.sh`.
pub fn ensure_etcd(given: Option<&Path>, debian: bool) -> Result<PathBuf, String> {
    if let Some(path) = given {
        return checked(path.to_path_buf());
    }
    if debian {
        return debian_etcd();
    }
    if let Some(path) = std::env::var_os(Tool::ETCD.env_override) {
        return checked(path.into());
    }
    fetched_etcd()
}

/// The etcd release the project's etcd behaviour was verified against (docs/design/
/// WATCH_LEASE.md 1.8), which `scripts/fetch-etcd.sh` fetches by default.
pub const ETCD_VERSION: &str = "3.5.30";

/// etcd [`ETCD_VERSION`] as `scripts/fetch-etcd.sh` unpacks it (to $ETCD_DIR, else
/// /work/etcd-3.5): the script only prints the path when it is there already, and otherwise
/// downloads the Debian packages of that version and unpacks them without installing.
fn fetched_etcd() -> Result<PathBuf, String> {
    let script = workspace().join("scripts/fetch-etcd.sh");
    let output = Command::new("bash")
        .arg(&script)
        .env("ETCD_VERSION", ETCD_VERSION)
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    if !output.status.success() {
        return Err(format!(
            "{} failed ({}); give --etcd-bin, or --etcd-debian for Debian's etcd",
            script.display(),
            output.status
        ));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let path = stdout
        .lines()
        .find_map(|l| l.strip_prefix("ETCD="))
        .ok_or_else(|| format!("{} named no ETCD= binary", script.display()))?;
    checked(PathBuf::from(path.trim()))
}

/// Debian's etcd: as the test kit finds it ($ETCD_BIN, PATH, /usr/bin); else installs
/// Debian's etcd-server package.
fn debian_etcd() -> Result<PathBuf, String> {
    let found = || Tool::ETCD.find().ok();
    if let Some(path) = found() {
        return checked(path);
    }
    eprintln!("etcd is missing: installing Debian's etcd-server");
    let apt = |args: &[&str]| -> Result<(), String> {
        let mut command = if is_root() {
            Command::new("apt-get")
        } else {
            let mut c = Command::new("sudo");
            c.arg("apt-get");
            c
        };
        let status = command
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .map_err(|e| format!("cannot run apt-get: {e}"))?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("apt-get {} failed ({status})", args.join(" ")))
        }
    };
    // A fresh machine may have no package lists yet: update and retry once.
    if apt(&["install", "-y", "-q", "etcd-server"]).is_err() {
        apt(&["update", "-q"])?;
        apt(&["install", "-y", "-q", "etcd-server"])?;
    }
    match found() {
        Some(path) => checked(path),
        None => Err("etcd-server installed, but no etcd binary found".into()),
    }
}

/// This workspace's root.
fn workspace() -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    workspace.canonicalize().unwrap_or(workspace)
}

/// The synod binary from --synod-bin, else built now from this workspace.
pub fn ensure_synod(given: Option<&Path>) -> Result<PathBuf, String> {
    if let Some(path) = given {
        return checked(path.to_path_buf());
    }
    let workspace = workspace();
    eprintln!("building synod: cargo build --release -p synod-server");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--release", "-p", "synod-server"])
        .current_dir(&workspace)
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !status.success() {
        return Err(format!("building synod failed ({status})"));
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join("target"));
    checked(target.join("release/synod"))
}

/// The binary, if it runs (`--version` succeeds).
pub fn checked(path: PathBuf) -> Result<PathBuf, String> {
    match Command::new(&path).arg("--version").output() {
        Ok(output) if output.status.success() => Ok(path),
        Ok(output) => Err(format!(
            "{} --version failed: {}",
            path.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        )),
        Err(e) => Err(format!("cannot run {}: {e}", path.display())),
    }
}

/// The first line of `--version`.
pub fn version_of(binary: &Path) -> Option<String> {
    let output = Command::new(binary).arg("--version").output().ok()?;
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .next()
        .map(|l| l.trim().to_string())
}
