//! The verifier's side of one publisher, kept alive across publisher restarts: connect (with
//! backoff), serve — take tasks within the budget, push verdicts and heartbeats — until the
//! connection is [`Lost`] or the process stops; then connect afresh, or drain and return.
//!
//! The sockets and the ways a connection is lost are in [`crate::connection`]; tasks taken,
//! their tickets and generations in [`crate::in_flight`].

use crate::backoff::Backoff;
use crate::config::PublisherEndpoints;
use crate::connection::{Connection, Lost, Side};
use crate::health::Status;
use crate::in_flight::{Budget, Done, InFlight, OwnShare, Reservation};
use crate::pool::Pool;
use crate::reload::LiveKeys;
use futures::{FutureExt, StreamExt};
use guard::Limits;
use plumbing::Rejects;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use wire::{Codec, Origin, Reply, VerifierHeartbeat, VerifyTask};
use zeromq::{SocketEvent, ZmqMessage};

/// On shutdown, how long tasks in flight may take to finish and be pushed.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// The ZMQ library has no linger: frames still queued when the process exits are lost. This is
/// the time its writer gets to hand the last results to the kernel before the process exits.
const FLUSH_GRACE: Duration = Duration::from_millis(200);
/// Tasks a link verifies on its own thread out of those queued at once (about 60 µs of RSA
/// work); the rest go to the pool. Every verdict of the batch waits for the last, so more
/// saves wake-ups but lengthens each request's trip: 16 took the least CPU and 4 the most
/// requests per second (README, "Where a signature request's time goes").
const VERIFY_HERE_AT_MOST: usize = 4;
/// While the publisher stays away, one failed attempt in this many is logged as a warning.
const WARN_EVERY_ATTEMPTS: u32 = 60;

/// What every link of the process shares.
pub(crate) struct Shared {
    /// Sender id and epoch of every envelope.
    pub origin: Origin,
    /// Encodes results and heartbeats, decodes tasks.
    pub codec: Codec,
    /// The key ring in use (each task takes the one current when it arrives, to the worker
    /// threads) and what heartbeats announce; replaced by a reload.
    pub keys: Arc<LiveKeys>,
    /// The worker threads.
    pub pool: Pool,
    /// How much the runtime thread verifies itself.
    pub own_share: OwnShare,
    /// Bounds the tasks taken and not yet answered, over all links.
    pub budget: Budget,
    /// Time between heartbeats.
    pub heartbeat_interval: Duration,
    /// What `/readyz` is decided from: which links are connected.
    pub status: Arc<Status>,
    /// What the guards in front of each link's sockets enforce; `None`: connected directly.
    pub guard_limits: Option<Limits>,
}

/// The verifier's end of one publisher.
pub(crate) struct Link {
    /// Its number, never reused (for `/readyz`).
    index: usize,
    endpoints: PublisherEndpoints,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
    in_flight: InFlight,
    /// Envelope sequence number of the last message sent on this link.
    seq: u64,
    drops: Rejects,
}

impl Link {
    /// Link number `index` to the publisher at `endpoints`, until `shutdown` (the process
    /// stops, or the publisher's address vanished); nothing happens until [`Link::run`].
    pub fn new(
        index: usize,
        endpoints: PublisherEndpoints,
        shared: Arc<Shared>,
        shutdown: CancellationToken,
    ) -> Self {
        Link {
            index,
            endpoints,
            in_flight: InFlight::new(&shared.budget),
            shared,
            shutdown,
            seq: 0,
            drops: Rejects::new("messages that are not valid tasks"),
        }
    }

    /// Connects, serves, reconnects when the publisher goes away, until `shutdown` fires;
    /// then pushes the results of tasks in flight and returns.
    pub async fn run(mut self) {
        self.shared.status.add(self.index, &self.endpoints.tasks);
        self.serve_until_shutdown().await;
        self.shared.status.remove(self.index);
    }

    async fn serve_until_shutdown(&mut self) {
        loop {
            // Whatever the last connection left on the pool is stale from here on.
            self.in_flight.next_generation();
            let Some(mut connection) = self.connect().await else {
                break;
            };
            self.shared.status.link(self.index, true);
            let served = self.serve(&mut connection).await;
            self.shared.status.link(self.index, false);
            match served {
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
        if self.in_flight.pending() > 0 {
            tracing::info!(
                pending = self.in_flight.pending(),
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
            let open = Connection::open(&self.endpoints, self.shared.guard_limits.as_ref());
            match self.in_flight.wait_discarding(&self.shutdown, open).await? {
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
            self.in_flight
                .wait_discarding(&self.shutdown, pause)
                .await?;
        }
    }

    /// Logs a failed attempt: the first and then one in [`WARN_EVERY_ATTEMPTS`] where it shows.
    fn attempt_failed(&self, attempts: u32, error: &plumbing::ConnectError) {
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
        let mut room: Option<Reservation> = None;
        loop {
            // The branch futures are dropped before a handler runs, so handlers may use `self`.
            tokio::select! {
                biased;
                () = self.shutdown.cancelled() => return Ok(()),
                Some(done) = self.in_flight.recv() => self.deliver(connection, done).await?,
                Some((side, event)) = connection.events.next() => socket_event(side, event)?,
                _ = heartbeat.tick() => self.heartbeat(connection).await?,
                reserved = self.shared.budget.reserve(), if room.is_none() => room = Some(reserved),
                message = connection.tasks.recv(), if room.is_some() => {
                    self.accept(connection, &message.map_err(Lost::ReceiveFailed)?, &mut room)?;
                }
            }
        }
    }

    /// Stops taking tasks, pushes the verdicts of those in flight (bounded), lets them flush.
    async fn drain(&mut self, mut connection: Connection) {
        // Close the task connection first, so the publisher stops handing this verifier work.
        connection.tasks.close();
        let in_flight = self.in_flight.pending();
        let pushing = async {
            while self.in_flight.pending() > 0 {
                let Some(done) = self.in_flight.recv().await else {
                    break;
                };
                self.deliver(&mut connection, done).await?;
            }
            Ok::<(), Lost>(())
        };
        if let Ok(Err(lost)) = tokio::time::timeout(DRAIN_TIMEOUT, pushing).await {
            tracing::warn!(kind = lost.kind(), cause = %lost, "cannot push the remaining verdicts");
        }
        let unanswered = self.in_flight.pending();
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

    /// Decodes a message from the task socket and verifies the task in the reserved room,
    /// with those already queued behind it; a message that is not a valid task is counted and
    /// dropped, the room kept.
    ///
    /// Up to [`VERIFY_HERE_AT_MOST`] of them are verified here, on the runtime thread, while
    /// it spends under half its time doing so ([`OwnShare`]): the worker threads sleep between
    /// tasks, and waking one and having it wake this thread for the verdict cost more than the
    /// verification. Only the others go to the pool, so a long backlog or a load past one
    /// thread still runs on every worker.
    fn accept(
        &mut self,
        connection: &mut Connection,
        message: &ZmqMessage,
        room: &mut Option<Reservation>,
    ) -> Result<(), Lost> {
        let Some(first) = self.decode(message) else {
            return Ok(());
        };
        let Some(reservation) = room.take() else {
            // `serve` only receives with room reserved.
            return Ok(());
        };
        let keys = self.shared.keys.current();
        let mut here = Vec::new();
        if self.shared.own_share.has_room() {
            here.push((first, reservation));
        } else {
            self.in_flight
                .dispatch(&self.shared.pool, &keys, first, reservation);
        }
        // Take what is already queued, while there is room: the first few are verified here,
        // the rest go to the pool.
        let mut failed = Ok(());
        while let Some(more) = self.shared.budget.try_reserve() {
            let next = match connection.tasks.recv().now_or_never() {
                None => break,
                Some(Ok(next)) => next,
                Some(Err(error)) => {
                    // The tasks already taken go through as usual; their verdicts are then
                    // dropped with this connection's generation.
                    failed = Err(Lost::ReceiveFailed(error));
                    break;
                }
            };
            // A message that is not a task leaves `more` to go back to the budget.
            if let Some(task) = self.decode(&next) {
                if here.len() < VERIFY_HERE_AT_MOST && self.shared.own_share.has_room() {
                    here.push((task, more));
                } else {
                    self.in_flight
                        .dispatch(&self.shared.pool, &keys, task, more);
                }
            }
        }
        let started = std::time::Instant::now();
        for (task, reservation) in here {
            self.in_flight.verify_here(&keys, &task, reservation);
        }
        self.shared.own_share.spent(started.elapsed());
        failed
    }

    /// The task a message from the task socket holds; a message that is not one is counted
    /// and dropped.
    fn decode(&mut self, message: &ZmqMessage) -> Option<VerifyTask> {
        let envelope = match self.shared.codec.decode::<VerifyTask>(message) {
            Ok(envelope) => envelope,
            Err(error) => {
                self.drops.record(&self.endpoints.tasks, &error);
                return None;
            }
        };
        let (envelope, task) = envelope.into_parts();
        tracing::debug!(
            task_id = task.task_id,
            key = %task.key,
            attempt = task.attempt,
            publisher = %envelope.sender,
            "task received"
        );
        Some(task)
    }

    /// Pushes a verdict back when it belongs to the current connection; drops it otherwise.
    async fn deliver(&mut self, connection: &mut Connection, done: Done) -> Result<(), Lost> {
        // The ticket is held until the verdict is pushed.
        let Some((verdict, _ticket)) = self.in_flight.current(done) else {
            return Ok(());
        };
        tracing::debug!(
            task_id = verdict.task_id,
            status = verdict.status.as_str(),
            "verdict pushed"
        );
        self.send(connection, Reply::Verdict(verdict)).await
    }

    /// Tells the publisher this verifier is alive, which keys it holds and how busy it is.
    async fn heartbeat(&mut self, connection: &mut Connection) -> Result<(), Lost> {
        let body = Reply::Heartbeat(VerifierHeartbeat {
            keys: self.shared.keys.infos(),
            in_flight: self.shared.budget.in_flight(),
        });
        self.send(connection, body).await
    }

    async fn send(&mut self, connection: &mut Connection, body: Reply) -> Result<(), Lost> {
        self.seq += 1;
        let envelope = self.shared.origin.envelope(self.seq, body);
        connection.push(self.shared.codec.encode(&envelope)).await
    }
}

/// What one socket event means: a closed connection is lost.
fn socket_event(side: Side, event: SocketEvent) -> Result<(), Lost> {
    match event {
        SocketEvent::Disconnected(_) => Err(Lost::Closed { side }),
        event => {
            tracing::debug!(socket = side.name(), ?event, "socket event");
            Ok(())
        }
    }
}
