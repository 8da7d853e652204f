//! The handshake: the dialer's hello, the acceptor's answer, and the record of the
//! incarnation each peer presented first.
//!
//! Hello (42 bytes): `b"SYNODPX1"`, version u16 LE, cluster id u64 LE, sender id u64 LE,
//! receiver id u64 LE, sender's incarnation u64 LE. Answer: status u8, then for an
//! acceptance the acceptor's incarnation u64 LE, and for a refusal the UTF-8 text
//! `refused`. Status 0 accepts, 1 refuses, 2 refuses because the sender's incarnation is not
//! the one its member id had (its data directory was replaced), which the sender reports as
//! such. A refusal says nothing more: whoever dials may be a stranger, and the reason would
//! tell it the cluster id, member ids or a recorded incarnation. The refusing node logs the
//! reason instead.
//!
//! An incarnation is drawn at random when a member's data directory is created
//! (`identity.rs`), so it names one life of the member's acceptor state. Each node records
//! the first incarnation it sees for every peer member id (`PeerIncarnations`) and refuses
//! that member id under any other: a member restarted on an emptied data directory has
//! forgotten its promises and accepted values, and must not take part under its old id.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};

use synod_paxos::NodeId;

use super::{lock, read, write};

pub(super) const MAGIC: &[u8; 8] = b"SYNODPX1";
/// 2: the hello and the acceptance carry incarnations. 3: replicas exchange application
/// messages (`Body::App`), which a version 2 peer could not decode: it would close the
/// connection on the first one, so versions 2 and 3 refuse each other at the handshake.
pub(super) const VERSION: u16 = 3;
pub(super) const HELLO_BYTES: usize = MAGIC.len() + 2 + 4 * 8;

/// The largest frame read before a handshake completes (hello or answer). A stranger cannot
/// make us buffer more than this.
pub(super) const CONTROL_FRAME_MAX: usize = 256;

/// All a refusal says to the remote side.
pub(super) const REFUSAL_TEXT: &str = "refused";
const STATUS_ACCEPTED: u8 = 0;
const STATUS_REFUSED: u8 = 1;
const STATUS_REPLACED: u8 = 2;

const _: () = assert!(HELLO_BYTES <= CONTROL_FRAME_MAX);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Hello {
    pub(super) cluster_id: u64,
    pub(super) from: NodeId,
    pub(super) to: NodeId,
    /// The sender's incarnation.
    pub(super) incarnation: u64,
}

impl Hello {
    pub(super) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HELLO_BYTES);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&self.cluster_id.to_le_bytes());
        out.extend_from_slice(&self.from.to_le_bytes());
        out.extend_from_slice(&self.to.to_le_bytes());
        out.extend_from_slice(&self.incarnation.to_le_bytes());
        out
    }

    /// Checks the framing of a hello; the caller checks the ids against its configuration.
    pub(super) fn parse(payload: &[u8]) -> Result<Hello, String> {
        if payload.len() < MAGIC.len() || &payload[..MAGIC.len()] != MAGIC {
            return Err("not a synod peer (bad magic)".to_owned());
        }
        // The version first: a peer of another version learns that, not a length.
        if payload.len() >= MAGIC.len() + 2 {
            let version = u16::from_le_bytes([payload[8], payload[9]]);
            if version != VERSION {
                return Err(format!(
                    "unsupported protocol version {version} (we speak {VERSION})"
                ));
            }
        }
        if payload.len() != HELLO_BYTES {
            return Err(format!(
                "malformed hello ({} bytes, expected {HELLO_BYTES})",
                payload.len()
            ));
        }
        let u64_at = |at: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&payload[at..at + 8]);
            u64::from_le_bytes(b)
        };
        Ok(Hello {
            cluster_id: u64_at(10),
            from: u64_at(18),
            to: u64_at(26),
            incarnation: u64_at(34),
        })
    }
}

/// The acceptor's answer. A refusal carries no reason (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Answer {
    /// With the acceptor's incarnation.
    Accepted {
        incarnation: u64,
    },
    Refused,
    /// Refused because the acceptor knows the sender's member id under another incarnation.
    Replaced,
}

impl Answer {
    pub(super) fn encode(&self) -> Vec<u8> {
        let status = match self {
            Answer::Accepted { incarnation } => {
                let mut out = vec![STATUS_ACCEPTED];
                out.extend_from_slice(&incarnation.to_le_bytes());
                return out;
            }
            Answer::Refused => STATUS_REFUSED,
            Answer::Replaced => STATUS_REPLACED,
        };
        let mut out = vec![status];
        out.extend_from_slice(REFUSAL_TEXT.as_bytes());
        out
    }

    /// Parses an answer. The text of a refusal is not kept: older versions sent a reason,
    /// which this node has no use for (the refusing node logs it).
    pub(super) fn parse(payload: &[u8]) -> Result<Answer, &'static str> {
        match payload.split_first() {
            Some((&STATUS_ACCEPTED, rest)) => match <[u8; 8]>::try_from(rest) {
                Ok(b) => Ok(Answer::Accepted {
                    incarnation: u64::from_le_bytes(b),
                }),
                Err(_) => Err("malformed handshake answer"),
            },
            Some((&STATUS_REFUSED, _)) => Ok(Answer::Refused),
            Some((&STATUS_REPLACED, _)) => Ok(Answer::Replaced),
            _ => Err("malformed handshake answer"),
        }
    }
}

/// The incarnation first seen for each peer member id: in a file when the transport has a
/// data directory (written whole to a temporary file, synced, renamed over the old one, the
/// directory synced), in memory only otherwise.
///
/// File format, one peer a line, hex: `<member id> <incarnation>`; `#` starts a comment.
#[derive(Debug)]
pub(super) struct PeerIncarnations {
    path: Option<PathBuf>,
    known: RwLock<BTreeMap<NodeId, u64>>,
    /// Serializes writers, so readers (`known`) never wait for the disk.
    writing: Mutex<()>,
}

const RECORD_HEADER: &str = "\
# Synod: the incarnation each peer member id was first seen with (hex: member id, incarnation).
# A peer presenting another incarnation under a listed id is refused: its data directory was
# replaced. See docs/SERVER.md, \"Replacing a member whose disk was wiped\".
";

impl PeerIncarnations {
    /// Loads the record at `path` (none yet is an empty record); `None` keeps it in memory.
    pub(super) fn load(path: Option<PathBuf>) -> io::Result<PeerIncarnations> {
        let known = match &path {
            None => BTreeMap::new(),
            Some(path) => match fs::read_to_string(path) {
                Ok(text) => parse_record(&text).map_err(|e| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "{} is damaged ({e}); it records the incarnation each peer was \
                             first seen with. Removing it starts the record over from the \
                             peers' current incarnations",
                            path.display()
                        ),
                    )
                })?,
                Err(e) if e.kind() == io::ErrorKind::NotFound => BTreeMap::new(),
                Err(e) => {
                    return Err(io::Error::new(
                        e.kind(),
                        format!("cannot read {}: {e}", path.display()),
                    ))
                }
            },
        };
        Ok(PeerIncarnations {
            path,
            known: RwLock::new(known),
            writing: Mutex::new(()),
        })
    }

    /// The incarnation recorded for `peer`. Never waits for the disk.
    pub(super) fn known(&self, peer: NodeId) -> Option<u64> {
        read(&self.known).get(&peer).copied()
    }

    /// Records `incarnation` for `peer` unless one is recorded already; returns `Err` with
    /// the recorded one if it differs, else whether it was recorded now. The record is
    /// durable when this returns `Ok(Ok(_))`. Blocks on the disk: call it off the async
    /// threads.
    pub(super) fn check_or_record(
        &self,
        peer: NodeId,
        incarnation: u64,
    ) -> io::Result<Result<bool, u64>> {
        let _writing = lock(&self.writing);
        let mut next = read(&self.known).clone();
        match next.get(&peer) {
            Some(&known) if known == incarnation => return Ok(Ok(false)),
            Some(&known) => return Ok(Err(known)),
            None => {}
        }
        next.insert(peer, incarnation);
        if let Some(path) = &self.path {
            write_durably(path, render_record(&next).as_bytes())
                .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        }
        // Only once durable: until then a second connection of the peer waits on
        // `writing` and checks again.
        write(&self.known).insert(peer, incarnation);
        Ok(Ok(true))
    }
}

fn render_record(known: &BTreeMap<NodeId, u64>) -> String {
    let mut out = RECORD_HEADER.to_owned();
    for (id, incarnation) in known {
        let _ = writeln!(out, "{id:x} {incarnation:016x}");
    }
    out
}

fn parse_record(text: &str) -> Result<BTreeMap<NodeId, u64>, String> {
    let mut known = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = || format!("line {}: {line:?}", n + 1);
        let mut fields = line.split_whitespace();
        let (Some(id), Some(incarnation), None) = (fields.next(), fields.next(), fields.next())
        else {
            return Err(bad());
        };
        let id = u64::from_str_radix(id, 16).map_err(|_| bad())?;
        let incarnation = u64::from_str_radix(incarnation, 16).map_err(|_| bad())?;
        if known.insert(id, incarnation).is_some() {
            return Err(format!("{}: member {id:x} listed twice", bad()));
        }
    }
    Ok(known)
}

/// Replaces `path` with `bytes` so that a crash leaves the old or the new file, whole.
fn write_durably(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut f = fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    fs::rename(&tmp, path)?;
    fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello() -> Hello {
        Hello {
            cluster_id: u64::MAX,
            from: 1,
            to: 1 << 40,
            incarnation: 0x0123_4567_89ab_cdef,
        }
    }

    #[test]
    fn hello_round_trips() {
        let h = hello();
        let bytes = h.encode();
        assert_eq!(bytes.len(), HELLO_BYTES);
        assert_eq!(Hello::parse(&bytes), Ok(h));
        // Every field lands where the module docs say.
        assert_eq!(&bytes[34..], &0x0123_4567_89ab_cdefu64.to_le_bytes());
        for incarnation in [0, 1, u64::MAX] {
            let h = Hello {
                incarnation,
                ..hello()
            };
            assert_eq!(Hello::parse(&h.encode()), Ok(h));
        }
    }

    #[test]
    fn bad_hellos_are_refused() {
        let good = hello().encode();
        assert!(Hello::parse(b"").is_err());
        assert!(Hello::parse(b"GET / HTTP/1.1").is_err());
        assert!(Hello::parse(&good[..HELLO_BYTES - 1]).is_err());
        assert!(Hello::parse(&good[..HELLO_BYTES - 8]).is_err());
        let mut long = good.clone();
        long.push(0);
        assert!(Hello::parse(&long).is_err());
        for other in [2u8, 4] {
            // The previous version (no `Body::App`) and a later one.
            let mut version = good.clone();
            version[8] = other;
            let e = Hello::parse(&version).unwrap_err();
            assert!(e.contains(&format!("version {other}")), "{e}");
        }
        // A version 1 hello (no incarnation) is told about the version, not the length.
        let mut v1 = good[..HELLO_BYTES - 8].to_vec();
        v1[8] = 1;
        let e = Hello::parse(&v1).unwrap_err();
        assert!(e.contains("version 1"), "{e}");
        assert!(Hello::parse(&good[..9]).unwrap_err().contains("malformed"));
    }

    #[test]
    fn answers_round_trip() {
        for a in [
            Answer::Accepted { incarnation: 0 },
            Answer::Accepted {
                incarnation: u64::MAX - 5,
            },
            Answer::Refused,
            Answer::Replaced,
        ] {
            assert_eq!(Answer::parse(&a.encode()), Ok(a));
        }
        assert_eq!(Answer::Accepted { incarnation: 7 }.encode().len(), 9);
        // A refusal says "refused" and nothing else.
        assert_eq!(Answer::Refused.encode(), b"\x01refused");
        assert_eq!(Answer::Replaced.encode(), b"\x02refused");
        assert!(Answer::parse(&[]).is_err());
        assert!(
            Answer::parse(&[0]).is_err(),
            "an acceptance without incarnation"
        );
        assert!(Answer::parse(&[0, 1]).is_err());
        assert!(Answer::parse(&[0; 10]).is_err());
        assert!(Answer::parse(&[7]).is_err());
        // An older version's refusal with a reason still parses.
        assert_eq!(Answer::parse(b"\x01wrong cluster"), Ok(Answer::Refused));
        assert_eq!(Answer::parse(&[2]), Ok(Answer::Replaced));
    }

    #[test]
    fn incarnations_are_recorded_once_and_survive_a_reload() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("peer-incarnations");
        let r = PeerIncarnations::load(Some(path.clone())).unwrap();
        assert_eq!(r.known(5), None);
        assert_eq!(r.check_or_record(5, 0xaa).unwrap(), Ok(true));
        assert_eq!(r.check_or_record(5, 0xaa).unwrap(), Ok(false));
        assert_eq!(r.check_or_record(5, 0xbb).unwrap(), Err(0xaa));
        assert_eq!(r.check_or_record(0xdead_beef, u64::MAX).unwrap(), Ok(true));
        assert_eq!(r.known(5), Some(0xaa));
        assert!(!dir.path().join("peer-incarnations.tmp").exists());

        let again = PeerIncarnations::load(Some(path.clone())).unwrap();
        assert_eq!(again.known(5), Some(0xaa));
        assert_eq!(again.known(0xdead_beef), Some(u64::MAX));
        assert_eq!(again.check_or_record(5, 0xbb).unwrap(), Err(0xaa));
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.contains("\n5 00000000000000aa\n"), "{text}");

        // In memory only: nothing written anywhere.
        let mem = PeerIncarnations::load(None).unwrap();
        assert_eq!(mem.check_or_record(5, 1).unwrap(), Ok(true));
        assert_eq!(mem.check_or_record(5, 2).unwrap(), Err(1));
    }

    #[test]
    fn a_damaged_record_is_refused_at_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("peer-incarnations");
        for bad in [
            "5\n",
            "5 aa bb\n",
            "zz 00000000000000aa\n",
            "5 aa\n5 aa\n",
            "5 10000000000000000\n",
        ] {
            fs::write(&path, bad).unwrap();
            let e = PeerIncarnations::load(Some(path.clone())).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{bad:?}");
            assert!(e.to_string().contains("is damaged"), "{e}");
        }
        fs::write(&path, "# only a comment\n\n  7 1  \n").unwrap();
        let r = PeerIncarnations::load(Some(path)).unwrap();
        assert_eq!(r.known(7), Some(1));
    }
}
