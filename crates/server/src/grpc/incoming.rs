//! Accepting client connections under a cap. Each open connection holds a descriptor for as
//! long as the client keeps it, idle or not; past the cap a new connection is accepted and
//! closed at once (so it neither waits in the backlog nor takes a descriptor the log needs),
//! counted, and logged at most once per `REFUSAL_LOG_INTERVAL`.

use crate::limits::ClientLimits;
use crate::metrics::Metrics;
use rustix::io::Errno;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tonic::codegen::tokio_stream::Stream;
use tonic::transport::server::{Connected, TcpConnectInfo};

/// Refused connections are logged at most this often (a flood must not flood the log too).
const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// After an accept error for want of descriptors, wait this long before accepting again:
/// the connection stays in the backlog, and retrying at once would spin.
const ACCEPT_RETRY_DELAY: Duration = Duration::from_millis(100);

/// A listener's accepted connections, as tonic's server takes them.
#[derive(Debug)]
pub struct CappedIncoming {
    listener: TcpListener,
    limits: ClientLimits,
    metrics: Arc<Metrics>,
    /// Refused since the last log line, and when that was.
    refused_unlogged: u64,
    last_logged: Option<Instant>,
    retry: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl CappedIncoming {
    pub fn new(listener: TcpListener, limits: ClientLimits, metrics: Arc<Metrics>) -> Self {
        CappedIncoming {
            listener,
            limits,
            metrics,
            refused_unlogged: 0,
            last_logged: None,
            retry: None,
        }
    }

    fn refuse(&mut self, stream: TcpStream, cap: usize) {
        drop(stream); // closes it: the client sees the connection end at once
        self.metrics
            .client_connections_refused
            .fetch_add(1, Relaxed);
        self.refused_unlogged += 1;
        let now = Instant::now();
        if self
            .last_logged
            .is_none_or(|t| now.duration_since(t) >= REFUSAL_LOG_INTERVAL)
        {
            tracing::warn!(
                refused = self.refused_unlogged,
                cap,
                "refused client connections: the cap on client connections is reached \
                 (--max-client-connections, at most the open-file limit less {} reserved)",
                crate::limits::DESCRIPTORS_RESERVED
            );
            self.refused_unlogged = 0;
            self.last_logged = Some(now);
        }
    }
}

impl Stream for CappedIncoming {
    type Item = io::Result<ClientConnection>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if let Some(delay) = &mut this.retry {
                ready!(delay.as_mut().poll(cx));
                this.retry = None;
            }
            match ready!(this.listener.poll_accept(cx)) {
                Ok((stream, _)) => {
                    let cap = this.limits.client_connections_max();
                    let open = this.metrics.client_connections.load(Relaxed);
                    if open >= cap as u64 {
                        this.refuse(stream, cap);
                        continue;
                    }
                    // Small replies must not wait for the next packet (Nagle's algorithm).
                    let _ = stream.set_nodelay(true);
                    this.metrics.client_connections.fetch_add(1, Relaxed);
                    return Poll::Ready(Some(Ok(ClientConnection {
                        stream,
                        metrics: this.metrics.clone(),
                    })));
                }
                Err(e) => {
                    // Never ends the server: a client may have given up mid-handshake
                    // (ECONNABORTED), or the table is full for a moment (EMFILE/ENFILE).
                    let exhausted = e.raw_os_error().is_some_and(|n| {
                        n == Errno::MFILE.raw_os_error() || n == Errno::NFILE.raw_os_error()
                    });
                    if exhausted {
                        tracing::warn!("accepting a client connection: {e}; retrying shortly");
                        this.retry = Some(Box::pin(tokio::time::sleep(ACCEPT_RETRY_DELAY)));
                    } else {
                        tracing::debug!("accepting a client connection: {e}");
                    }
                }
            }
        }
    }
}

/// An accepted client connection; counted open until dropped.
#[derive(Debug)]
pub struct ClientConnection {
    stream: TcpStream,
    metrics: Arc<Metrics>,
}

impl Drop for ClientConnection {
    fn drop(&mut self) {
        self.metrics.client_connections.fetch_sub(1, Relaxed);
    }
}

impl Connected for ClientConnection {
    type ConnectInfo = TcpConnectInfo;
    fn connect_info(&self) -> TcpConnectInfo {
        self.stream.connect_info()
    }
}

impl AsyncRead for ClientConnection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for ClientConnection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
