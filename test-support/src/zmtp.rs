//! ZMTP 3.0 written by hand, for tests that play a hostile or broken peer over raw TCP: the
//! greeting, the NULL handshake, frames and bare frame headers; the [`attacks`] every receiving
//! socket is tried with; and [`FakePeer`], a listener that plays a hostile publisher to the
//! workers that connect to it.

use crate::wait::{PATIENCE, wait_until};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

const MORE: u8 = 0b001;
const LONG: u8 = 0b010;
const COMMAND: u8 = 0b100;

/// The 64-byte greeting of ZMTP 3.0 with `mechanism` (`b"NULL"`, `b"PLAIN"`, `b"CURVE"`).
pub fn greeting(mechanism: &[u8]) -> Vec<u8> {
    let mut greeting = vec![0u8; 64];
    greeting[0] = 0xFF;
    greeting[9] = 0x7F;
    greeting[10] = 3;
    greeting[12..12 + mechanism.len()].copy_from_slice(mechanism);
    greeting
}

/// A whole NULL handshake of a peer of `socket_type` (`SUB`, `PUSH`, …): greeting and READY.
pub fn handshake(socket_type: &str) -> Vec<u8> {
    let mut body = vec![5];
    body.extend_from_slice(b"READY");
    body.push(11);
    body.extend_from_slice(b"Socket-Type");
    body.extend_from_slice(&(socket_type.len() as u32).to_be_bytes());
    body.extend_from_slice(socket_type.as_bytes());
    let mut ready = vec![COMMAND, body.len() as u8];
    ready.extend_from_slice(&body);
    [greeting(b"NULL"), ready].concat()
}

/// A message frame (`more`: another frame of the same message follows).
pub fn frame(more: bool, body: &[u8]) -> Vec<u8> {
    let more = if more { MORE } else { 0 };
    let mut frame = if body.len() > 255 {
        let mut header = vec![more | LONG];
        header.extend_from_slice(&(body.len() as u64).to_be_bytes());
        header
    } else {
        vec![more, body.len() as u8]
    };
    frame.extend_from_slice(body);
    frame
}

/// A long frame header announcing `size` bytes, with no body after it.
pub fn huge_header(size: u64) -> Vec<u8> {
    let mut header = vec![LONG];
    header.extend_from_slice(&size.to_be_bytes());
    header
}

/// One attack on a ZMQ socket over raw TCP: what is sent, and the reason the guard counts its
/// cut under (`None`: the guard lets it through or waits, and the socket's owner copes).
pub struct Attack {
    /// What it is, in words.
    pub name: &'static str,
    /// The bytes the attacker sends.
    pub bytes: Vec<u8>,
    /// `guard_cut_total{reason}` of the cut this attack must get.
    pub cut: Option<&'static str>,
}

/// The attacks on a socket whose peer plays `peer_type` (`SUB`, `PULL`, …), for a guard that
/// runs with `MAX_MESSAGE_BYTES=max_message_bytes`: noise, a truncated greeting, another
/// mechanism, a frame announcing 2^40 bytes, a multipart message past the limit, and a valid
/// frame with a garbage body.
pub fn attacks(peer_type: &str, max_message_bytes: usize) -> Vec<Attack> {
    let half = vec![0xA5; max_message_bytes / 2 + 1];
    vec![
        Attack {
            name: "noise",
            bytes: noise(4096),
            cut: Some("bad_greeting"),
        },
        Attack {
            name: "a truncated greeting",
            bytes: greeting(b"NULL")[..20].to_vec(),
            // The attacker goes silent: the guard's handshake timeout (10 s) cuts it later, if
            // the attacker has not hung up first.
            cut: None,
        },
        Attack {
            name: "the PLAIN mechanism",
            bytes: greeting(b"PLAIN"),
            cut: Some("mechanism"),
        },
        Attack {
            name: "a frame announcing 2^40 bytes",
            bytes: [handshake(peer_type), huge_header(1 << 40)].concat(),
            cut: Some("oversize_frame"),
        },
        Attack {
            name: "a multipart message past the limit",
            bytes: [
                handshake(peer_type),
                frame(true, &half),
                frame(false, &half),
            ]
            .concat(),
            cut: Some("oversize_message"),
        },
        Attack {
            name: "a valid frame with a garbage body",
            bytes: [handshake(peer_type), frame(false, &noise(100))].concat(),
            cut: None,
        },
    ]
}

/// `len` bytes that are not ZMTP (a fixed pseudo-random sequence).
pub fn noise(len: usize) -> Vec<u8> {
    let mut state: u32 = 0x9e37_79b9;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            (state >> 24) as u8
        })
        .collect()
}

/// Connects to `endpoint` (`tcp://host:port`), writes `bytes`, and reports whether the other
/// side closed the connection within `within` (reading and dropping what it sends meanwhile).
pub async fn send_and_see_cut(endpoint: &str, bytes: &[u8], within: Duration) -> bool {
    let address = endpoint.trim_start_matches("tcp://");
    let Ok(mut stream) = TcpStream::connect(address).await else {
        return true;
    };
    if stream.write_all(bytes).await.is_err() {
        return true;
    }
    let mut sink = vec![0u8; 16 * 1024];
    let closed = async {
        loop {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    };
    tokio::time::timeout(within, closed).await.is_ok()
}

/// A fake peer listening where a worker connects (a publisher's address): it sends every
/// connection it accepts the same bytes at once, then reads and drops whatever comes until the
/// other side closes. Dropping it stops listening and closes every connection.
pub struct FakePeer {
    task: JoinHandle<()>,
    accepted: Arc<AtomicUsize>,
}

impl FakePeer {
    /// Listens on `endpoint` (`tcp://host:port`) and greets each connection with `bytes`. The
    /// port may just have been left by a publisher, so a bind that finds it in use is retried
    /// (within [`PATIENCE`]).
    pub async fn listen(endpoint: &str, bytes: Vec<u8>) -> FakePeer {
        let address = endpoint.trim_start_matches("tcp://").to_owned();
        let what = format!("{address} free for a fake peer");
        let listener = wait_until(&what, PATIENCE, async || {
            TcpListener::bind(address.as_str()).await.ok()
        })
        .await;
        let accepted = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn(serve(listener, bytes, Arc::clone(&accepted)));
        FakePeer { task, accepted }
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::Relaxed)
    }
}

impl Drop for FakePeer {
    fn drop(&mut self) {
        // Dropping the task drops the listener and the set of connections with it.
        self.task.abort();
    }
}

async fn serve(listener: TcpListener, bytes: Vec<u8>, accepted: Arc<AtomicUsize>) {
    let mut connections = JoinSet::new();
    while let Ok((mut stream, _)) = listener.accept().await {
        accepted.fetch_add(1, Ordering::Relaxed);
        while connections.try_join_next().is_some() {}
        let bytes = bytes.clone();
        connections.spawn(async move {
            if stream.write_all(&bytes).await.is_err() {
                return;
            }
            let mut sink = vec![0u8; 16 * 1024];
            while let Ok(1..) = stream.read(&mut sink).await {}
        });
    }
}
