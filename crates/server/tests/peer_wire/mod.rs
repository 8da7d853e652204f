//! The peer protocol spoken by hand, written from its description in `transport/mod.rs`:
//! a test plays a peer (or a stranger) towards a transport or a real `synod` process.

#![allow(dead_code)] // each test binary uses part of it

use std::net::SocketAddr;
use std::time::Duration;

use synod_paxos::codec::{put_message, put_varint};
use synod_paxos::{Message, NodeId};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

/// Upper bound for an answer or a close that should come at once.
const WAIT: Duration = Duration::from_secs(10);

/// `[payload length: u32 LE][payload]`.
pub fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = (payload.len() as u32).to_le_bytes().to_vec();
    out.extend_from_slice(payload);
    out
}

/// A hello frame from `from` to `to` of cluster `cluster`, presenting `incarnation`.
pub fn hello(cluster: u64, from: NodeId, to: NodeId, incarnation: u64) -> Vec<u8> {
    let mut p = b"SYNODPX1".to_vec();
    p.extend_from_slice(&3u16.to_le_bytes());
    p.extend_from_slice(&cluster.to_le_bytes());
    p.extend_from_slice(&from.to_le_bytes());
    p.extend_from_slice(&to.to_le_bytes());
    p.extend_from_slice(&incarnation.to_le_bytes());
    frame(&p)
}

/// A batch frame holding `messages`.
pub fn batch(messages: &[Message]) -> Vec<u8> {
    let mut p = Vec::new();
    put_varint(&mut p, messages.len() as u64);
    for m in messages {
        put_message(&mut p, m);
    }
    frame(&p)
}

/// Connects to `addr` and handshakes as `from` of `cluster` presenting `incarnation`; the
/// other side must accept. Returns the stream and the acceptor's incarnation.
pub async fn handshake(
    addr: SocketAddr,
    cluster: u64,
    from: NodeId,
    to: NodeId,
    incarnation: u64,
) -> (TcpStream, u64) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&hello(cluster, from, to, incarnation))
        .await
        .unwrap();
    let mut answer = [0u8; 13];
    timeout(WAIT, s.read_exact(&mut answer))
        .await
        .expect("no handshake answer")
        .unwrap();
    assert_eq!(answer[..5], [9, 0, 0, 0, 0], "handshake not accepted");
    let theirs = u64::from_le_bytes(answer[5..].try_into().unwrap());
    (s, theirs)
}

/// Reads until the other side closes the connection (EOF or reset), returning what it sent.
pub async fn closed_by_server(s: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 512];
    loop {
        match timeout(WAIT, s.read(&mut buf)).await {
            Err(_) => panic!("the transport kept the connection open"),
            Ok(Ok(0)) | Ok(Err(_)) => return got,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// Sends `hello` on a new connection and returns the answer frame the other side sent
/// before closing.
pub async fn answer_to(addr: SocketAddr, hello: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(hello).await.unwrap();
    closed_by_server(&mut s).await
}

/// Reads one frame of at most `max` bytes.
pub async fn read_frame(s: &mut TcpStream, max: usize) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).await?;
    let len = u32::from_le_bytes(len) as usize;
    if len > max {
        return Err(std::io::Error::other(format!("frame of {len} bytes")));
    }
    let mut payload = vec![0u8; len];
    s.read_exact(&mut payload).await?;
    Ok(payload)
}

/// Reads one batch frame and decodes its messages.
pub async fn read_batch(s: &mut TcpStream) -> std::io::Result<Vec<Message>> {
    let payload = read_frame(s, 64 << 20).await?;
    let mut r = synod_paxos::codec::Reader::new(payload.into());
    let bad = |e: synod_paxos::codec::DecodeError| std::io::Error::other(e.to_string());
    let count = r.varint().map_err(bad)?;
    (0..count)
        .map(|_| synod_paxos::codec::get_message(&mut r).map_err(bad))
        .collect()
}

/// Plays the acceptor side of a handshake on a connection a node dialed: reads its hello,
/// accepts it if it is for `me` of `cluster`, answering with `incarnation`. Returns the
/// dialer's id.
pub async fn accept(
    s: &mut TcpStream,
    cluster: u64,
    me: NodeId,
    incarnation: u64,
) -> Option<NodeId> {
    let hello = timeout(WAIT, read_frame(s, 256)).await.ok()?.ok()?;
    let u64_at = |at: usize| u64::from_le_bytes(hello[at..at + 8].try_into().unwrap());
    if hello.len() != 42 || &hello[..8] != b"SYNODPX1" || u64_at(10) != cluster || u64_at(26) != me
    {
        return None;
    }
    let mut answer = vec![0u8];
    answer.extend_from_slice(&incarnation.to_le_bytes());
    s.write_all(&frame(&answer)).await.ok()?;
    Some(u64_at(18))
}
