//! The initial cluster: who the members are, where they listen, and the ids derived from
//! the flags. The cluster id derives from the token, member ids from it and each member's
//! peer URL (`members::member_id`), so every member, a joining one too, computes the same
//! ids without talking to the others.

use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};

use synod_paxos::NodeId;
pub use synod_replica::urls::{fnv1a, parse_urls, FlagError, Url};

/// Where a URL binds (resolving it is I/O, so it lives here rather than beside `Url`).
pub trait BindAddr {
    /// The address to bind. `localhost` binds the IPv4 loopback, as clients dialing
    /// `localhost` try it first.
    fn bind_addr(&self, flag: &str) -> Result<SocketAddr, FlagError>;
}

impl BindAddr for Url {
    fn bind_addr(&self, flag: &str) -> Result<SocketAddr, FlagError> {
        let host = if self.host == "localhost" {
            "127.0.0.1"
        } else {
            &self.host
        };
        (host, self.port)
            .to_socket_addrs()
            .map_err(|e| FlagError(format!("{flag}: cannot resolve {}: {e}", self.authority())))?
            .next()
            .ok_or_else(|| FlagError(format!("{flag}: {} resolves to nothing", self.authority())))
    }
}

fn err<T>(msg: impl Into<String>) -> Result<T, FlagError> {
    Err(FlagError(msg.into()))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub id: NodeId,
    pub name: String,
    pub peer_url: Url,
}

/// The members named by `--initial-cluster`, and the cluster id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitialCluster {
    pub cluster_id: u64,
    /// By member id.
    pub members: BTreeMap<NodeId, Member>,
}

impl InitialCluster {
    pub fn parse(initial_cluster: &str, token: &str) -> Result<InitialCluster, FlagError> {
        const FLAG: &str = "--initial-cluster";
        if token.is_empty() {
            return err("--initial-cluster-token must not be empty");
        }
        let cluster_id = cluster_id(token);
        let mut members = BTreeMap::new();
        let mut names = BTreeMap::new();
        for part in initial_cluster.split(',').filter(|p| !p.trim().is_empty()) {
            let Some((name, url)) = part.split_once('=') else {
                return err(format!("{FLAG}: {part:?}: expected name=http://host:port"));
            };
            let name = name.trim();
            if name.is_empty() {
                return err(format!("{FLAG}: {part:?}: the member name is empty"));
            }
            let peer_url = Url::parse(FLAG, url)?;
            if names.insert(name.to_string(), ()).is_some() {
                return err(format!(
                    "{FLAG}: member {name:?} appears twice (one peer URL per member is supported)"
                ));
            }
            let id = crate::members::member_id(cluster_id, &peer_url.to_string());
            let url = peer_url.to_string();
            let previous = members.insert(
                id,
                Member {
                    id,
                    name: name.to_string(),
                    peer_url,
                },
            );
            if previous.is_some() {
                return err(format!("{FLAG}: two members share the peer URL {url}"));
            }
        }
        if members.is_empty() {
            return err(format!("{FLAG}: no member given"));
        }
        Ok(InitialCluster {
            cluster_id,
            members,
        })
    }

    pub fn by_name(&self, name: &str) -> Option<&Member> {
        self.members.values().find(|m| m.name == name)
    }
}

/// The cluster's id, from `--initial-cluster-token` alone, so that a member joining later
/// (`--initial-cluster-state existing`) derives the same one: give every cluster its own
/// token, as etcd advises. Member ids derive from it and the member's peer URL
/// (`members::member_id`). Never 0.
pub fn cluster_id(token: &str) -> u64 {
    fnv1a(&[b"cluster", token.as_bytes()]).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        let u = Url::parse("f", "http://127.0.0.1:2379").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("127.0.0.1", 2379));
        assert_eq!(u.to_string(), "http://127.0.0.1:2379");
        assert_eq!(
            Url::parse("f", "http://[::1]:80/").unwrap().authority(),
            "[::1]:80"
        );
        for bad in [
            "127.0.0.1:2379",
            "https://a:1",
            "http://a",
            "http://:1",
            "http://a:99999",
            "http://a:1/x",
        ] {
            assert!(Url::parse("f", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn parses_initial_cluster() {
        let c = InitialCluster::parse(
            "a=http://127.0.0.1:2380,b=http://127.0.0.1:22380,c=http://127.0.0.1:32380",
            "tok",
        )
        .unwrap();
        assert_eq!(c.members.len(), 3);
        assert_eq!(c.by_name("b").unwrap().peer_url.port, 22380);
        // Every member computes the same ids.
        let again = InitialCluster::parse(
            "c=http://127.0.0.1:32380,a=http://127.0.0.1:2380,b=http://127.0.0.1:22380",
            "tok",
        )
        .unwrap();
        assert_eq!(c, again);
        // Another token, another cluster.
        let other = InitialCluster::parse("a=http://127.0.0.1:2380", "tok2").unwrap();
        assert_ne!(other.cluster_id, c.cluster_id);
        assert!(InitialCluster::parse("a=http://h:1,a=http://h:2", "t").is_err());
        assert!(InitialCluster::parse("", "t").is_err());
        assert!(InitialCluster::parse("a", "t").is_err());
        assert!(InitialCluster::parse("a=http://h:1", "").is_err());
    }
}
