//! Starting and stopping one member, in three steps: open the data directory (identity,
//! storage recovery, bootstrap), start the peer transport, then serve clients until asked to
//! stop or the replica stops on its own. Each step has its own error type, so that an
//! operator's message says which step failed and why.

mod config;
mod open;
mod serve;

pub use self::config::MemberConfig;
pub use self::open::OpenError;
pub use self::serve::{ServeError, TransportError};
pub use crate::identity::IdentityError;

use crate::metrics::Metrics;
use std::fmt;
use std::future::Future;
use std::sync::Arc;

/// Why a member stopped with an error: the step that failed.
#[derive(Debug)]
pub enum RunError {
    Open(OpenError),
    Transport(TransportError),
    Serve(ServeError),
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Each step's message already says what failed; no prefix needed.
        match self {
            RunError::Open(e) => e.fmt(f),
            RunError::Transport(e) => e.fmt(f),
            RunError::Serve(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for RunError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RunError::Open(e) => Some(e),
            RunError::Transport(e) => Some(e),
            RunError::Serve(e) => Some(e),
        }
    }
}

impl From<OpenError> for RunError {
    fn from(e: OpenError) -> Self {
        RunError::Open(e)
    }
}

impl From<TransportError> for RunError {
    fn from(e: TransportError) -> Self {
        RunError::Transport(e)
    }
}

impl From<ServeError> for RunError {
    fn from(e: ServeError) -> Self {
        RunError::Serve(e)
    }
}

/// Runs one member until `shutdown` resolves or it fails.
pub async fn run(
    mut cfg: MemberConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    crate::limits::raise_open_file_limit();
    crate::limits::catch_file_size_signal();
    let cap = cfg.client_limits.client_connections_max();
    if cfg
        .client_limits
        .client_connections_max
        .is_some_and(|n| n > cap)
    {
        tracing::warn!(
            cap,
            "--max-client-connections is above what the open-file limit allows; capped"
        );
    }
    let metrics = Arc::new(Metrics::default());
    let data = open::open_data_dir(&mut cfg, &metrics)?;
    let peers = serve::start_transport(&cfg, data.identity.incarnation).await?;
    serve::serve(cfg, data, peers, metrics, shutdown).await?;
    Ok(())
}
