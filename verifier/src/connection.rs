//! One connection to a publisher — a PUSH socket connected to its result PULL and a PULL socket
//! connected to its task PUSH — and the ways such a connection is lost.
//!
//! The ZMQ library reconnects neither PULL nor PUSH, so a link watches for the publisher going
//! away — a `Disconnected` event on either socket (the task connection's end-of-stream arrives
//! at once when the publisher exits; a result write to a dead peer fails within a heartbeat or
//! two), a receive error, a failed or stuck send, the publisher's host name pointing elsewhere
//! (see [`crate::address`]) — each a variant of [`Lost`], and then throws the connection away
//! and opens a new one. This file holds what that needs from the library: bounded connects, a
//! bounded push, and a PULL socket that really closes ([`TaskSocket`]).
//!
//! Each socket connects through a connect-side guard of its own (`tasks-in`, `results-out`),
//! which checks what the publisher sends before the library sees it; the guards belong to the
//! connection and close with it. A guard is given one literal address of the publisher (see
//! [`crate::address::resolve`]), so the link knows which address it is connected to even
//! though the library sees only the guard.

use crate::address;
use crate::config::PublisherEndpoints;
use futures::StreamExt;
use futures::stream::BoxStream;
use guard::Limits;
use plumbing::{ConnectError, Guarded};
use std::fmt;
use std::io;
use std::time::Duration;
use zeromq::{
    Endpoint, PullSocket, PushSocket, Socket, SocketEvent, SocketOptions, SocketRecv, SocketSend,
    ZmqError, ZmqMessage,
};

/// How long one attempt to reach the publisher may take (TCP connect and ZMTP handshake).
/// Within it the ZMQ library itself retries refused connections every few hundred ms.
const CONNECT_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);
/// A send that cannot even be queued for this long means the connection is stuck.
const SEND_TIMEOUT: Duration = Duration::from_secs(2);

/// Which of a connection's two sockets something is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    /// The PULL socket tasks arrive on.
    Tasks,
    /// The PUSH socket verdicts and heartbeats leave on.
    Results,
}

impl Side {
    /// The socket's name in logs: `task` or `result`.
    pub fn name(self) -> &'static str {
        match self {
            Side::Tasks => "task",
            Side::Results => "result",
        }
    }
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a link stopped serving a connection and connects afresh.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Lost {
    /// The publisher closed one of the two TCP connections (it exited or restarted).
    #[error("the {side} connection was closed")]
    Closed {
        /// Which connection.
        side: Side,
    },
    /// Reading the next task failed.
    #[error("receiving tasks failed: {0}")]
    ReceiveFailed(ZmqError),
    /// Handing a verdict or heartbeat to the result socket failed.
    #[error("pushing to the publisher failed: {0}")]
    SendFailed(ZmqError),
    /// A verdict or heartbeat could not even be queued within [`SEND_TIMEOUT`].
    #[error("pushing to the publisher stuck for {0:?}")]
    SendStuck(Duration),
    /// The publisher's host name no longer resolves to the address connected to.
    #[error("{0}")]
    AddressMoved(String),
}

impl Lost {
    /// A short name of the variant, for a structured log field.
    pub fn kind(&self) -> &'static str {
        match self {
            Lost::Closed { .. } => "closed",
            Lost::ReceiveFailed(_) => "receive_failed",
            Lost::SendFailed(_) => "send_failed",
            Lost::SendStuck(_) => "send_stuck",
            Lost::AddressMoved(_) => "address_moved",
        }
    }
}

/// Why a connection could not be opened.
#[derive(Debug, thiserror::Error)]
pub(crate) enum OpenError {
    /// The publisher's host name could not be looked up (a guarded connection looks it up
    /// itself).
    #[error("cannot look up {endpoint}: {source}")]
    Lookup {
        /// The endpoint as configured.
        endpoint: String,
        /// What the resolver said.
        #[source]
        source: io::Error,
    },
    /// No address of the publisher took the connection (the last one's reason).
    #[error(transparent)]
    Connect(#[from] ConnectError),
}

/// The two sockets of one connection to a publisher, with their events and their guards.
pub(crate) struct Connection {
    /// Where tasks come from.
    pub tasks: TaskSocket,
    /// What happens to either socket (connected, closed, …), tagged with its side.
    pub events: BoxStream<'static, (Side, SocketEvent)>,
    results: PushSocket,
    /// The publisher addresses the guards relay to, tasks and results; `None` unguarded.
    remotes: (Option<Endpoint>, Option<Endpoint>),
    /// Relaying while the connection lives; dropped after the sockets, closing what is left.
    _guards: (Guarded, Guarded),
}

impl Connection {
    /// Connects the result PUSH, then the task PULL (so a task never arrives before its verdict
    /// has somewhere to go), each behind a guard with `limits` (`None`: directly). Each connect
    /// is bounded by [`CONNECT_ATTEMPT_TIMEOUT`]; dropping the future half-way closes whatever
    /// was opened.
    pub async fn open(
        endpoints: &PublisherEndpoints,
        limits: Option<&Limits>,
    ) -> Result<Connection, OpenError> {
        let mut results = PushSocket::with_options(socket_options());
        let results_events = results.monitor();
        let (results_guard, results_remote) =
            connect(&mut results, &endpoints.results, limits, "results-out").await?;
        let mut tasks = TaskSocket(PullSocket::with_options(socket_options()));
        let tasks_events = tasks.0.monitor();
        let (tasks_guard, tasks_remote) =
            connect(&mut tasks.0, &endpoints.tasks, limits, "tasks-in").await?;
        let events = futures::stream::select(
            tasks_events.map(|event| (Side::Tasks, event)),
            results_events.map(|event| (Side::Results, event)),
        );
        Ok(Connection {
            tasks,
            events: events.boxed(),
            results,
            remotes: (tasks_remote, results_remote),
            _guards: (tasks_guard, results_guard),
        })
    }

    /// The publisher address `side`'s guard relays to; `None` when unguarded, where the
    /// library's own `Connected` event names the peer.
    pub fn remote(&self, side: Side) -> Option<&Endpoint> {
        match side {
            Side::Tasks => self.remotes.0.as_ref(),
            Side::Results => self.remotes.1.as_ref(),
        }
    }

    /// Hands a message to the result socket; a failure or a wait over [`SEND_TIMEOUT`] means
    /// the connection is lost.
    pub async fn push(&mut self, message: ZmqMessage) -> Result<(), Lost> {
        match tokio::time::timeout(SEND_TIMEOUT, self.results.send(message)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(Lost::SendFailed(error)),
            Err(_) => Err(Lost::SendStuck(SEND_TIMEOUT)),
        }
    }
}

/// Connects `socket` to `configured`: directly when there are no `limits`; otherwise through a
/// guard named `name` to each address `configured` resolves to, in turn, until one takes it.
/// Returns the guard and the address it relays to.
async fn connect<S: Socket>(
    socket: &mut S,
    configured: &str,
    limits: Option<&Limits>,
    name: &'static str,
) -> Result<(Guarded, Option<Endpoint>), OpenError> {
    let Some(limits) = limits else {
        let direct = plumbing::connect_guarded(socket, configured, None, name).await?;
        return Ok((direct, None));
    };
    let lookup_failed = |source| OpenError::Lookup {
        endpoint: configured.to_owned(),
        source,
    };
    let mut failure = None;
    for remote in address::resolve(configured).await.map_err(lookup_failed)? {
        let limits = Some(limits.clone());
        match plumbing::connect_guarded(socket, &remote.to_string(), limits, name).await {
            Ok(guarded) => return Ok((guarded, Some(remote))),
            Err(error) => failure = Some(error),
        }
    }
    Err(failure.map_or_else(
        || lookup_failed(io::ErrorKind::NotFound.into()),
        OpenError::Connect,
    ))
}

fn socket_options() -> SocketOptions {
    let mut options = SocketOptions::default();
    options.connect_timeout(CONNECT_ATTEMPT_TIMEOUT);
    options
}

/// A PULL socket that really closes its connections when dropped.
///
/// The ZMQ library's `PullSocket` has no `Drop`, and `close()` only unbinds: each connection's
/// writer task and the socket's backend hold each other alive, so a dropped PULL keeps its TCP
/// connection open forever. The publisher's PUSH would go on round-robining tasks into it with
/// nobody reading. Shutting the backend down drops both halves of every connection.
pub(crate) struct TaskSocket(PullSocket);

impl TaskSocket {
    /// The next message from the publisher's task PUSH.
    pub async fn recv(&mut self) -> Result<ZmqMessage, ZmqError> {
        self.0.recv().await
    }

    /// Closes every connection of the socket: the publisher stops handing it tasks.
    pub fn close(&mut self) {
        self.0.backend().shutdown();
    }
}

impl Drop for TaskSocket {
    fn drop(&mut self) {
        self.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zeromq::Host;

    /// A publisher's two sockets on loopback, port 0.
    async fn publisher() -> (PushSocket, PullSocket, u16, u16) {
        let mut tasks = PushSocket::new();
        let mut results = PullSocket::new();
        let port = |endpoint: Endpoint| match endpoint {
            Endpoint::Tcp(_, port) => port,
            other => panic!("bound on tcp, not {other}"),
        };
        let tasks_port = port(tasks.bind("tcp://127.0.0.1:0").await.expect("binds"));
        let results_port = port(results.bind("tcp://127.0.0.1:0").await.expect("binds"));
        (tasks, results, tasks_port, results_port)
    }

    /// The peer each side's `Connected` event names.
    async fn connected_peers(connection: &mut Connection) -> Vec<(Side, Endpoint)> {
        let mut peers = Vec::new();
        let limit = Duration::from_secs(10);
        while peers.len() < 2 {
            let event = tokio::time::timeout(limit, connection.events.next()).await;
            match event.expect("both sides report").expect("events flow") {
                (side, SocketEvent::Connected(peer, _)) => peers.push((side, peer)),
                (_, other) => panic!("unexpected {other:?}"),
            }
        }
        peers
    }

    #[test]
    fn a_lost_connection_says_which_side_and_why() {
        let closed = Lost::Closed { side: Side::Tasks };
        assert_eq!(closed.to_string(), "the task connection was closed");
        assert_eq!(closed.kind(), "closed");
        let stuck = Lost::SendStuck(SEND_TIMEOUT);
        assert_eq!(stuck.to_string(), "pushing to the publisher stuck for 2s");
    }

    #[tokio::test]
    async fn a_guarded_connection_knows_the_publisher_address_the_library_never_sees() {
        // Arrange: the publisher named by a host name.
        let (_tasks, _results, tasks_port, results_port) = publisher().await;
        let endpoints = PublisherEndpoints {
            tasks: format!("tcp://localhost:{tasks_port}"),
            results: format!("tcp://localhost:{results_port}"),
        };

        // Act
        let mut connection = Connection::open(&endpoints, Some(&Limits::default()))
            .await
            .expect("connects through the guards");

        // Assert: the library sees each guard's own port; the link is told the real one.
        for (side, peer) in connected_peers(&mut connection).await {
            let port = match side {
                Side::Tasks => tasks_port,
                Side::Results => results_port,
            };
            let expected = Endpoint::Tcp(Host::Ipv4([127, 0, 0, 1].into()), port);
            assert_eq!(connection.remote(side), Some(&expected), "{side}");
            assert_ne!(peer, expected, "{side}: the library sees the guard");
        }
    }

    #[tokio::test]
    async fn a_dropped_connection_takes_its_guards_with_it() {
        let (_tasks, _results, tasks_port, results_port) = publisher().await;
        let endpoints = PublisherEndpoints {
            tasks: format!("tcp://127.0.0.1:{tasks_port}"),
            results: format!("tcp://127.0.0.1:{results_port}"),
        };
        let mut connection = Connection::open(&endpoints, Some(&Limits::default()))
            .await
            .expect("connects through the guards");
        let guards = connected_peers(&mut connection).await;

        drop(connection);

        for (side, guard) in guards {
            let Endpoint::Tcp(host, port) = guard else {
                panic!("a tcp endpoint");
            };
            let address = format!("{host}:{port}");
            let closed = async {
                while tokio::net::TcpStream::connect(&address).await.is_ok() {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            };
            let waited = tokio::time::timeout(Duration::from_secs(10), closed).await;
            assert!(
                waited.is_ok(),
                "{side}: the guard at {address} still listens"
            );
        }
    }

    #[tokio::test]
    async fn an_unguarded_connection_leaves_the_peer_to_the_library() {
        let (_tasks, _results, tasks_port, results_port) = publisher().await;
        let endpoints = PublisherEndpoints {
            tasks: format!("tcp://127.0.0.1:{tasks_port}"),
            results: format!("tcp://127.0.0.1:{results_port}"),
        };

        let mut connection = Connection::open(&endpoints, None).await.expect("connects");

        for (side, peer) in connected_peers(&mut connection).await {
            assert_eq!(connection.remote(side), None);
            let port = match side {
                Side::Tasks => tasks_port,
                Side::Results => results_port,
            };
            assert_eq!(peer, Endpoint::Tcp(Host::Ipv4([127, 0, 0, 1].into()), port));
        }
    }
}
