//! What the guard's integration tests share: a real zeromq socket behind a real guard, a raw
//! TCP client that speaks ZMTP by hand (to attack or to misbehave), the guard's metrics as
//! Prometheus would scrape them, and bounded waiting.

#![allow(dead_code)] // Each test binary uses a different part.

use guard::{Guard, InnerAddr, Limits};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::future::Future;
use std::sync::OnceLock;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use zeromq::{Socket, SocketRecv, SocketSend};

/// Longest any single step of a test may take.
pub const STEP: Duration = Duration::from_secs(10);

const MORE: u8 = 0b001;
const LONG: u8 = 0b010;
const COMMAND: u8 = 0b100;

/// The process-wide metrics recorder, installed on first use.
fn metrics() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        PrometheusBuilder::new()
            .install_recorder()
            .expect("no other recorder in a test binary")
    })
}

/// Installs the recorder; call before the guard under test starts so nothing is missed.
pub fn record_metrics() {
    metrics();
}

/// The value of a metric for one guard (`socket` label) and, if given, one `reason`.
pub fn metric(name: &str, socket: &str, reason: Option<&str>) -> u64 {
    let socket = format!("socket=\"{socket}\"");
    let reason = reason.map(|r| format!("reason=\"{r}\""));
    metrics()
        .render()
        .lines()
        .filter(|line| line.starts_with(&format!("{name}{{")))
        .filter(|line| line.contains(&socket))
        .filter(|line| reason.as_ref().is_none_or(|r| line.contains(r.as_str())))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|value| value as u64)
        .sum()
}

/// How many connections `socket`'s guard cut for `reason`.
pub fn cuts(socket: &str, reason: &str) -> u64 {
    metric("guard_cut_total", socket, Some(reason))
}

/// Waits, polling every 10 ms, until `condition` holds; panics with `what` after [`STEP`].
pub async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + STEP;
    while !condition() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Runs `future` within [`STEP`], or panics naming `what`.
pub async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(STEP, future)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

/// The 64-byte ZMTP 3.0 greeting with this mechanism, as zmq.rs writes it.
pub fn greeting(mechanism: &[u8]) -> Vec<u8> {
    let mut g = vec![0u8; 64];
    g[0] = 0xFF;
    g[9] = 0x7F;
    g[10] = 3;
    g[12..12 + mechanism.len()].copy_from_slice(mechanism);
    g
}

/// A frame: flags, size (long form past 255 bytes), body.
pub fn frame(more: bool, body: &[u8]) -> Vec<u8> {
    let mut flags = if more { MORE } else { 0 };
    let mut f = Vec::with_capacity(body.len() + 9);
    if body.len() > 255 {
        flags |= LONG;
        f.push(flags);
        f.extend_from_slice(&(body.len() as u64).to_be_bytes());
    } else {
        f.extend_from_slice(&[flags, body.len() as u8]);
    }
    f.extend_from_slice(body);
    f
}

/// A long-form frame header announcing `size` bytes, with no body.
pub fn long_header(more: bool, size: u64) -> Vec<u8> {
    let mut h = vec![LONG | if more { MORE } else { 0 }];
    h.extend_from_slice(&size.to_be_bytes());
    h
}

/// The NULL handshake of a peer of type `socket_type`: greeting, then READY with Socket-Type.
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

/// A TCP client that writes ZMTP by hand.
pub struct RawPeer {
    pub stream: TcpStream,
}

impl RawPeer {
    pub async fn connect(addr: std::net::SocketAddr) -> Self {
        let stream = within("raw connect", TcpStream::connect(addr))
            .await
            .expect("raw connect");
        Self { stream }
    }

    /// Connects with a receive buffer of `bytes`, so a peer that stops reading fills up soon.
    pub async fn connect_with_small_window(addr: std::net::SocketAddr, bytes: u32) -> Self {
        let socket = TcpSocket::new_v4().expect("socket");
        socket.set_recv_buffer_size(bytes).expect("SO_RCVBUF");
        let stream = within("raw connect", socket.connect(addr))
            .await
            .expect("raw connect");
        Self { stream }
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("raw write");
    }

    /// Sends a NULL handshake as `socket_type` and reads the other side's greeting and READY.
    pub async fn handshake(&mut self, socket_type: &str) {
        self.send(&handshake(socket_type)).await;
        let mut greeting = [0u8; 64];
        within("their greeting", self.stream.read_exact(&mut greeting))
            .await
            .expect("their greeting");
        let mut header = [0u8; 2];
        within("their READY", self.stream.read_exact(&mut header))
            .await
            .expect("their READY header");
        assert_eq!(header[0], COMMAND, "a short READY command");
        let mut ready = vec![0u8; usize::from(header[1])];
        within("their READY", self.stream.read_exact(&mut ready))
            .await
            .expect("their READY body");
    }

    /// True if the connection is closed (EOF or reset) within [`STEP`], reading and dropping
    /// whatever arrives before the close.
    pub async fn is_cut(&mut self) -> bool {
        let mut sink = vec![0u8; 64 * 1024];
        let drain = async {
            loop {
                match self.stream.read(&mut sink).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => continue,
                }
            }
        };
        tokio::time::timeout(STEP, drain).await.is_ok()
    }

    /// True if nothing closes the connection for `quiet`.
    pub async fn stays_open_for(&mut self, quiet: Duration) -> bool {
        let mut byte = [0u8; 1];
        match tokio::time::timeout(quiet, self.stream.read(&mut byte)).await {
            Err(_still_waiting) => true,
            Ok(Ok(n)) => n > 0,
            Ok(Err(_)) => false,
        }
    }
}

/// A zeromq PULL socket bound on loopback with a bind-side guard in front of it.
pub struct GuardedPull {
    pub pull: zeromq::PullSocket,
    pub guard: Guard,
    pub name: &'static str,
}

impl GuardedPull {
    pub async fn start(name: &'static str, limits: Limits) -> Self {
        record_metrics();
        let mut pull = zeromq::PullSocket::new();
        let inner = InnerAddr::new(name);
        pull.bind(&inner.endpoint()).await.expect("bind PULL");
        let guard = Guard::bind("tcp://127.0.0.1:0", &inner, limits, name)
            .await
            .expect("guard");
        Self { pull, guard, name }
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        self.guard
            .local_addr()
            .expect("a bind-side guard listens on TCP")
    }

    pub async fn raw_peer(&self) -> RawPeer {
        RawPeer::connect(self.addr()).await
    }

    /// A fresh zeromq PUSH socket connected through the guard delivers a message end to end.
    pub async fn assert_delivers(&mut self) {
        let mut push = zeromq::PushSocket::new();
        within(
            "PUSH connect",
            push.connect(&format!("tcp://{}", self.addr())),
        )
        .await
        .expect("PUSH connects through the guard");
        within("PUSH send", push.send("through the guard".into()))
            .await
            .expect("PUSH send");
        let received = within("PULL recv", self.pull.recv())
            .await
            .expect("PULL recv");
        assert_eq!(
            received.get(0).map(|b| &b[..]),
            Some(&b"through the guard"[..])
        );
    }

    pub fn cuts(&self, reason: &str) -> u64 {
        cuts(self.name, reason)
    }
}
