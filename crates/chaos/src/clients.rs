//! What the workers share: one etcd client per member (each request goes to the member the
//! worker chose, not wherever a load balancer likes), and how a failed request is read.

use etcd_client::{Client, ConnectOptions};
use std::time::{Duration, Instant};
use synod_sim::rng::Rng;

/// What a failed request tells us about its effect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// Refused before it was proposed: it definitely had no effect.
    Definite,
    /// It may have taken effect, or may still.
    Unknown,
}

/// How a failure is to be counted, and whether the error is one a correct server never gives
/// to these requests (a finding of its own).
pub fn classify(e: &etcd_client::Error) -> (Failure, Option<String>) {
    use tonic::Code;
    match e {
        etcd_client::Error::GRpcStatus(s) => {
            // Both are answered by the member that got the request, before proposing it
            // (crates/server/src/replica: `propose`, `submit`). Everything else may come
            // after the command entered the log: a timeout, "leader changed", a dropped
            // connection.
            let m = s.message();
            if m == "etcdserver: no leader" || m == "etcdserver: too many requests" {
                return (Failure::Definite, None);
            }
            let unexpected = matches!(
                s.code(),
                Code::InvalidArgument
                    | Code::NotFound
                    | Code::AlreadyExists
                    | Code::FailedPrecondition
                    | Code::OutOfRange
                    | Code::Unimplemented
            );
            (
                Failure::Unknown,
                unexpected.then(|| format!("{:?}: {}", s.code(), m)),
            )
        }
        _ => (Failure::Unknown, None),
    }
}

/// A worker's connections, one per member, made lazily and remade after any failure (a
/// killed member's channel should not linger). A member that just failed a request is
/// avoided for a moment, as a client library with several endpoints would.
pub struct Members {
    endpoints: Vec<String>,
    clients: Vec<Option<Client>>,
    avoid_until: Vec<Option<Instant>>,
    timeout: Duration,
}

/// How long a member that failed a request is avoided.
const AVOID: Duration = Duration::from_millis(300);

impl std::fmt::Debug for Members {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Members")
            .field("endpoints", &self.endpoints)
            .finish_non_exhaustive()
    }
}

impl Members {
    pub fn new(endpoints: Vec<String>, timeout: Duration) -> Members {
        let n = endpoints.len();
        Members {
            endpoints,
            clients: vec![None; n],
            avoid_until: vec![None; n],
            timeout,
        }
    }

    pub fn len(&self) -> usize {
        self.endpoints.len()
    }

    pub fn is_empty(&self) -> bool {
        self.endpoints.is_empty()
    }

    /// A random member, preferring ones that did not fail lately.
    pub fn pick(&self, rng: &mut Rng) -> usize {
        let now = Instant::now();
        let good: Vec<usize> = (0..self.len())
            .filter(|&i| self.avoid_until[i].is_none_or(|t| t <= now))
            .collect();
        if good.is_empty() {
            rng.below(self.len() as u64) as usize
        } else {
            rng.pick(&good)
        }
    }

    pub async fn client(&mut self, i: usize) -> Option<Client> {
        if self.clients[i].is_none() {
            let options = ConnectOptions::new()
                .with_connect_timeout(self.timeout)
                .with_timeout(self.timeout);
            let connect = Client::connect([self.endpoints[i].as_str()], Some(options));
            self.clients[i] = tokio::time::timeout(self.timeout, connect).await.ok()?.ok();
        }
        self.clients[i].clone()
    }

    /// The request to member `i` failed: avoid it for a while, reconnect next time.
    pub fn failed(&mut self, i: usize) {
        self.clients[i] = None;
        self.avoid_until[i] = Some(Instant::now() + AVOID);
    }
}
