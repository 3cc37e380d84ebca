//! One relayed connection: bytes from the untrusted peer pass the ZMTP inspector on their way
//! to our socket; bytes from our socket are drained at once and held, up to the outbound
//! budget, until the peer takes them. Whichever direction ends first ends both.

use crate::Limits;
use crate::report::CutReason;
use crate::zmtp::Inspector;
use bytes::{Buf, BytesMut};
use std::io;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream, tcp, unix};
use tokio::time::Instant;

/// Bytes read at a time in each direction.
const CHUNK: usize = 64 * 1024;
/// An emptied outbound buffer larger than this gives its memory back.
const KEEP_CAPACITY: usize = 4 * CHUNK;

/// How a relayed connection ended.
#[derive(Debug)]
pub(crate) enum End {
    /// One side closed.
    Closed,
    /// The guard cut it.
    Cut(CutReason),
    /// Reading or writing failed (a reset, most often).
    Failed(io::Error),
}

/// Relays between `untrusted` (the peer the guard protects against) and `ours` (the zeromq
/// socket's side) until either ends; both are closed when this returns.
pub(crate) async fn relay(mut untrusted: TcpStream, mut ours: UnixStream, limits: &Limits) -> End {
    // Small messages must not wait for Nagle; zeromq sets the same on its own sockets.
    if let Err(cause) = untrusted.set_nodelay(true) {
        return End::Failed(cause);
    }
    let (peer_read, peer_write) = untrusted.split();
    let (ours_read, ours_write) = ours.split();
    tokio::select! {
        end = inbound(peer_read, ours_write, limits) => end,
        end = outbound(ours_read, peer_write, limits.outbound_budget_bytes) => end,
    }
}

/// Peer to our socket: every chunk is inspected before it is forwarded, and the handshake
/// must be done before `limits.handshake_timeout` has passed.
async fn inbound(mut from: tcp::ReadHalf<'_>, mut to: unix::WriteHalf<'_>, limits: &Limits) -> End {
    let mut inspector = Inspector::new(limits.frame_limits());
    let deadline = Instant::now() + limits.handshake_timeout;
    let mut chunk = vec![0; CHUNK];
    loop {
        let read = if inspector.handshake_done() {
            from.read(&mut chunk).await
        } else {
            match tokio::time::timeout_at(deadline, from.read(&mut chunk)).await {
                Ok(read) => read,
                Err(_elapsed) => return End::Cut(CutReason::HandshakeTimeout),
            }
        };
        let n = match read {
            Ok(0) => return End::Closed,
            Ok(n) => n,
            Err(cause) => return End::Failed(cause),
        };
        if let Err(violation) = inspector.feed(&chunk[..n]) {
            return End::Cut(CutReason::Violation(violation));
        }
        if let Err(cause) = to.write_all(&chunk[..n]).await {
            return End::Failed(cause);
        }
    }
}

/// Our socket to the peer. With a budget, reading from our socket never waits for the peer:
/// what the peer has not taken yet is held here, and more than `budget` of it cuts the peer.
async fn outbound(
    mut from: unix::ReadHalf<'_>,
    mut to: tcp::WriteHalf<'_>,
    budget: Option<usize>,
) -> End {
    let Some(budget) = budget else {
        return match tokio::io::copy(&mut from, &mut to).await {
            Ok(_) => End::Closed,
            Err(cause) => End::Failed(cause),
        };
    };
    let mut chunk = vec![0; CHUNK];
    let mut pending = BytesMut::new();
    loop {
        tokio::select! {
            read = from.read(&mut chunk) => {
                let n = match read {
                    Ok(0) => return End::Closed,
                    Ok(n) => n,
                    Err(cause) => return End::Failed(cause),
                };
                // The usual case, a peer keeping up: hand the bytes straight to its socket.
                let mut sent = 0;
                if pending.is_empty() {
                    sent = match to.try_write(&chunk[..n]) {
                        Ok(sent) => sent,
                        Err(cause) if cause.kind() == io::ErrorKind::WouldBlock => 0,
                        Err(cause) => return End::Failed(cause),
                    };
                }
                pending.extend_from_slice(&chunk[sent..n]);
                if pending.len() > budget {
                    return End::Cut(CutReason::SlowPeer);
                }
            }
            written = to.write(&pending), if !pending.is_empty() => {
                match written {
                    Ok(0) => return End::Failed(io::ErrorKind::WriteZero.into()),
                    Ok(n) => pending.advance(n),
                    Err(cause) => return End::Failed(cause),
                }
                if pending.is_empty() && pending.capacity() > KEEP_CAPACITY {
                    pending = BytesMut::new();
                }
            }
        }
    }
}
