//! Application messages (`Body::App`): bytes one replica's driver sends another's through the
//! engine, which only queues and delivers them. They ride the same peer connections and
//! codec as the protocol's own messages, so a driver needs no second channel to coordinate
//! with its peers (for instance to forward a request only the leader can answer).

use crate::engine::Engine;
use crate::message::Body;
use crate::ready::AppMessage;
use crate::types::NodeId;
use bytes::Bytes;
use std::fmt;

/// The most bytes one application message may carry. Far below the server transport's
/// default frame limit (64 MiB), so one always fits a frame with room for the envelope and
/// other messages, and a full peer queue of them stays affordable; generous for a request or
/// reply that names many keys. A driver with more to say splits it (as snapshots are sent
/// in chunks).
pub const APP_DATA_BYTES_MAX: usize = 4 << 20;

/// Why an application message was not sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppError {
    /// The data is longer than [`APP_DATA_BYTES_MAX`].
    TooLarge { bytes: usize },
}

impl fmt::Display for AppError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AppError::TooLarge { bytes } => write!(
                f,
                "application message of {bytes} bytes exceeds {APP_DATA_BYTES_MAX}"
            ),
        }
    }
}

impl std::error::Error for AppError {}

impl Engine {
    /// Queues `data` for the driver of replica `to`, in `Ready::messages` like any message
    /// that needs no persist first; that replica's `Ready::app_messages` delivers it. As
    /// with every message it may be lost, duplicated or reordered on the way. Sent to this
    /// replica itself, it comes back in this engine's next `Ready::app_messages`, so a
    /// driver that leads needs no separate path for its own requests.
    pub fn send_app(&mut self, to: NodeId, data: Bytes) -> Result<(), AppError> {
        if data.len() > APP_DATA_BYTES_MAX {
            return Err(AppError::TooLarge { bytes: data.len() });
        }
        self.send(to, Body::App { data });
        self.process_inbox();
        Ok(())
    }

    /// An application message arrived (from a peer, or from this replica itself). One
    /// longer than the bound cannot come through the codec, but a driver may hand `step`
    /// messages it built itself: such a one is dropped rather than delivered.
    pub(crate) fn on_app(&mut self, from: NodeId, data: Bytes) {
        if data.len() <= APP_DATA_BYTES_MAX {
            self.out.app_messages.push(AppMessage { from, data });
        }
    }
}
