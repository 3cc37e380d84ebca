//! The verifier's side of one publisher, kept alive across publisher restarts: connect (with
//! backoff), serve — take tasks within the budget, push verdicts and heartbeats — until the
//! connection is [`Lost`] or the process stops; then connect afresh, or drain and return.
//!
//! The sockets and the ways a connection is lost are in [`crate::connection`].
//!
//! Each connection is a *generation*. A task's result goes back only on the generation it came
//! from: after a publisher restart task ids start again, so an old result must never reach the
//! new publisher, where it would answer a different task.

use crate::address;
use crate::backoff::Backoff;
use crate::config::PublisherEndpoints;
use crate::connection::{Connection, Lost, Side};
use crate::keys::KeyRing;
use crate::pool::Pool;
use crate::verify::verify_task;
use futures::StreamExt;
use plumbing::Rejects;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use wire::{Codec, KeyInfo, Origin, Reply, Verdict, VerifierHeartbeat, VerifyTask};
use zeromq::{SocketEvent, ZmqError, ZmqMessage};

/// On shutdown, how long tasks in flight may take to finish and be pushed.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// The ZMQ library has no linger: frames still queued when the process exits are lost. This is
/// the time its writer gets to hand the last results to the kernel before the process exits.
const FLUSH_GRACE: Duration = Duration::from_millis(200);
/// While the publisher stays away, one failed attempt in this many is logged as a warning.
const WARN_EVERY_ATTEMPTS: u32 = 60;

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
        loop {
            // Whatever the last connection left on the pool is stale from here on.
            self.generation += 1;
            let Some(mut connection) = self.connect().await else {
                break;
            };
            match self.serve(&mut connection).await {
                Ok(()) => {
                    self.drain(connection).await;
                    return;
                }
                Err(lost) => {
                    tracing::warn!(
                        tasks = %self.endpoints.tasks,
                        results = %self.endpoints.results,
                        kind = lost.kind(),
                        cause = %lost,
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
        let mut backoff = Backoff::default();
        let mut attempts: u32 = 0;
        loop {
            attempts = attempts.saturating_add(1);
            // `wait_discarding` borrows the whole link, so the attempt gets its own endpoints.
            let endpoints = self.endpoints.clone();
            match self.wait_discarding(Connection::open(&endpoints)).await? {
                Ok(connection) => {
                    tracing::info!(
                        tasks = %self.endpoints.tasks,
                        results = %self.endpoints.results,
                        attempts,
                        "connected to the publisher"
                    );
                    return Some(connection);
                }
                Err(error) => self.attempt_failed(attempts, &error),
            }
            let pause = tokio::time::sleep(backoff.next_delay());
            self.wait_discarding(pause).await?;
        }
    }

    /// Waits for `f` unless shutdown comes first (then `None`), dropping every verdict that
    /// comes back meanwhile, so their permits free up: between connections, every verdict
    /// belongs to a lost one.
    async fn wait_discarding<F: Future>(&mut self, f: F) -> Option<F::Output> {
        tokio::pin!(f);
        loop {
            tokio::select! {
                () = self.shutdown.cancelled() => return None,
                Some(done) = self.done_rx.recv() => self.discard(done),
                output = &mut f => return Some(output),
            }
        }
    }

    /// Logs a failed attempt: the first and then one in [`WARN_EVERY_ATTEMPTS`] where it shows.
    fn attempt_failed(&self, attempts: u32, error: &ZmqError) {
        let (tasks, results) = (&self.endpoints.tasks, &self.endpoints.results);
        if attempts == 1 {
            tracing::info!(
                %tasks,
                %results,
                cause = %error,
                "publisher not reachable yet; retrying until it is"
            );
        } else if attempts % WARN_EVERY_ATTEMPTS == 0 {
            tracing::warn!(%tasks, %results, attempts, cause = %error, "still cannot reach the publisher");
        } else {
            tracing::debug!(attempts, cause = %error, "connect attempt failed");
        }
    }

    /// Takes tasks, pushes verdicts and heartbeats; `Ok` once shutdown fires, `Err` when the
    /// publisher is lost.
    async fn serve(&mut self, connection: &mut Connection) -> Result<(), Lost> {
        // The first tick is immediate: the publisher hears of this verifier at once.
        let mut heartbeat = tokio::time::interval(self.shared.heartbeat_interval);
        heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
        // A task is only taken with room reserved, so a flood cannot queue without bound.
        let mut room: Option<OwnedSemaphorePermit> = None;
        // Host-name watchers of this connection; dropping the set stops them.
        let mut watchers = JoinSet::new();
        loop {
            // The branch futures are dropped before a handler runs, so handlers may use `self`.
            tokio::select! {
                biased;
                () = self.shutdown.cancelled() => return Ok(()),
                Some(done) = self.done_rx.recv() => self.deliver(connection, done).await?,
                Some((side, event)) = connection.events.next() => {
                    self.socket_event(side, event, &mut watchers)?;
                }
                _ = heartbeat.tick() => self.heartbeat(connection).await?,
                Some(Ok(moved)) = watchers.join_next() => return Err(Lost::AddressMoved(moved)),
                Ok(reserved) = Arc::clone(&self.shared.in_flight).acquire_owned(), if room.is_none() => {
                    room = Some(reserved);
                }
                message = connection.tasks.recv(), if room.is_some() => {
                    self.accept(&message.map_err(Lost::ReceiveFailed)?, &mut room);
                }
            }
        }
    }

    /// Stops taking tasks, pushes the verdicts of those in flight (bounded), lets them flush.
    async fn drain(&mut self, mut connection: Connection) {
        // Close the task connection first, so the publisher stops handing this verifier work.
        connection.tasks.close();
        let in_flight = self.pending;
        let pushing = async {
            while self.pending > 0 {
                let Some(done) = self.done_rx.recv().await else {
                    break;
                };
                self.deliver(&mut connection, done).await?;
            }
            Ok::<(), Lost>(())
        };
        if let Ok(Err(lost)) =
            tokio::time::timeout_at(Instant::now() + DRAIN_TIMEOUT, pushing).await
        {
            tracing::warn!(kind = lost.kind(), cause = %lost, "cannot push the remaining verdicts");
        }
        let unanswered = self.pending;
        if unanswered > 0 {
            tracing::warn!(
                unanswered,
                "gave up waiting for tasks in flight; the publisher will send them again"
            );
        } else {
            tracing::info!(in_flight, "verdicts of tasks in flight pushed");
        }
        tokio::time::sleep(FLUSH_GRACE).await;
    }

    /// What one socket event means: a closed connection is lost; a connection made through a
    /// host name has its name watched.
    fn socket_event(
        &self,
        side: Side,
        event: SocketEvent,
        watchers: &mut JoinSet<String>,
    ) -> Result<(), Lost> {
        match event {
            SocketEvent::Disconnected(_) => return Err(Lost::Closed { side }),
            SocketEvent::Connected(peer, _) => {
                tracing::debug!(socket = side.name(), %peer, "connected");
                let configured = match side {
                    Side::Tasks => &self.endpoints.tasks,
                    Side::Results => &self.endpoints.results,
                };
                if let Some(watch) = address::watch(configured, &peer, address::RECHECK_EVERY) {
                    watchers.spawn(watch);
                }
            }
            event => tracing::debug!(socket = side.name(), ?event, "socket event"),
        }
        Ok(())
    }

    /// Decodes a message from the task socket and hands a task to the pool, in the reserved
    /// room; a message that is not a valid task is counted and dropped, the room kept.
    fn accept(&mut self, message: &ZmqMessage, room: &mut Option<OwnedSemaphorePermit>) {
        let envelope = match self.shared.codec.decode::<VerifyTask>(message) {
            Ok(envelope) => envelope,
            Err(error) => {
                self.drops.record(&self.endpoints.tasks, &error);
                return;
            }
        };
        let (envelope, task) = envelope.into_parts();
        let Some(reservation) = room.take() else {
            // `serve` only receives with room reserved.
            return;
        };
        tracing::debug!(
            task_id = task.task_id,
            key = %task.key,
            attempt = task.attempt,
            publisher = %envelope.sender,
            "task received"
        );
        self.dispatch(task, reservation);
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
    async fn deliver(&mut self, connection: &mut Connection, done: Done) -> Result<(), Lost> {
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

    /// Tells the publisher this verifier is alive, which keys it holds and how busy it is.
    async fn heartbeat(&mut self, connection: &mut Connection) -> Result<(), Lost> {
        let body = Reply::Heartbeat(VerifierHeartbeat {
            keys: self.shared.key_infos.clone(),
            in_flight: u32::try_from(self.shared.taken.load(Ordering::Relaxed)).unwrap_or(u32::MAX),
        });
        self.send(connection, body).await
    }

    async fn send(&mut self, connection: &mut Connection, body: Reply) -> Result<(), Lost> {
        self.seq += 1;
        let envelope = self.shared.origin.envelope(self.seq, body);
        connection.push(self.shared.codec.encode(&envelope)).await
    }
}
