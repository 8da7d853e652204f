//! The fault proxy's modes, against a framed sink standing in for a member's peer port.

use std::time::{Duration, Instant};
use synod_chaos::proxy::{Link, LinkMode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// A sink that reports every connection and every frame payload it receives (as a u32).
async fn sink() -> (std::net::SocketAddr, mpsc::UnboundedReceiver<Option<u32>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            let _ = tx.send(None); // a connection arrived
            let tx = tx.clone();
            tokio::spawn(async move {
                loop {
                    let mut len = [0u8; 4];
                    if s.read_exact(&mut len).await.is_err() {
                        return;
                    }
                    let mut payload = vec![0u8; u32::from_le_bytes(len) as usize];
                    if s.read_exact(&mut payload).await.is_err() {
                        return;
                    }
                    let v = u32::from_le_bytes(payload[..4].try_into().unwrap());
                    let _ = tx.send(Some(v));
                }
            });
        }
    });
    (addr, rx)
}

async fn send(s: &mut TcpStream, v: u32) {
    let mut frame = 4u32.to_le_bytes().to_vec();
    frame.extend_from_slice(&v.to_le_bytes());
    s.write_all(&frame).await.unwrap();
}

async fn next(
    rx: &mut mpsc::UnboundedReceiver<Option<u32>>,
    within: Duration,
) -> Option<Option<u32>> {
    tokio::time::timeout(within, rx.recv()).await.ok().flatten()
}

const SHORT: Duration = Duration::from_millis(300);
const LONG: Duration = Duration::from_secs(5);

#[tokio::test]
async fn pass_forwards_frames_in_order() {
    let (target, mut rx) = sink().await;
    let link = Link::start(target, 1).await.unwrap();
    let mut c = TcpStream::connect(link.addr()).await.unwrap();
    for v in 0..50 {
        send(&mut c, v).await;
    }
    assert_eq!(next(&mut rx, LONG).await, Some(None));
    for v in 0..50 {
        assert_eq!(next(&mut rx, LONG).await, Some(Some(v)));
    }
    assert_eq!(link.stats().frames_passed, 50);
}

#[tokio::test]
async fn blackhole_swallows_frames_silently_and_holds_new_connections() {
    let (target, mut rx) = sink().await;
    let link = Link::start(target, 1).await.unwrap();
    let mut c = TcpStream::connect(link.addr()).await.unwrap();
    send(&mut c, 1).await;
    assert_eq!(next(&mut rx, LONG).await, Some(None));
    assert_eq!(next(&mut rx, LONG).await, Some(Some(1)));

    link.set(LinkMode::Blackhole);
    send(&mut c, 2).await; // the connection stays up: nobody is told
    let mut held = TcpStream::connect(link.addr()).await.unwrap();
    send(&mut held, 100).await;
    assert_eq!(next(&mut rx, SHORT).await, None, "nothing gets through");

    link.set(LinkMode::Pass);
    send(&mut c, 3).await;
    // The held connection is connected onward now, and its first frame delivered; the
    // frame swallowed on the open connection is gone for good.
    let mut got = Vec::new();
    while let Some(e) = next(&mut rx, SHORT).await {
        got.push(e);
    }
    got.sort();
    assert_eq!(got, vec![None, Some(3), Some(100)]);
    assert_eq!(link.stats().frames_dropped, 1);
}

#[tokio::test]
async fn drop_loses_a_fraction_of_whole_frames() {
    let (target, mut rx) = sink().await;
    let link = Link::start(target, 7).await.unwrap();
    link.set(LinkMode::Drop(0.5));
    let mut c = TcpStream::connect(link.addr()).await.unwrap();
    for v in 0..400 {
        send(&mut c, v).await;
    }
    assert_eq!(next(&mut rx, LONG).await, Some(None));
    let mut got = Vec::new();
    while let Some(Some(v)) = next(&mut rx, SHORT).await {
        got.push(v);
    }
    assert!(
        (100..300).contains(&got.len()),
        "{} of 400 arrived",
        got.len()
    );
    assert!(
        got.windows(2).all(|w| w[0] < w[1]),
        "in order, none corrupted"
    );
}

#[tokio::test]
async fn delay_holds_every_frame() {
    let (target, mut rx) = sink().await;
    let link = Link::start(target, 1).await.unwrap();
    link.set(LinkMode::Delay(Duration::from_millis(200)));
    let mut c = TcpStream::connect(link.addr()).await.unwrap();
    let sent = Instant::now();
    send(&mut c, 9).await;
    assert_eq!(next(&mut rx, LONG).await, Some(None));
    assert_eq!(next(&mut rx, LONG).await, Some(Some(9)));
    assert!(sent.elapsed() >= Duration::from_millis(200));
}

#[tokio::test]
async fn reset_closes_open_connections() {
    let (target, mut rx) = sink().await;
    let link = Link::start(target, 1).await.unwrap();
    let mut c = TcpStream::connect(link.addr()).await.unwrap();
    send(&mut c, 1).await;
    assert_eq!(next(&mut rx, LONG).await, Some(None));
    assert_eq!(next(&mut rx, LONG).await, Some(Some(1)));
    link.reset();
    let mut buf = [0u8; 1];
    let read = tokio::time::timeout(LONG, c.read(&mut buf)).await.unwrap();
    assert!(matches!(read, Ok(0) | Err(_)), "the connection was closed");
    // A new connection works.
    let mut c = TcpStream::connect(link.addr()).await.unwrap();
    send(&mut c, 2).await;
    assert_eq!(next(&mut rx, LONG).await, Some(None));
    assert_eq!(next(&mut rx, LONG).await, Some(Some(2)));
}
