//! Which member a data directory belongs to, and which incarnation of that member it holds.
//! Starting a member on another member's data (or on data of another cluster) would let one
//! acceptor speak with another's promises, so it is refused.
//!
//! The incarnation is a random number drawn when the data directory is created. A member
//! whose directory was wiped comes back under its old name and id but with a new
//! incarnation, and its peers, which recorded the old one, refuse it at the handshake
//! (`transport/handshake.rs`): it has forgotten its promises and accepted values.

use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

const FILE: &str = "member";

/// Why a data directory cannot be used as this member's.
#[derive(Debug)]
pub enum IdentityError {
    /// The member file cannot be parsed; `expected` is what the flags say it should hold.
    Damaged {
        path: PathBuf,
        expected: Identity,
    },
    /// The directory holds another member's (or another cluster's) data.
    OtherMember {
        dir: PathBuf,
        found: Identity,
        claimed: Identity,
    },
    /// Files but no member file: not a Synod data directory.
    NotADataDirectory {
        dir: PathBuf,
    },
    Read {
        path: PathBuf,
        source: io::Error,
    },
    Write {
        path: PathBuf,
        source: io::Error,
    },
    Random(getrandom::Error),
}

impl fmt::Display for IdentityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdentityError::Damaged { path, expected } => write!(
                f,
                "{} is damaged; it should read:\nname={}\nmember_id={:x}\n\
                 cluster_id={:x}\nincarnation=<16 hex digits: the one the peers \
                 recorded for this member in their peer-incarnations file>",
                path.display(),
                expected.name,
                expected.member_id,
                expected.cluster_id
            ),
            IdentityError::OtherMember {
                dir,
                found,
                claimed,
            } => write!(
                f,
                "--data-dir {} belongs to member {:?} (id {:x}) of cluster {:x}, not to \
                 member {:?} (id {:x}) of cluster {:x}; check --name, \
                 --initial-cluster and --initial-cluster-token",
                dir.display(),
                found.name,
                found.member_id,
                found.cluster_id,
                claimed.name,
                claimed.member_id,
                claimed.cluster_id
            ),
            IdentityError::NotADataDirectory { dir } => write!(
                f,
                "--data-dir {} is not empty but holds no {FILE} file: it is not a \
                 Synod data directory (or was damaged); refusing to use it",
                dir.display()
            ),
            IdentityError::Read { path, source } => {
                write!(f, "cannot read {}: {source}", path.display())
            }
            IdentityError::Write { path, source } => {
                write!(f, "cannot write {}: {source}", path.display())
            }
            IdentityError::Random(e) => write!(f, "cannot draw a random incarnation: {e}"),
        }
    }
}

impl std::error::Error for IdentityError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            IdentityError::Read { source, .. } | IdentityError::Write { source, .. } => {
                Some(source)
            }
            IdentityError::Random(e) => Some(e),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub name: String,
    pub member_id: u64,
    pub cluster_id: u64,
    /// Drawn at random (never 0) when the data directory was created; names this life of
    /// the member's acceptor state. 0 in an identity not yet checked against a directory.
    pub incarnation: u64,
}

impl Identity {
    /// The identity the flags name; its incarnation comes from the data directory
    /// (`check_or_create`).
    pub fn new(name: String, member_id: u64, cluster_id: u64) -> Identity {
        Identity {
            name,
            member_id,
            cluster_id,
            incarnation: 0,
        }
    }

    fn render(&self) -> String {
        format!(
            "name={}\nmember_id={:x}\ncluster_id={:x}\nincarnation={:016x}\n",
            self.name, self.member_id, self.cluster_id, self.incarnation
        )
    }

    /// The identity in a member file; `incarnation` is 0 when the file predates
    /// incarnations. None if a line is missing or malformed.
    fn parse(text: &str) -> Option<Identity> {
        let mut name = None;
        let mut member_id = None;
        let mut cluster_id = None;
        let mut incarnation = Some(0);
        for line in text.lines() {
            match line.split_once('=') {
                Some(("name", v)) => name = Some(v.to_string()),
                Some(("member_id", v)) => member_id = u64::from_str_radix(v, 16).ok(),
                Some(("cluster_id", v)) => cluster_id = u64::from_str_radix(v, 16).ok(),
                Some(("incarnation", v)) => {
                    incarnation = u64::from_str_radix(v, 16).ok().filter(|&i| i != 0)
                }
                _ => {}
            }
        }
        Some(Identity {
            name: name?,
            member_id: member_id?,
            cluster_id: cluster_id?,
            incarnation: incarnation?,
        })
    }

    /// The same member: same name and cluster. The member id may differ: ids derive from
    /// the peer URL a member was added with, and `etcdctl member update` changes the URL but
    /// not the id, so after an update the flags derive another id; the directory's wins.
    fn same_member(&self, other: &Identity) -> bool {
        (self.name.as_str(), self.cluster_id) == (other.name.as_str(), other.cluster_id)
    }

    /// Writes the identity, with a fresh incarnation, into a new data directory, or checks it
    /// against the one there. Returns the identity in effect, with the directory's
    /// incarnation. A member file written before incarnations existed gets one now.
    pub fn check_or_create(&self, dir: &Path) -> Result<Identity, IdentityError> {
        let path = dir.join(FILE);
        match fs::read_to_string(&path) {
            Ok(text) => {
                let found = Identity::parse(&text).ok_or_else(|| IdentityError::Damaged {
                    path: path.clone(),
                    expected: self.clone(),
                })?;
                if !found.same_member(self) {
                    return Err(IdentityError::OtherMember {
                        dir: dir.to_path_buf(),
                        found,
                        claimed: self.clone(),
                    });
                }
                if found.incarnation != 0 {
                    return Ok(found);
                }
                // Written before incarnations existed: the data is this member's, so this
                // incarnation is the one its peers will first record.
                let upgraded = found.with_fresh_incarnation()?;
                write_durably(dir, &upgraded.render())?;
                tracing::info!(
                    incarnation = format!("{:016x}", upgraded.incarnation),
                    "drew an incarnation for a data directory written before incarnations"
                );
                Ok(upgraded)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some()) {
                    return Err(IdentityError::NotADataDirectory {
                        dir: dir.to_path_buf(),
                    });
                }
                let created = self.with_fresh_incarnation()?;
                write_durably(dir, &created.render())?;
                Ok(created)
            }
            Err(source) => Err(IdentityError::Read { path, source }),
        }
    }

    /// Draws a new incarnation and writes it: for a member whose acceptor state is empty
    /// (bootstrapped from nothing), whatever its member file says, since it holds none of
    /// the promises an earlier incarnation may have made.
    pub fn renew_incarnation(&self, dir: &Path) -> Result<Identity, IdentityError> {
        let renewed = self.with_fresh_incarnation()?;
        write_durably(dir, &renewed.render())?;
        Ok(renewed)
    }

    fn with_fresh_incarnation(&self) -> Result<Identity, IdentityError> {
        loop {
            let incarnation = getrandom::u64().map_err(IdentityError::Random)?;
            if incarnation != 0 && incarnation != self.incarnation {
                return Ok(Identity {
                    incarnation,
                    ..self.clone()
                });
            }
        }
    }
}

/// Replaces the member file: temporary file, sync, rename, directory sync.
fn write_durably(dir: &Path, contents: &str) -> Result<(), IdentityError> {
    let path = dir.join(FILE);
    let tmp = dir.join(format!("{FILE}.tmp"));
    let write = || -> std::io::Result<()> {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(contents.as_bytes())?;
        f.sync_all()?;
        fs::rename(&tmp, &path)?;
        fs::File::open(dir)?.sync_all()
    };
    write().map_err(|source| IdentityError::Write { path, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(name: &str) -> Identity {
        Identity::new(name.into(), 0xabc, 0xdef)
    }

    #[test]
    fn created_then_checked() {
        let dir = tempfile::tempdir().unwrap();
        let created = id("a").check_or_create(dir.path()).unwrap();
        assert_ne!(created.incarnation, 0);
        let text = fs::read_to_string(dir.path().join(FILE)).unwrap();
        assert!(
            text.contains(&format!("\nincarnation={:016x}\n", created.incarnation)),
            "{text}"
        );
        // Checked again: the same incarnation, however the claim was built.
        assert_eq!(id("a").check_or_create(dir.path()).unwrap(), created);
        assert_eq!(created.check_or_create(dir.path()).unwrap(), created);
        let e = id("b").check_or_create(dir.path()).unwrap_err().to_string();
        assert!(e.contains("belongs to member \"a\""), "{e}");
        let e = Identity::new("a".into(), 0xabc, 0x123)
            .check_or_create(dir.path())
            .unwrap_err()
            .to_string();
        assert!(e.contains("of cluster def"), "{e}");
        // After `member update` the flags derive another id; the directory's stands.
        let updated = Identity::new("a".into(), 0x999, 0xdef)
            .check_or_create(dir.path())
            .unwrap();
        assert_eq!(updated, created);
    }

    #[test]
    fn every_new_directory_gets_its_own_incarnation() {
        let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let i1 = id("a").check_or_create(d1.path()).unwrap().incarnation;
        let i2 = id("a").check_or_create(d2.path()).unwrap().incarnation;
        assert_ne!(i1, i2);
        // A wiped directory is a new one.
        fs::remove_dir_all(d1.path()).unwrap();
        fs::create_dir(d1.path()).unwrap();
        let again = id("a").check_or_create(d1.path()).unwrap().incarnation;
        assert_ne!(again, i1);
    }

    #[test]
    fn an_older_member_file_gets_an_incarnation_once() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(
            dir.path().join(FILE),
            "name=a\nmember_id=abc\ncluster_id=def\n",
        )
        .unwrap();
        fs::create_dir(dir.path().join("log")).unwrap();
        let upgraded = id("a").check_or_create(dir.path()).unwrap();
        assert_ne!(upgraded.incarnation, 0);
        assert_eq!(
            (
                upgraded.name.as_str(),
                upgraded.member_id,
                upgraded.cluster_id
            ),
            ("a", 0xabc, 0xdef)
        );
        assert!(!dir.path().join(format!("{FILE}.tmp")).exists());
        assert_eq!(id("a").check_or_create(dir.path()).unwrap(), upgraded);
    }

    #[test]
    fn a_damaged_incarnation_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        for bad in ["xyz", "", "0", "10000000000000000"] {
            fs::write(
                dir.path().join(FILE),
                format!("name=a\nmember_id=abc\ncluster_id=def\nincarnation={bad}\n"),
            )
            .unwrap();
            let e = id("a").check_or_create(dir.path()).unwrap_err();
            assert!(matches!(e, IdentityError::Damaged { .. }), "{bad:?}: {e}");
            assert!(e.to_string().contains("is damaged"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn renewing_draws_another_incarnation() {
        let dir = tempfile::tempdir().unwrap();
        let created = id("a").check_or_create(dir.path()).unwrap();
        let renewed = created.renew_incarnation(dir.path()).unwrap();
        assert_ne!(renewed.incarnation, created.incarnation);
        assert_eq!(id("a").check_or_create(dir.path()).unwrap(), renewed);
    }

    #[test]
    fn refuses_a_foreign_directory() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("something"), "x").unwrap();
        assert!(matches!(
            id("a").check_or_create(dir.path()),
            Err(IdentityError::NotADataDirectory { .. })
        ));
    }
}
