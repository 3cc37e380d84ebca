//! The guard itself: a listener, an accept loop on its own task that caps and counts
//! connections, and per connection a task that opens the other side and relays.
//!
//! The untrusted side is always TCP; our zeromq socket's side is always a Unix socket named
//! in Linux's abstract namespace ([`InnerAddr`]), cheaper to cross than a second loopback TCP
//! connection, with no file to create on a read-only filesystem or to leave behind.

use crate::relay::{End, relay};
use crate::report::{CutReason, Report};
use crate::{GuardError, Limits};
use std::fmt;
use std::hash::BuildHasher;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio::task::{JoinHandle, JoinSet};

/// First pause after a failed accept (out of file descriptors, most often); it doubles with
/// each failure in a row up to [`MAX_ACCEPT_PAUSE`].
const FIRST_ACCEPT_PAUSE: Duration = Duration::from_millis(10);
const MAX_ACCEPT_PAUSE: Duration = Duration::from_secs(1);

/// The private address between a guard and its zeromq socket: a Unix socket in Linux's
/// abstract namespace, named for this process, the guard and a random salt so that no two
/// guards share one, even across processes of one network namespace. Like the loopback port
/// it replaces, it is reachable from that network namespace alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InnerAddr {
    /// The abstract name, without the NUL byte that marks it as one.
    name: String,
}

impl InnerAddr {
    /// A fresh address for the guard called `label`.
    pub fn new(label: &str) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let pid = std::process::id();
        let salt = std::hash::RandomState::new().hash_one(pid);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        Self {
            name: format!("zmq-guard/{pid}/{label}/{n}/{salt:016x}"),
        }
    }

    /// The address as a zeromq endpoint, for the socket to bind or connect to: `ipc://`, then
    /// the NUL byte that makes the name abstract.
    pub fn endpoint(&self) -> String {
        format!("ipc://{}", self.path())
    }

    /// The path tokio's Unix sockets read as this abstract name.
    fn path(&self) -> String {
        format!("\0{}", self.name)
    }
}

impl fmt::Display for InnerAddr {
    /// `@name`, the usual spelling of an abstract name (the real one starts with a NUL byte).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "@{}", self.name)
    }
}

/// A running guard. It relays until [`shutdown`](Guard::shutdown) or until it is dropped;
/// either way its listener and every connection it relays are closed.
#[derive(Debug)]
#[must_use = "a guard stops relaying when it is dropped"]
pub struct Guard {
    listening: Listening,
    task: JoinHandle<()>,
}

/// What a guard listens on.
#[derive(Debug)]
enum Listening {
    /// Bind side: untrusted peers connect here; each is relayed to the zeromq socket.
    Public(SocketAddr),
    /// Connect side: our zeromq socket connects here; each of its connections is relayed to
    /// the untrusted peer.
    Inner(InnerAddr),
}

/// The listening socket, with where what it accepts is relayed to.
enum Listener {
    /// Bind side: peers, each relayed to our socket at the address.
    Tcp(TcpListener, InnerAddr),
    /// Connect side: our socket's connections, each relayed to the remote `host:port`.
    Unix(UnixListener, String),
}

/// One accepted connection, with the other side to open for it.
enum Accepted {
    /// An untrusted peer, at its address; our socket is at the [`InnerAddr`].
    Peer(TcpStream, SocketAddr, InnerAddr),
    /// Our zeromq socket; the untrusted peer is at the `host:port`.
    Ours(UnixStream, String),
}

impl Listener {
    async fn accept(&self) -> io::Result<Accepted> {
        match self {
            Listener::Tcp(listener, inner) => {
                let (stream, peer) = listener.accept().await?;
                Ok(Accepted::Peer(stream, peer, inner.clone()))
            }
            Listener::Unix(listener, remote) => {
                let (stream, _unnamed) = listener.accept().await?;
                Ok(Accepted::Ours(stream, remote.clone()))
            }
        }
    }
}

#[derive(Debug)]
struct Shared {
    limits: Limits,
    report: Report,
}

impl Guard {
    /// Guards a socket the process binds: listens on `public` (`tcp://host:port`,
    /// `host:port`, `*` for every interface, port 0 for any) and relays each peer to `inner`,
    /// where the zeromq socket is bound (`socket.bind(&inner.endpoint())`). `name` labels
    /// metrics and logs.
    pub async fn bind(
        public: &str,
        inner: &InnerAddr,
        limits: Limits,
        name: &'static str,
    ) -> Result<Guard, GuardError> {
        let endpoint = host_port(public)?;
        let listener = TcpListener::bind(&endpoint)
            .await
            .map_err(|source| GuardError::Listen { endpoint, source })?;
        // A listener always has an address once bound; the fallback only keeps this total.
        let local = listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)));
        tracing::info!(socket = name, %local, %inner, "guard listening");
        let listener = Listener::Tcp(listener, inner.clone());
        Ok(Self::start(
            listener,
            Listening::Public(local),
            limits,
            name,
        ))
    }

    /// Guards a socket the process connects: listens on a fresh [`InnerAddr`] for the zeromq
    /// socket (connect it to [`local_endpoint`](Guard::local_endpoint)) and relays each of its
    /// connections to `remote` (`tcp://host:port` or `host:port`; the host is resolved at each
    /// connection, so a restarted or moved peer is found again).
    pub async fn connect_side(
        remote: &str,
        limits: Limits,
        name: &'static str,
    ) -> Result<Guard, GuardError> {
        let remote = host_port(remote)?;
        let inner = InnerAddr::new(name);
        let listener = UnixListener::bind(inner.path()).map_err(|source| GuardError::Listen {
            endpoint: inner.to_string(),
            source,
        })?;
        tracing::info!(socket = name, %inner, remote, "guard listening");
        let listener = Listener::Unix(listener, remote);
        Ok(Self::start(listener, Listening::Inner(inner), limits, name))
    }

    fn start(listener: Listener, listening: Listening, limits: Limits, name: &'static str) -> Self {
        let shared = Arc::new(Shared {
            limits,
            report: Report::new(name),
        });
        let task = tokio::spawn(accept_loop(listener, shared));
        Self { listening, task }
    }

    /// The TCP address a bind-side guard listens on for peers, with the port resolved;
    /// `None` for a connect-side guard, which listens on an [`InnerAddr`] alone.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        match &self.listening {
            Listening::Public(local) => Some(*local),
            Listening::Inner(_) => None,
        }
    }

    /// Where the guard listens, as a zeromq endpoint: `tcp://IP:PORT` for a bind-side guard's
    /// peers, the [`InnerAddr`]'s endpoint for a connect-side guard's socket to connect to.
    pub fn local_endpoint(&self) -> String {
        match &self.listening {
            Listening::Public(local) => format!("tcp://{local}"),
            Listening::Inner(inner) => inner.endpoint(),
        }
    }

    /// Stops accepting and closes every relayed connection.
    pub async fn shutdown(mut self) {
        self.task.abort();
        // The task's only outcome now is its cancellation; there is nothing to report.
        let _cancelled = (&mut self.task).await;
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Accepts until the task is aborted; dropping it drops `connections`, which aborts them all.
async fn accept_loop(listener: Listener, shared: Arc<Shared>) {
    let report = &shared.report;
    let _zero = ZeroActiveOnExit(report);
    let mut connections = JoinSet::new();
    let mut pause = FIRST_ACCEPT_PAUSE;
    loop {
        tokio::select! {
            Some(_) = connections.join_next(), if !connections.is_empty() => {
                report.active(connections.len());
            }
            accepted = listener.accept() => {
                let accepted = match accepted {
                    Ok(accepted) => accepted,
                    Err(cause) => {
                        report.accept_failed(&cause, pause);
                        tokio::time::sleep(pause).await;
                        pause = (pause * 2).min(MAX_ACCEPT_PAUSE);
                        continue;
                    }
                };
                pause = FIRST_ACCEPT_PAUSE;
                while connections.try_join_next().is_some() {}
                if connections.len() >= shared.limits.max_connections {
                    report.cut(CutReason::OverCapacity, accepted.peer());
                    drop(accepted);
                    continue;
                }
                report.connection_opened();
                connections.spawn(connection(accepted, Arc::clone(&shared)));
                report.active(connections.len());
            }
        }
    }
}

impl Accepted {
    /// The untrusted peer's address, where it is known yet.
    fn peer(&self) -> Option<SocketAddr> {
        match self {
            Accepted::Peer(_, peer, _) => Some(*peer),
            Accepted::Ours(..) => None,
        }
    }
}

/// Opens the other side for one accepted connection and relays until either side ends.
async fn connection(accepted: Accepted, shared: Arc<Shared>) {
    let limits = &shared.limits;
    let report = &shared.report;
    let (untrusted, ours, peer) = match accepted {
        Accepted::Peer(untrusted, peer, inner) => {
            let connecting = UnixStream::connect(inner.path());
            let ours = match tokio::time::timeout(limits.handshake_timeout, connecting).await {
                Ok(Ok(ours)) => ours,
                Ok(Err(cause)) => return report.connect_failed(&inner.to_string(), &cause),
                Err(_elapsed) => return report.connect_failed(&inner.to_string(), &timed_out()),
            };
            (untrusted, ours, peer)
        }
        Accepted::Ours(ours, remote) => {
            // A literal address connects without a lookup; a host name is resolved now, each time.
            let connecting = TcpStream::connect(remote.as_str());
            let untrusted = match tokio::time::timeout(limits.handshake_timeout, connecting).await {
                Ok(Ok(untrusted)) => untrusted,
                Ok(Err(cause)) => return report.connect_failed(&remote, &cause),
                Err(_elapsed) => return report.connect_failed(&remote, &timed_out()),
            };
            let Ok(peer) = untrusted.peer_addr() else {
                return; // Gone again already: closing ours lets the library reconnect.
            };
            (untrusted, ours, peer)
        }
    };
    match relay(untrusted, ours, limits).await {
        End::Cut(reason) => report.cut(reason, Some(peer)),
        End::Closed => tracing::trace!(socket = report.name(), %peer, "relayed connection closed"),
        End::Failed(cause) => {
            tracing::debug!(socket = report.name(), %peer, %cause, "relayed connection failed");
        }
    }
}

fn timed_out() -> io::Error {
    io::ErrorKind::TimedOut.into()
}

/// Sets the active-connections gauge to zero when the accept loop ends, since every
/// connection it relayed ends with it.
struct ZeroActiveOnExit<'a>(&'a Report);

impl Drop for ZeroActiveOnExit<'_> {
    fn drop(&mut self) {
        self.0.active(0);
    }
}

/// `tcp://host:port` or `host:port` as `host:port`, with zeromq's `*` for every interface.
fn host_port(endpoint: &str) -> Result<String, GuardError> {
    let bad = |hint| GuardError::Endpoint {
        endpoint: endpoint.to_owned(),
        hint,
    };
    let rest = match endpoint.split_once("://") {
        Some(("tcp", rest)) => rest,
        Some(_) => return Err(bad(": only tcp:// can be guarded")),
        None => endpoint,
    };
    let (host, port) = rest.rsplit_once(':').ok_or_else(|| bad(": no port"))?;
    if port.parse::<u16>().is_err() {
        return Err(bad(": the port is not a number from 0 to 65535"));
    }
    match host {
        "" => Err(bad(": no host")),
        "*" => Ok(format!("0.0.0.0:{port}")),
        host => Ok(format!("{host}:{port}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_with_and_without_scheme_and_the_wildcard_are_understood() {
        assert_eq!(host_port("tcp://*:4444").unwrap(), "0.0.0.0:4444");
        assert_eq!(host_port("tcp://publisher:4444").unwrap(), "publisher:4444");
        assert_eq!(host_port("127.0.0.1:0").unwrap(), "127.0.0.1:0");
        assert_eq!(host_port("tcp://[::1]:5").unwrap(), "[::1]:5");
    }

    #[test]
    fn inner_addresses_are_abstract_unique_and_spelled_with_an_at_sign() {
        let (one, two) = (InnerAddr::new("events"), InnerAddr::new("events"));
        assert_ne!(one, two);
        assert!(one.endpoint().starts_with("ipc://\0zmq-guard/"));
        assert!(one.to_string().starts_with("@zmq-guard/"));
        assert!(!one.to_string().contains('\0'));
        // Within what a Unix socket address holds (108 bytes, the leading NUL included).
        assert!(one.path().len() < 108, "{}", one.path().len());
    }

    #[test]
    fn endpoints_without_port_or_host_or_with_another_transport_are_refused() {
        for bad in [
            "tcp://host",
            "host:http",
            ":4444",
            "ipc:///tmp/x:1",
            "tcp://h:70000",
        ] {
            assert!(host_port(bad).is_err(), "{bad}");
        }
    }
}
