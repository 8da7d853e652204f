//! What the workers share: one etcd client per member (each request goes to the member the
//! worker chose, not wherever a load balancer likes), and how a failed request is read.

use etcd_client::{Client, ConnectOptions};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use synod_testkit::rng::Rng;

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

/// The members clients may talk to, by index (`m1` is 0): every member the run ever
/// started, and which of them are in the cluster now. Membership changes update it; workers
/// read it at every request, as a client refreshing its endpoints from `MemberList` would.
#[derive(Debug, Default)]
pub struct Roster {
    inner: Mutex<Vec<(String, bool)>>,
}

impl Roster {
    /// These members, all current.
    pub fn new(endpoints: Vec<String>) -> Arc<Roster> {
        Arc::new(Roster {
            inner: Mutex::new(endpoints.into_iter().map(|e| (e, true)).collect()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(String, bool)>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A member's endpoint at index `i` (not current until [`Roster::set_current`]).
    pub fn put(&self, i: usize, endpoint: String) {
        let mut g = self.lock();
        while g.len() <= i {
            g.push((String::new(), false));
        }
        g[i] = (endpoint, false);
    }

    pub fn set_current(&self, i: usize, current: bool) {
        if let Some(e) = self.lock().get_mut(i) {
            e.1 = current;
        }
    }

    pub fn endpoint(&self, i: usize) -> Option<String> {
        self.lock().get(i).map(|e| e.0.clone())
    }

    /// The members in the cluster now.
    pub fn current(&self) -> Vec<usize> {
        self.lock()
            .iter()
            .enumerate()
            .filter(|(_, e)| e.1)
            .map(|(i, _)| i)
            .collect()
    }
}

/// A worker's connections, one per member, made lazily and remade after any failure (a
/// killed member's channel should not linger). A member that just failed a request is
/// avoided for a moment, as a client library with several endpoints would. Requests go to
/// the roster's current members.
pub struct Members {
    roster: Arc<Roster>,
    clients: Vec<Option<Client>>,
    avoid_until: Vec<Option<Instant>>,
    timeout: Duration,
}

/// How long a member that failed a request is avoided.
const AVOID: Duration = Duration::from_millis(300);

impl std::fmt::Debug for Members {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Members")
            .field("roster", &self.roster)
            .finish_non_exhaustive()
    }
}

impl Members {
    /// Over a fixed set of members.
    pub fn new(endpoints: Vec<String>, timeout: Duration) -> Members {
        Members::over(Roster::new(endpoints), timeout)
    }

    /// Over a roster that may change.
    pub fn over(roster: Arc<Roster>, timeout: Duration) -> Members {
        Members {
            roster,
            clients: Vec::new(),
            avoid_until: Vec::new(),
            timeout,
        }
    }

    fn grow(&mut self, i: usize) {
        if self.clients.len() <= i {
            self.clients.resize(i + 1, None);
            self.avoid_until.resize(i + 1, None);
        }
    }

    /// A random current member, preferring ones that did not fail lately.
    pub fn pick(&mut self, rng: &mut Rng) -> usize {
        let now = Instant::now();
        let current = self.roster.current();
        if let Some(&max) = current.iter().max() {
            self.grow(max);
        }
        let good: Vec<usize> = current
            .iter()
            .copied()
            .filter(|&i| self.avoid_until[i].is_none_or(|t| t <= now))
            .collect();
        if !good.is_empty() {
            rng.pick(&good)
        } else if !current.is_empty() {
            rng.pick(&current)
        } else {
            0
        }
    }

    pub async fn client(&mut self, i: usize) -> Option<Client> {
        self.grow(i);
        if self.clients[i].is_none() {
            let endpoint = self.roster.endpoint(i)?;
            let options = ConnectOptions::new()
                .with_connect_timeout(self.timeout)
                .with_timeout(self.timeout);
            let connect = Client::connect([endpoint.as_str()], Some(options));
            self.clients[i] = tokio::time::timeout(self.timeout, connect).await.ok()?.ok();
        }
        self.clients[i].clone()
    }

    /// The request to member `i` failed: avoid it for a while, reconnect next time.
    pub fn failed(&mut self, i: usize) {
        self.grow(i);
        self.clients[i] = None;
        self.avoid_until[i] = Some(Instant::now() + AVOID);
    }
}
