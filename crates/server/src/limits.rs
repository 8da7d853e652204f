//! Limits on what clients may take from a member: open descriptors (connections) and
//! request sizes; and the process limits a member adjusts at start.

use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};

/// etcd's default `--max-request-bytes`: 1.5 MiB.
pub const DEFAULT_REQUEST_BYTES_MAX: usize = 1536 * 1024;

/// What the gRPC receive limit allows beyond `--max-request-bytes`, as etcd's
/// (`grpcOverheadBytes`): a read may be a little larger than a write.
pub const GRPC_OVERHEAD_BYTES: usize = 512 * 1024;

/// The largest `--max-request-bytes` accepted: one request must fit one peer frame with room
/// for the rest of its slot.
pub const REQUEST_BYTES_FLAG_MAX: usize = crate::transport::DEFAULT_FRAME_BYTES_MAX / 2;

/// Descriptors kept back from clients for the member's own files and sockets: the log's
/// open segment and the next one it prepares, its directory, snapshot files being written,
/// read and sent, the data directory's small files, the listeners, the runtime's epoll and
/// wake-up descriptors, stdio, and two sockets per peer for clusters of up to 16 members.
/// Counted: about 45; the rest is margin.
pub const DESCRIPTORS_RESERVED: u64 = 64;

/// Client-side limits, from the flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientLimits {
    /// `--max-request-bytes`: the largest write request (etcd's).
    pub request_bytes_max: usize,
    /// `--max-client-connections`; `None`: the open-file limit less the reserve.
    pub client_connections_max: Option<usize>,
}

impl Default for ClientLimits {
    fn default() -> Self {
        ClientLimits {
            request_bytes_max: DEFAULT_REQUEST_BYTES_MAX,
            client_connections_max: None,
        }
    }
}

impl ClientLimits {
    /// The gRPC receive limit: larger messages are refused before they are read whole.
    pub fn grpc_receive_bytes_max(&self) -> usize {
        self.request_bytes_max + GRPC_OVERHEAD_BYTES
    }

    /// Client connections allowed now: the flag, but never more than the open-file limit
    /// leaves after the reserve. Read at every accept, so a limit lowered on the running
    /// process (`prlimit --pid`) takes effect at once.
    pub fn client_connections_max(&self) -> usize {
        let by_descriptors = open_file_limit().map_or(usize::MAX, |n| {
            n.saturating_sub(DESCRIPTORS_RESERVED) as usize
        });
        self.client_connections_max
            .unwrap_or(usize::MAX)
            .min(by_descriptors)
    }
}

/// The soft limit on open files (`None`: unlimited).
pub fn open_file_limit() -> Option<u64> {
    getrlimit(Resource::Nofile).current
}

/// Raises the soft limit on open files to the hard limit, as servers that hold many
/// connections do: the soft default (often 1,024) is a guard for interactive programs, and a
/// member that hits it fails its log, not just a connection. Logs what it did.
pub fn raise_open_file_limit() {
    let now = getrlimit(Resource::Nofile);
    // An unlimited hard limit still cannot be set as the soft one on Linux: the kernel's
    // ceiling (fs.nr_open) is the most a process may have.
    let target = now.maximum.unwrap_or_else(|| {
        std::fs::read_to_string("/proc/sys/fs/nr_open")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(1 << 20)
    });
    match now.current {
        Some(soft) if soft < target => {}
        _ => {
            tracing::debug!(soft = ?now.current, hard = ?now.maximum, "open-file limit");
            return;
        }
    }
    let raised = Rlimit {
        current: Some(target),
        maximum: now.maximum,
    };
    match setrlimit(Resource::Nofile, raised) {
        Ok(()) => tracing::info!(
            from = ?now.current,
            to = target,
            "raised the soft limit on open files to the hard limit"
        ),
        Err(e) => tracing::warn!(
            soft = ?now.current,
            hard = ?now.maximum,
            "cannot raise the soft limit on open files: {e}"
        ),
    }
}

/// Makes a write past the file-size limit (RLIMIT_FSIZE) fail with EFBIG, which the log
/// reports as an error (and raises its alarm), instead of SIGXFSZ ending the process without
/// a word (its default action). PostgreSQL ignores SIGXFSZ for the same reason. Must run
/// inside the runtime.
pub fn catch_file_size_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let sigxfsz = nix::sys::signal::Signal::SIGXFSZ as i32;
    match signal(SignalKind::from_raw(sigxfsz)) {
        Ok(mut signals) => {
            tokio::spawn(async move {
                // Logged once: the log file itself may be the file over the limit.
                if signals.recv().await.is_some() {
                    tracing::warn!(
                        "a write went past the file-size limit (RLIMIT_FSIZE); it fails \
                         with EFBIG instead of ending the process"
                    );
                }
                while signals.recv().await.is_some() {}
            });
        }
        Err(e) => tracing::warn!("cannot catch SIGXFSZ: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connection_cap_stays_below_the_descriptor_limit() {
        let limits = ClientLimits {
            client_connections_max: Some(usize::MAX),
            ..ClientLimits::default()
        };
        if let Some(n) = open_file_limit() {
            assert_eq!(
                limits.client_connections_max() as u64,
                n.saturating_sub(DESCRIPTORS_RESERVED)
            );
        }
        let small = ClientLimits {
            client_connections_max: Some(3),
            ..ClientLimits::default()
        };
        assert!(small.client_connections_max() <= 3);
        assert_eq!(
            ClientLimits::default().grpc_receive_bytes_max(),
            2 * 1024 * 1024
        );
    }
}
