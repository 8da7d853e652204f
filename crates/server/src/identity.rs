//! Which member a data directory belongs to. Starting a member on another member's data (or
//! on data of another cluster) would let one acceptor speak with another's promises, so it
//! is refused.

use std::fs;
use std::io::Write;
use std::path::Path;

const FILE: &str = "member";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub name: String,
    pub member_id: u64,
    pub cluster_id: u64,
}

impl Identity {
    fn render(&self) -> String {
        format!(
            "name={}\nmember_id={:x}\ncluster_id={:x}\n",
            self.name, self.member_id, self.cluster_id
        )
    }

    fn parse(text: &str) -> Option<Identity> {
        let mut name = None;
        let mut member_id = None;
        let mut cluster_id = None;
        for line in text.lines() {
            match line.split_once('=') {
                Some(("name", v)) => name = Some(v.to_string()),
                Some(("member_id", v)) => member_id = u64::from_str_radix(v, 16).ok(),
                Some(("cluster_id", v)) => cluster_id = u64::from_str_radix(v, 16).ok(),
                _ => {}
            }
        }
        Some(Identity {
            name: name?,
            member_id: member_id?,
            cluster_id: cluster_id?,
        })
    }

    /// Writes the identity into a new data directory, or checks it against the one there.
    pub fn check_or_create(&self, dir: &Path) -> Result<(), String> {
        let path = dir.join(FILE);
        match fs::read_to_string(&path) {
            Ok(text) => {
                let found = Identity::parse(&text).ok_or_else(|| {
                    format!(
                        "{} is damaged; it should read:\n{}",
                        path.display(),
                        self.render()
                    )
                })?;
                if found != *self {
                    return Err(format!(
                        "--data-dir {} belongs to member {:?} (id {:x}) of cluster {:x}, not to \
                         member {:?} (id {:x}) of cluster {:x}; check --name, \
                         --initial-cluster and --initial-cluster-token",
                        dir.display(),
                        found.name,
                        found.member_id,
                        found.cluster_id,
                        self.name,
                        self.member_id,
                        self.cluster_id
                    ));
                }
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some()) {
                    return Err(format!(
                        "--data-dir {} is not empty but holds no {FILE} file: it is not a \
                         Synod data directory (or was damaged); refusing to use it",
                        dir.display()
                    ));
                }
                let tmp = dir.join(format!("{FILE}.tmp"));
                let write = || -> std::io::Result<()> {
                    let mut f = fs::File::create(&tmp)?;
                    f.write_all(self.render().as_bytes())?;
                    f.sync_all()?;
                    fs::rename(&tmp, &path)?;
                    fs::File::open(dir)?.sync_all()
                };
                write().map_err(|e| format!("cannot write {}: {e}", path.display()))
            }
            Err(e) => Err(format!("cannot read {}: {e}", path.display())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_then_checked() {
        let dir = tempfile::tempdir().unwrap();
        let id = Identity {
            name: "a".into(),
            member_id: 0xabc,
            cluster_id: 0xdef,
        };
        id.check_or_create(dir.path()).unwrap();
        id.check_or_create(dir.path()).unwrap();
        let other = Identity {
            name: "b".into(),
            ..id.clone()
        };
        let e = other.check_or_create(dir.path()).unwrap_err();
        assert!(e.contains("belongs to member \"a\""), "{e}");
    }

    #[test]
    fn refuses_a_foreign_directory() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("something"), "x").unwrap();
        let id = Identity {
            name: "a".into(),
            member_id: 1,
            cluster_id: 2,
        };
        assert!(id.check_or_create(dir.path()).is_err());
    }
}
