//! The guard itself: a listener, an accept loop on its own task that caps and counts
//! connections, and per connection a task that opens the other side and relays.

use crate::relay::{End, relay};
use crate::report::{CutReason, Report};
use crate::{GuardError, Limits};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// First pause after a failed accept (out of file descriptors, most often); it doubles with
/// each failure in a row up to [`MAX_ACCEPT_PAUSE`].
const FIRST_ACCEPT_PAUSE: Duration = Duration::from_millis(10);
const MAX_ACCEPT_PAUSE: Duration = Duration::from_secs(1);

/// A running guard. It relays until [`shutdown`](Guard::shutdown) or until it is dropped;
/// either way its listener and every connection it relays are closed.
#[derive(Debug)]
#[must_use = "a guard stops relaying when it is dropped"]
pub struct Guard {
    local: SocketAddr,
    task: JoinHandle<()>,
}

/// Where each accepted connection is relayed to, which also says which end is untrusted.
#[derive(Debug)]
enum Target {
    /// Bind side: the accepted connection is an untrusted peer; the zeromq socket listens here.
    Inner(SocketAddr),
    /// Connect side: the accepted connection is our zeromq socket; the untrusted peer is at
    /// this `host:port`, resolved anew for each connection.
    Remote(String),
}

#[derive(Debug)]
struct Shared {
    limits: Limits,
    report: Report,
    target: Target,
}

impl Guard {
    /// Guards a socket the process binds: listens on `public` (`tcp://host:port`,
    /// `host:port`, `*` for every interface, port 0 for any) and relays each peer to `inner`,
    /// the literal address the zeromq socket is bound on (such as the `tcp://127.0.0.1:PORT`
    /// that its `bind("tcp://127.0.0.1:0")` returned). `name` labels metrics and logs.
    pub async fn bind(
        public: &str,
        inner: &str,
        limits: Limits,
        name: &'static str,
    ) -> Result<Guard, GuardError> {
        let inner = host_port(inner)?
            .parse::<SocketAddr>()
            .map_err(|_| GuardError::Endpoint {
                endpoint: inner.to_owned(),
                hint: ": the internal endpoint must be a literal IP address and port",
            })?;
        let listener = listen(&host_port(public)?).await?;
        Ok(Self::start(listener, Target::Inner(inner), limits, name))
    }

    /// Guards a socket the process connects: listens on `127.0.0.1:0` for the zeromq socket
    /// (connect it to [`local_endpoint`](Guard::local_endpoint)) and relays each of its
    /// connections to `remote` (`tcp://host:port` or `host:port`; the host is resolved at each
    /// connection, so a restarted or moved peer is found again).
    pub async fn connect_side(
        remote: &str,
        limits: Limits,
        name: &'static str,
    ) -> Result<Guard, GuardError> {
        let remote = host_port(remote)?;
        let listener = listen("127.0.0.1:0").await?;
        Ok(Self::start(listener, Target::Remote(remote), limits, name))
    }

    fn start(listener: TcpListener, target: Target, limits: Limits, name: &'static str) -> Self {
        // A listener always has an address once bound; the fallback only keeps this total.
        let local = listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)));
        let shared = Arc::new(Shared {
            limits,
            report: Report::new(name),
            target,
        });
        tracing::info!(socket = name, %local, target = ?shared.target, "guard listening");
        let task = tokio::spawn(accept_loop(listener, shared));
        Self { local, task }
    }

    /// The address the guard listens on, with the port resolved.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The listening address as a zeromq endpoint, `tcp://IP:PORT`: what a connect-side
    /// guard's socket connects to.
    pub fn local_endpoint(&self) -> String {
        format!("tcp://{}", self.local)
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

async fn listen(endpoint: &str) -> Result<TcpListener, GuardError> {
    TcpListener::bind(endpoint)
        .await
        .map_err(|source| GuardError::Listen {
            endpoint: endpoint.to_owned(),
            source,
        })
}

/// Accepts until the task is aborted; dropping it drops `connections`, which aborts them all.
async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
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
                let (stream, peer) = match accepted {
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
                    report.cut(CutReason::OverCapacity, peer);
                    drop(stream);
                    continue;
                }
                report.connection_opened();
                connections.spawn(connection(stream, peer, Arc::clone(&shared)));
                report.active(connections.len());
            }
        }
    }
}

/// Opens the other side for one accepted connection and relays until either side ends.
async fn connection(accepted: TcpStream, peer: SocketAddr, shared: Arc<Shared>) {
    let limits = &shared.limits;
    let report = &shared.report;
    // A literal address connects without a lookup; a host name is resolved now, each time.
    let target = match &shared.target {
        Target::Inner(addr) => addr.to_string(),
        Target::Remote(remote) => remote.clone(),
    };
    let connecting = TcpStream::connect(target.as_str());
    let other = match tokio::time::timeout(limits.handshake_timeout, connecting).await {
        Ok(Ok(other)) => other,
        Ok(Err(cause)) => return report.connect_failed(&target, &cause),
        Err(_elapsed) => return report.connect_failed(&target, &io::ErrorKind::TimedOut.into()),
    };
    let (untrusted, ours, peer) = match shared.target {
        Target::Inner(_) => (accepted, other, peer),
        Target::Remote(_) => {
            let remote = other.peer_addr().unwrap_or(peer);
            (other, accepted, remote)
        }
    };
    match relay(untrusted, ours, limits).await {
        End::Cut(reason) => report.cut(reason, peer),
        End::Closed => tracing::trace!(socket = report.name(), %peer, "relayed connection closed"),
        End::Failed(cause) => {
            tracing::debug!(socket = report.name(), %peer, %cause, "relayed connection failed");
        }
    }
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
