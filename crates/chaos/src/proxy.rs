//! The fault proxy: one TCP forwarder per *directed* peer link, whose behaviour the test
//! changes at run time. No root, no kernel features.
//!
//! Why per directed link: a `synod` member dials every peer and only sends on the connection
//! it dialed (see `crates/server/src/transport/mod.rs`), so everything member `i` says to
//! member `j` travels on one connection, `i` → proxy(i→j) → `j`. Cutting that proxy cuts
//! exactly `i → j` and nothing else: one-way partitions come for free.
//!
//! The proxy understands the transport's framing (`[u32 LE length][payload]`, the hello
//! first) and applies the link's mode to whole frames, so a dropped frame is a lost batch
//! of Paxos messages, never a corrupted stream. The reverse direction (the handshake
//! answer) is forwarded as is.
//!
//! Modes:
//! - [`LinkMode::Pass`]: frames go through at once.
//! - [`LinkMode::Blackhole`]: what a silent network partition does. Frames on open
//!   connections are swallowed (the connection stays up: nobody is told); a new connection
//!   is accepted but not connected onward until the mode changes, so the dialer's handshake
//!   times out as against an unreachable host.
//! - [`LinkMode::Drop`]`(p)`: each frame (hello included) is lost with probability `p`.
//! - [`LinkMode::Delay`]`(d)`: each frame is delivered `d` after it arrived, in order.
//!
//! [`Link::reset`] closes every open connection of the link at once (a connection reset),
//! which the dialer sees as a broken connection and redials.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;
use synod_testkit::rng::Rng;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Largest frame forwarded: the transport's own limit (64 MiB) plus the length prefix and
/// some slack. A longer "frame" means the stream is not what we think: close it.
const FRAME_BYTES_MAX: usize = (64 << 20) + 1024;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LinkMode {
    Pass,
    Blackhole,
    /// Loses each frame with this probability (0..=1).
    Drop(f64),
    Delay(Duration),
}

impl fmt::Display for LinkMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LinkMode::Pass => f.write_str("pass"),
            LinkMode::Blackhole => f.write_str("blackhole"),
            LinkMode::Drop(p) => write!(f, "drop {:.0}%", p * 100.0),
            LinkMode::Delay(d) => write!(f, "delay {}ms", d.as_millis()),
        }
    }
}

/// What went through a link, for tests of the proxy and for reports.
#[derive(Debug, Default)]
pub struct LinkCounters {
    pub connections: AtomicU64,
    pub frames_passed: AtomicU64,
    pub frames_dropped: AtomicU64,
    pub bytes_passed: AtomicU64,
}

/// A snapshot of [`LinkCounters`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkStats {
    pub connections: u64,
    pub frames_passed: u64,
    pub frames_dropped: u64,
    pub bytes_passed: u64,
}

/// One directed link's proxy. Dropping it closes its listener and every connection.
///
/// A link either listens on a port of its own ([`Link::start`]: the dialer is told to
/// connect there with `--peer-dial`), or is one route of a [`FrontDoor`] that several
/// dialers share ([`FrontDoor::link`]); both behave alike.
#[derive(Debug)]
pub struct Link {
    listen: SocketAddr,
    mode: watch::Sender<LinkMode>,
    /// Bumped by [`Link::reset`]; connections opened under an older value close.
    generation: watch::Sender<u64>,
    counters: Arc<LinkCounters>,
    accept: Option<JoinHandle<()>>,
}

/// What a connection of a link needs to see of it.
#[derive(Clone, Debug)]
struct Tap {
    mode: watch::Receiver<LinkMode>,
    generation: watch::Receiver<u64>,
    counters: Arc<LinkCounters>,
}

impl Link {
    /// Listens on a fresh loopback port and forwards to `target`. `seed` drives the frame
    /// losses of [`LinkMode::Drop`].
    pub async fn start(target: SocketAddr, seed: u64) -> std::io::Result<Link> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let listen = listener.local_addr()?;
        let (mut link, tap) = Link::unbound(listen);
        link.accept = Some(tokio::spawn(accept_loop(listener, target, tap, seed)));
        Ok(link)
    }

    fn unbound(listen: SocketAddr) -> (Link, Tap) {
        let (mode, _) = watch::channel(LinkMode::Pass);
        let (generation, _) = watch::channel(0u64);
        let counters = Arc::new(LinkCounters::default());
        let tap = Tap {
            mode: mode.subscribe(),
            generation: generation.subscribe(),
            counters: counters.clone(),
        };
        let link = Link {
            listen,
            mode,
            generation,
            counters,
            accept: None,
        };
        (link, tap)
    }

    /// Where the dialing member must connect.
    pub fn addr(&self) -> SocketAddr {
        self.listen
    }

    pub fn set(&self, mode: LinkMode) {
        self.mode.send_replace(mode);
    }

    pub fn mode(&self) -> LinkMode {
        *self.mode.borrow()
    }

    /// Closes every open connection now; new ones are served under the current mode.
    pub fn reset(&self) {
        self.generation.send_modify(|g| *g += 1);
    }

    pub fn stats(&self) -> LinkStats {
        let c = &self.counters;
        LinkStats {
            connections: c.connections.load(Relaxed),
            frames_passed: c.frames_passed.load(Relaxed),
            frames_dropped: c.frames_dropped.load(Relaxed),
            bytes_passed: c.bytes_passed.load(Relaxed),
        }
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        // Connection tasks end when the generation sender goes (see `serve`).
        if let Some(accept) = &self.accept {
            accept.abort();
        }
    }
}

/// The peer transport's hello (crates/server/src/transport/handshake.rs): magic
/// `b"SYNODPX1"`, version u16 LE, cluster id u64 LE, *sender id* u64 LE, receiver id u64 LE,
/// incarnation u64 LE.
const HELLO_MAGIC: &[u8; 8] = b"SYNODPX1";
const HELLO_SENDER_AT: usize = 8 + 2 + 8;
const HELLO_BYTES: usize = 8 + 2 + 4 * 8;

/// The sender's member id in a framed hello (length prefix included), if it is one.
pub fn hello_sender(frame: &[u8]) -> Option<u64> {
    let payload = frame.get(4..)?;
    if payload.len() != HELLO_BYTES || &payload[..8] != HELLO_MAGIC {
        return None;
    }
    let id = payload.get(HELLO_SENDER_AT..HELLO_SENDER_AT + 8)?;
    Some(u64::from_le_bytes(id.try_into().ok()?))
}

/// One listener in front of a member's peer port that every dialer shares, telling the
/// directed links apart by the sender id in the transport's hello (the first frame of
/// every peer connection).
///
/// Why: a member added at run time is dialed by members started before it existed, at the
/// peer URL they read from the member table; they cannot be given a `--peer-dial` entry for
/// it (the server accepts entries only for names in `--initial-cluster`). So an added
/// member *advertises* its front door's address as its peer URL (its member id derives from
/// it) and listens on another port; every connection to it crosses the front door, which
/// routes it through the link of its sender.
#[derive(Debug)]
pub struct FrontDoor {
    listen: SocketAddr,
    routes: Arc<std::sync::Mutex<HashMap<u64, (Tap, Rng)>>>,
    /// Connections whose first frame named no known sender (passed through unfaulted).
    unknown: Arc<AtomicU64>,
    accept: JoinHandle<()>,
}

impl FrontDoor {
    pub async fn start(target: SocketAddr) -> std::io::Result<FrontDoor> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let listen = listener.local_addr()?;
        let routes = Arc::new(std::sync::Mutex::new(HashMap::new()));
        let unknown = Arc::new(AtomicU64::new(0));
        let accept = tokio::spawn(front_door_loop(
            listener,
            target,
            routes.clone(),
            unknown.clone(),
        ));
        Ok(FrontDoor {
            listen,
            routes,
            unknown,
            accept,
        })
    }

    /// The address to advertise.
    pub fn addr(&self) -> SocketAddr {
        self.listen
    }

    /// The link carrying what member `sender` says to the member behind this door.
    pub fn link(&self, sender: u64, seed: u64) -> Link {
        let (link, tap) = Link::unbound(self.listen);
        self.routes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(sender, (tap, Rng::new(seed)));
        link
    }

    /// Connections from a sender no link was made for: they went through unfaulted.
    pub fn unknown_senders(&self) -> u64 {
        self.unknown.load(Relaxed)
    }
}

impl Drop for FrontDoor {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn front_door_loop(
    listener: TcpListener,
    target: SocketAddr,
    routes: Arc<std::sync::Mutex<HashMap<u64, (Tap, Rng)>>>,
    unknown: Arc<AtomicU64>,
) {
    loop {
        let Ok((mut inbound, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let routes = routes.clone();
        let unknown = unknown.clone();
        tokio::spawn(async move {
            // The dialer sends its hello at once; one that does not is given up on as the
            // member would.
            let first = tokio::time::timeout(Duration::from_secs(10), read_frame(&mut inbound));
            let Ok(Ok(hello)) = first.await else {
                return;
            };
            let route = hello_sender(&hello).and_then(|id| {
                let mut routes = routes.lock().unwrap_or_else(|p| p.into_inner());
                routes
                    .get_mut(&id)
                    .map(|(tap, rng)| (tap.clone(), rng.fork()))
            });
            let (tap, rng) = match route {
                Some(r) => r,
                None => {
                    unknown.fetch_add(1, Relaxed);
                    let (link, tap) = Link::unbound(target);
                    // Kept alive for the connection's life: a pass-through.
                    let _link = link;
                    serve(inbound, target, tap, Rng::new(0), Some(hello)).await;
                    return;
                }
            };
            tap.counters.connections.fetch_add(1, Relaxed);
            serve(inbound, target, tap, rng, Some(hello)).await;
        });
    }
}

async fn accept_loop(listener: TcpListener, target: SocketAddr, tap: Tap, seed: u64) {
    let mut rng = Rng::new(seed);
    loop {
        let Ok((inbound, _)) = listener.accept().await else {
            // Out of file descriptors, say: do not spin.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        tap.counters.connections.fetch_add(1, Relaxed);
        tokio::spawn(serve(inbound, target, tap.clone(), rng.fork(), None));
    }
}

/// One connection, until either side closes, the link is reset, or the link is dropped.
/// `first`: a frame already read from the dialer (a front door reads the hello).
async fn serve(inbound: TcpStream, target: SocketAddr, tap: Tap, rng: Rng, first: Option<Vec<u8>>) {
    let Tap {
        mode,
        mut generation,
        counters,
    } = tap;
    let born = *generation.borrow_and_update();
    let reset = async move {
        loop {
            if generation.changed().await.is_err() || *generation.borrow() != born {
                return;
            }
        }
    };
    tokio::select! {
        _ = forward(inbound, target, mode, counters, rng, first) => {}
        _ = reset => {}
    }
}

async fn forward(
    inbound: TcpStream,
    target: SocketAddr,
    mut mode: watch::Receiver<LinkMode>,
    counters: Arc<LinkCounters>,
    mut rng: Rng,
    first: Option<Vec<u8>>,
) {
    // An unreachable host: hold the dialer's connection, unconnected, while blackholed.
    if mode.wait_for(|m| *m != LinkMode::Blackhole).await.is_err() {
        return;
    }
    let Ok(outbound) = TcpStream::connect(target).await else {
        return; // the member is down: the dialer sees its connection close
    };
    let _ = inbound.set_nodelay(true);
    let _ = outbound.set_nodelay(true);
    let (mut in_r, mut in_w) = inbound.into_split();
    let (mut out_r, mut out_w) = outbound.into_split();

    // Frames to deliver, each with its release time; FIFO keeps them in order (as TCP would).
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let writer = async move {
        while let Some((at, frame)) = rx.recv().await {
            tokio::time::sleep_until(at).await;
            if out_w.write_all(&frame).await.is_err() {
                return;
            }
        }
    };
    let reader = async {
        let mut first = first;
        loop {
            let frame = match first.take() {
                Some(f) => f,
                None => match read_frame(&mut in_r).await {
                    Ok(f) => f,
                    Err(_) => return,
                },
            };
            let now = Instant::now();
            let release = match *mode.borrow() {
                LinkMode::Pass => Some(now),
                LinkMode::Blackhole => None,
                LinkMode::Drop(p) => (!rng.chance(p)).then_some(now),
                LinkMode::Delay(d) => Some(now + d),
            };
            match release {
                Some(at) => {
                    counters.frames_passed.fetch_add(1, Relaxed);
                    counters.bytes_passed.fetch_add(frame.len() as u64, Relaxed);
                    if tx.send((at, frame)).is_err() {
                        return;
                    }
                }
                None => {
                    counters.frames_dropped.fetch_add(1, Relaxed);
                }
            }
        }
    };
    let back = tokio::io::copy(&mut out_r, &mut in_w);
    tokio::select! {
        _ = writer => {}
        _ = reader => {}
        _ = back => {}
    }
}

/// One whole frame, length prefix included.
async fn read_frame(r: &mut (impl AsyncRead + Unpin)) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len).await?;
    let n = u32::from_le_bytes(len) as usize;
    if n > FRAME_BYTES_MAX {
        return Err(std::io::Error::other("frame too large: not a synod stream"));
    }
    let mut frame = vec![0u8; 4 + n];
    frame[..4].copy_from_slice(&len);
    r.read_exact(&mut frame[4..]).await?;
    Ok(frame)
}
