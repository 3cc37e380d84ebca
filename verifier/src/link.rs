//! The verifier's side of one publisher: a PULL socket connected to its task PUSH and a PUSH
//! socket connected to its result PULL, kept alive across publisher restarts.
//!
//! The ZMQ library reconnects neither PULL nor PUSH, so a link watches for the publisher going
//! away — a `Disconnected` event on either socket (the task connection's end-of-stream arrives
//! at once when the publisher exits; a result write to a dead peer fails within a heartbeat or
//! two), a receive error, a failed or stuck send, the publisher's host name pointing elsewhere
//! (see [`crate::address`]) — and then throws both sockets away and connects afresh, retrying
//! with a capped backoff until the publisher is back or the process is told to stop.
//!
//! Each connection is a *generation*. A task's result goes back only on the generation it came
//! from: after a publisher restart task ids start again, so an old result must never reach the
//! new publisher, where it would answer a different task.

use crate::address;
use crate::config::PublisherEndpoints;
use crate::keys::KeyRing;
use crate::pool::Pool;
use crate::verify::verify_task;
use futures::StreamExt;
use futures::channel::mpsc as events;
use plumbing::Rejects;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use wire::{Codec, KeyInfo, Origin, Reply, Verdict, VerifierHeartbeat, VerifyTask};
use zeromq::{
    PullSocket, PushSocket, Socket, SocketEvent, SocketOptions, SocketRecv, SocketSend, ZmqError,
    ZmqMessage,
};

/// How long one attempt to reach the publisher may take (TCP connect and ZMTP handshake).
/// Within it the ZMQ library itself retries refused connections every few hundred ms.
const CONNECT_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);
/// Pause after the first failed attempt; it doubles up to [`MAX_RETRY_DELAY`].
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(100);
/// Longest pause between attempts, so a publisher that comes back is found within seconds.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(1);
/// A send that cannot even be queued for this long means the connection is stuck.
const SEND_TIMEOUT: Duration = Duration::from_secs(2);
/// On shutdown, how long tasks in flight may take to finish and be pushed.
pub(crate) const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// The ZMQ library has no linger: frames still queued when the process exits are lost. This is
/// the time its writer gets to hand the last results to the kernel before the process exits.
const FLUSH_GRACE: Duration = Duration::from_millis(200);

/// What every link of the process shares.
pub(crate) struct Shared {
    /// Sender id and epoch of every envelope.
    pub origin: Origin,
    /// Encodes results and heartbeats, decodes tasks.
    pub codec: Codec,
    /// The keys, shared with the worker threads.
    pub keys: Arc<KeyRing>,
    /// What heartbeats announce.
    pub key_infos: Vec<KeyInfo>,
    /// The worker threads.
    pub pool: Pool,
    /// Bounds the tasks taken and not yet answered, over all links.
    pub in_flight: Arc<Semaphore>,
    /// Tasks taken and not yet answered, over all links (what heartbeats report).
    pub taken: Arc<AtomicUsize>,
    /// Time between heartbeats.
    pub heartbeat_interval: Duration,
}

/// A verdict coming back from the pool.
struct Done {
    generation: u64,
    result: Verdict,
    /// Held until the result is pushed (or discarded).
    _ticket: Ticket,
}

/// A task's place in the in-flight budget, given back when its verdict is pushed or dropped.
struct Ticket {
    _permit: OwnedSemaphorePermit,
    taken: Arc<AtomicUsize>,
}

impl Ticket {
    fn new(permit: OwnedSemaphorePermit, taken: &Arc<AtomicUsize>) -> Self {
        taken.fetch_add(1, Ordering::Relaxed);
        Ticket {
            _permit: permit,
            taken: Arc::clone(taken),
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.taken.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Why a connection stopped being served.
enum Ended {
    Shutdown,
    Lost(String),
}

/// Which of a connection's two sockets an event is about.
#[derive(Debug, Clone, Copy)]
enum Side {
    Tasks,
    Results,
}

impl Side {
    fn name(self) -> &'static str {
        match self {
            Side::Tasks => "task",
            Side::Results => "result",
        }
    }
}

/// One wake-up of a link's loop: the `select!` only picks, the handling happens after it, when
/// the branch futures no longer borrow the link.
enum Wake {
    Shutdown,
    Done(Done),
    Socket(Side, SocketEvent),
    Heartbeat,
    Permit(OwnedSemaphorePermit),
    Message(Result<ZmqMessage, ZmqError>),
    Moved(String),
}

/// The verifier's end of one publisher.
pub(crate) struct Link {
    endpoints: PublisherEndpoints,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
    done_tx: mpsc::UnboundedSender<Done>,
    done_rx: mpsc::UnboundedReceiver<Done>,
    /// Envelope sequence number of the last message sent on this link.
    seq: u64,
    /// Counts connections; results go back only on the generation their task came from.
    generation: u64,
    /// Tasks handed to the pool whose verdict has not come back yet.
    pending: usize,
    drops: Rejects,
}

impl Link {
    /// A link to one publisher; nothing happens until [`Link::run`].
    pub fn new(
        endpoints: PublisherEndpoints,
        shared: Arc<Shared>,
        shutdown: CancellationToken,
    ) -> Self {
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        Link {
            endpoints,
            shared,
            shutdown,
            done_tx,
            done_rx,
            seq: 0,
            generation: 0,
            pending: 0,
            drops: Rejects::new("messages that are not valid tasks"),
        }
    }

    /// Connects, serves, reconnects when the publisher goes away, until `shutdown` fires;
    /// then pushes the results of tasks in flight and returns.
    pub async fn run(mut self) {
        while let Some(mut connection) = self.connect().await {
            self.generation += 1;
            match self.serve(&mut connection).await {
                Ended::Shutdown => {
                    self.drain(connection).await;
                    return;
                }
                Ended::Lost(reason) => {
                    tracing::warn!(
                        tasks = %self.endpoints.tasks,
                        results = %self.endpoints.results,
                        %reason,
                        "lost the publisher; reconnecting"
                    );
                    // Dropping closes both TCP connections (see `TaskSocket`).
                    drop(connection);
                }
            }
        }
        if self.pending > 0 {
            tracing::info!(
                pending = self.pending,
                "stopping while disconnected; verdicts of tasks from the lost connection are dropped"
            );
        }
    }

    /// Connects both sockets, retrying with backoff; `None` when shutdown comes first.
    async fn connect(&mut self) -> Option<Connection> {
        let mut delay = FIRST_RETRY_DELAY;
        let mut attempts: u32 = 0;
        loop {
            attempts += 1;
            let open = Connection::open(self.endpoints.clone());
            tokio::pin!(open);
            let outcome = loop {
                // Verdicts of a lost connection keep arriving; take them so their permits free up.
                let wake = tokio::select! {
                    () = self.shutdown.cancelled() => return None,
                    Some(done) = self.done_rx.recv() => Err(done),
                    outcome = &mut open => Ok(outcome),
                };
                match wake {
                    Ok(outcome) => break outcome,
                    Err(done) => self.discard(done),
                }
            };
            match outcome {
                Ok(connection) => {
                    tracing::info!(
                        tasks = %self.endpoints.tasks,
                        results = %self.endpoints.results,
                        attempts,
                        "connected to the publisher"
                    );
                    return Some(connection);
                }
                Err(error) if attempts == 1 => tracing::info!(
                    tasks = %self.endpoints.tasks,
                    results = %self.endpoints.results,
                    cause = %error,
                    "publisher not reachable yet; retrying until it is"
                ),
                Err(error) if attempts % 60 == 0 => tracing::warn!(
                    tasks = %self.endpoints.tasks,
                    results = %self.endpoints.results,
                    attempts,
                    cause = %error,
                    "still cannot reach the publisher"
                ),
                Err(error) => tracing::debug!(attempts, cause = %error, "connect attempt failed"),
            }
            let pause = tokio::time::sleep(delay);
            tokio::pin!(pause);
            loop {
                let wake = tokio::select! {
                    () = self.shutdown.cancelled() => return None,
                    Some(done) = self.done_rx.recv() => Some(done),
                    () = &mut pause => None,
                };
                match wake {
                    Some(done) => self.discard(done),
                    None => break,
                }
            }
            delay = (delay * 2).min(MAX_RETRY_DELAY);
        }
    }

    /// Takes tasks, pushes verdicts and heartbeats, until shutdown or the publisher is lost.
    async fn serve(&mut self, connection: &mut Connection) -> Ended {
        // The first tick is immediate: the publisher hears of this verifier at once.
        let mut heartbeat = tokio::time::interval(self.shared.heartbeat_interval);
        heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
        // A task is only taken with a permit in hand, so a flood cannot queue without bound.
        let mut permit: Option<OwnedSemaphorePermit> = None;
        // Host-name watchers of this connection; dropping the set stops them.
        let mut watchers = JoinSet::new();
        loop {
            let wake = tokio::select! {
                biased;
                () = self.shutdown.cancelled() => Wake::Shutdown,
                Some(done) = self.done_rx.recv() => Wake::Done(done),
                Some(event) = connection.tasks_events.next() => Wake::Socket(Side::Tasks, event),
                Some(event) = connection.results_events.next() => Wake::Socket(Side::Results, event),
                _ = heartbeat.tick() => Wake::Heartbeat,
                Some(Ok(reason)) = watchers.join_next() => Wake::Moved(reason),
                Ok(p) = Arc::clone(&self.shared.in_flight).acquire_owned(), if permit.is_none() => {
                    Wake::Permit(p)
                }
                message = connection.tasks.0.recv(), if permit.is_some() => Wake::Message(message),
            };
            match wake {
                Wake::Shutdown => return Ended::Shutdown,
                Wake::Done(done) => {
                    if let Err(reason) = self.deliver(connection, done).await {
                        return Ended::Lost(reason);
                    }
                }
                Wake::Socket(side, SocketEvent::Disconnected(_)) => {
                    return Ended::Lost(format!("the {} connection was closed", side.name()));
                }
                Wake::Socket(side, SocketEvent::Connected(peer, _)) => {
                    tracing::debug!(socket = side.name(), %peer, "connected");
                    let configured = match side {
                        Side::Tasks => &self.endpoints.tasks,
                        Side::Results => &self.endpoints.results,
                    };
                    if let Some(watch) = address::watch(configured, &peer, address::RECHECK_EVERY) {
                        watchers.spawn(watch);
                    }
                }
                Wake::Socket(side, event) => {
                    tracing::debug!(socket = side.name(), ?event, "socket event")
                }
                Wake::Moved(reason) => return Ended::Lost(reason),
                Wake::Heartbeat => {
                    let body = Reply::Heartbeat(VerifierHeartbeat {
                        keys: self.shared.key_infos.clone(),
                        in_flight: self.in_flight(),
                    });
                    if let Err(reason) = self.send(connection, body).await {
                        return Ended::Lost(reason);
                    }
                }
                Wake::Permit(p) => permit = Some(p),
                Wake::Message(Ok(message)) => self.accept(&message, &mut permit),
                Wake::Message(Err(error)) => {
                    return Ended::Lost(format!("receiving tasks failed: {error}"));
                }
            }
        }
    }

    /// Stops taking tasks, pushes the verdicts of those in flight (bounded), lets them flush.
    async fn drain(&mut self, mut connection: Connection) {
        // Close the task connection first, so the publisher stops handing this verifier work.
        connection.tasks.close();
        let in_flight = self.pending;
        let deadline = Instant::now() + DRAIN_TIMEOUT;
        while self.pending > 0 {
            let done = match tokio::time::timeout_at(deadline, self.done_rx.recv()).await {
                Ok(Some(done)) => done,
                Ok(None) | Err(_) => break,
            };
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.deliver(&mut connection, done)).await {
                Ok(Ok(())) => {}
                Ok(Err(reason)) => {
                    tracing::warn!(%reason, "cannot push the remaining verdicts");
                    break;
                }
                Err(_) => break,
            }
        }
        if self.pending > 0 {
            tracing::warn!(
                unanswered = self.pending,
                "gave up waiting for tasks in flight; the publisher will send them again"
            );
        } else {
            tracing::info!(in_flight, "verdicts of tasks in flight pushed");
        }
        tokio::time::sleep(FLUSH_GRACE).await;
    }

    /// Decodes a message from the task socket and hands a task to the pool.
    fn accept(&mut self, message: &ZmqMessage, permit: &mut Option<OwnedSemaphorePermit>) {
        let envelope = match self.shared.codec.decode::<VerifyTask>(message) {
            Ok(envelope) => envelope,
            Err(error) => {
                self.drops.record(&self.endpoints.tasks, &error);
                return;
            }
        };
        let (envelope, task) = envelope.into_parts();
        let Some(permit) = permit.take() else {
            // `serve` only receives with a permit in hand.
            return;
        };
        tracing::debug!(
            task_id = task.task_id,
            key = %task.key,
            attempt = task.attempt,
            publisher = %envelope.sender,
            "task received"
        );
        self.dispatch(task, permit);
    }

    fn dispatch(&mut self, task: VerifyTask, permit: OwnedSemaphorePermit) {
        self.pending += 1;
        let ticket = Ticket::new(permit, &self.shared.taken);
        let keys = Arc::clone(&self.shared.keys);
        let done_tx = self.done_tx.clone();
        let generation = self.generation;
        self.shared.pool.execute(move || {
            let result = verify_task(&keys, &task);
            // The link may have stopped; then nobody wants the verdict.
            let _ = done_tx.send(Done {
                generation,
                result,
                _ticket: ticket,
            });
        });
    }

    /// Pushes a verdict back when it belongs to the current connection; drops it otherwise.
    async fn deliver(&mut self, connection: &mut Connection, done: Done) -> Result<(), String> {
        if done.generation != self.generation {
            self.discard(done);
            return Ok(());
        }
        self.pending -= 1;
        tracing::debug!(
            task_id = done.result.task_id,
            status = done.result.status.as_str(),
            "verdict pushed"
        );
        self.send(connection, Reply::Verdict(done.result)).await
    }

    /// Drops the verdict of a task from a lost connection: its publisher is gone, and the new
    /// one may reuse the task id.
    fn discard(&mut self, done: Done) {
        self.pending -= 1;
        tracing::debug!(
            task_id = done.result.task_id,
            "verdict for a lost connection dropped"
        );
    }

    async fn send(&mut self, connection: &mut Connection, body: Reply) -> Result<(), String> {
        self.seq += 1;
        let envelope = self.shared.origin.envelope(self.seq, body);
        let message = self.shared.codec.encode(&envelope);
        match tokio::time::timeout(SEND_TIMEOUT, connection.results.send(message)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(format!(
                "pushing to {} failed: {error}",
                self.endpoints.results
            )),
            Err(_) => Err(format!(
                "pushing to {} stuck for {SEND_TIMEOUT:?}",
                self.endpoints.results
            )),
        }
    }

    fn in_flight(&self) -> u32 {
        u32::try_from(self.shared.taken.load(Ordering::Relaxed)).unwrap_or(u32::MAX)
    }
}

/// The two sockets of one connection to a publisher, with their event streams.
struct Connection {
    tasks: TaskSocket,
    results: PushSocket,
    tasks_events: events::Receiver<SocketEvent>,
    results_events: events::Receiver<SocketEvent>,
}

impl Connection {
    /// Connects the result PUSH, then the task PULL (so a task never arrives before its verdict
    /// has somewhere to go). Each connect is bounded by [`CONNECT_ATTEMPT_TIMEOUT`]; dropping
    /// the future half-way closes whatever was opened.
    async fn open(endpoints: PublisherEndpoints) -> Result<Connection, ZmqError> {
        let mut results = PushSocket::with_options(socket_options());
        let results_events = results.monitor();
        results.connect(&endpoints.results).await?;
        let mut tasks = TaskSocket(PullSocket::with_options(socket_options()));
        let tasks_events = tasks.0.monitor();
        tasks.0.connect(&endpoints.tasks).await?;
        Ok(Connection {
            tasks,
            results,
            tasks_events,
            results_events,
        })
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
struct TaskSocket(PullSocket);

impl TaskSocket {
    fn close(&mut self) {
        self.0.backend().shutdown();
    }
}

impl Drop for TaskSocket {
    fn drop(&mut self) {
        self.close();
    }
}
