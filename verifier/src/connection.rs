//! One connection to a publisher — a PUSH socket connected to its result PULL and a PULL socket
//! connected to its task PUSH — and the ways such a connection is lost.
//!
//! The ZMQ library reconnects neither PULL nor PUSH, so a link watches for the publisher going
//! away — a `Disconnected` event on either socket (the task connection's end-of-stream arrives
//! at once when the publisher exits; a result write to a dead peer fails within a heartbeat or
//! two), a receive error, a failed or stuck send — each a variant of [`Lost`], and then throws
//! the connection away
//! and opens a new one. This file holds what that needs from the library: bounded connects, a
//! bounded push, and a PULL socket that really closes ([`TaskSocket`]).
//!
//! Each socket connects through a connect-side guard of its own (`tasks-in`, `results-out`),
//! which checks what the publisher sends before the library sees it; the guards belong to the
//! connection and close with it. A link's endpoints are literal addresses: a host name is
//! followed above it (`plumbing::resolve`), one link per address.

use crate::config::PublisherEndpoints;
use futures::StreamExt;
use futures::stream::BoxStream;
use guard::Limits;
use plumbing::{ConnectError, Guarded};
use std::fmt;
use std::time::Duration;
use zeromq::{
    PullSocket, PushSocket, Socket, SocketEvent, SocketOptions, SocketRecv, SocketSend, ZmqError,
    ZmqMessage,
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
}

impl Lost {
    /// A short name of the variant, for a structured log field.
    pub fn kind(&self) -> &'static str {
        match self {
            Lost::Closed { .. } => "closed",
            Lost::ReceiveFailed(_) => "receive_failed",
            Lost::SendFailed(_) => "send_failed",
            Lost::SendStuck(_) => "send_stuck",
        }
    }
}

/// The two sockets of one connection to a publisher, with their events and their guards.
pub(crate) struct Connection {
    /// Where tasks come from.
    pub tasks: TaskSocket,
    /// What happens to either socket (connected, closed, …), tagged with its side.
    pub events: BoxStream<'static, (Side, SocketEvent)>,
    results: PushSocket,
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
    ) -> Result<Connection, ConnectError> {
        let mut results = PushSocket::with_options(socket_options());
        let results_events = results.monitor();
        let results_guard = plumbing::connect_guarded(
            &mut results,
            &endpoints.results,
            limits.cloned(),
            "results-out",
        )
        .await?;
        let mut tasks = TaskSocket(PullSocket::with_options(socket_options()));
        let tasks_events = tasks.0.monitor();
        let tasks_guard =
            plumbing::connect_guarded(&mut tasks.0, &endpoints.tasks, limits.cloned(), "tasks-in")
                .await?;
        let events = futures::stream::select(
            tasks_events.map(|event| (Side::Tasks, event)),
            results_events.map(|event| (Side::Results, event)),
        );
        Ok(Connection {
            tasks,
            events: events.boxed(),
            results,
            _guards: (tasks_guard, results_guard),
        })
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
    use zeromq::{Endpoint, Host};

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
    async fn a_dropped_connection_takes_its_guards_with_it() {
        let (_tasks, _results, tasks_port, results_port) = publisher().await;
        let endpoints = PublisherEndpoints {
            tasks: format!("tcp://127.0.0.1:{tasks_port}"),
            results: format!("tcp://127.0.0.1:{results_port}"),
        };
        let mut connection = Connection::open(&endpoints, Some(&Limits::default()))
            .await
            .expect("connects through the guards");
        connected_peers(&mut connection).await;
        let (tasks_guard, results_guard) = &connection._guards;
        let guards = [
            (Side::Tasks, tasks_guard.endpoint.clone()),
            (Side::Results, results_guard.endpoint.clone()),
        ];

        drop(connection);

        for (side, guard) in guards {
            let path = guard.strip_prefix("ipc://").expect("an internal endpoint");
            let closed = async {
                while tokio::net::UnixStream::connect(path).await.is_ok() {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            };
            let waited = tokio::time::timeout(Duration::from_secs(10), closed).await;
            assert!(
                waited.is_ok(),
                "{side}: the guard at {} still listens",
                path.trim_start_matches('\0')
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
            let port = match side {
                Side::Tasks => tasks_port,
                Side::Results => results_port,
            };
            assert_eq!(peer, Endpoint::Tcp(Host::Ipv4([127, 0, 0, 1].into()), port));
        }
    }
}
