//! Tasks taken and not yet answered: the process-wide [`Budget`] that keeps a flood of tasks
//! from queueing without bound, and each link's [`InFlight`] — its tasks on the worker threads
//! and their verdicts coming back, sorted by the connection they belong to.
//!
//! Each connection to a publisher is a *generation*. A task's verdict goes back only on the
//! generation it came from: after a publisher restart task ids start again, so an old verdict
//! must never reach the new publisher, where it would answer a different task.
//!
//! Three figures describe tasks taken; each is kept because none follows from the others:
//! - the budget's semaphore bounds tasks over all links, and is what a link waits on for room;
//! - the budget's count of tickets is what heartbeats report. It is not the semaphore's
//!   limit − available: each link also holds a permit while it waits for its next task, which
//!   is room reserved, not a task being checked;
//! - a link's count of its own tickets tells it when its last verdict is in (draining) and how
//!   many verdicts a lost connection leaves; the budget's count mixes all links.
//!
//! Both counts are kept by [`Ticket`] alone — up when a task goes to the pool, down when its
//! verdict is pushed or dropped — so they cannot drift apart from the work.

use crate::keys::KeyRing;
use crate::pool::Pool;
use crate::verify::verify_task;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use wire::{SignatureStatus, Verdict, VerifyTask};

/// Room for tasks over all links of the process.
pub(crate) struct Budget {
    permits: Arc<Semaphore>,
    limit: usize,
    taken: Arc<AtomicUsize>,
}

impl Budget {
    /// Room for `limit` tasks at a time.
    pub fn new(limit: usize) -> Self {
        Budget {
            permits: Arc::new(Semaphore::new(limit)),
            limit,
            taken: Arc::default(),
        }
    }

    /// Most tasks in flight at once.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Reserves room for one more task if there is some now.
    pub fn try_reserve(&self) -> Option<Reservation> {
        let permit = Arc::clone(&self.permits).try_acquire_owned().ok()?;
        Some(Reservation {
            permit,
            taken: Arc::clone(&self.taken),
        })
    }

    /// Waits until there is room for one more task and reserves it.
    pub async fn reserve(&self) -> Reservation {
        match Arc::clone(&self.permits).acquire_owned().await {
            Ok(permit) => Reservation {
                permit,
                taken: Arc::clone(&self.taken),
            },
            // Nothing closes the semaphore.
            Err(_) => std::future::pending().await,
        }
    }

    /// Tasks handed to the worker threads whose verdicts are not pushed or dropped yet.
    pub fn in_flight(&self) -> u32 {
        u32::try_from(self.taken.load(Ordering::Relaxed)).unwrap_or(u32::MAX)
    }
}

/// How much of the last few milliseconds the runtime thread spent verifying tasks itself: it
/// does so while that is under half, and the pool takes the rest, so a load past what one
/// thread verifies still runs on every worker.
pub(crate) struct OwnShare {
    base: std::time::Instant,
    /// Start of the current window, in ns since `base`.
    window: AtomicU64,
    /// Verifying done in it, in ns.
    busy: AtomicU64,
}

impl OwnShare {
    /// Length of one window.
    pub const WINDOW: std::time::Duration = std::time::Duration::from_millis(10);

    pub fn new() -> Self {
        OwnShare {
            base: std::time::Instant::now(),
            window: AtomicU64::new(0),
            busy: AtomicU64::new(0),
        }
    }

    /// Whether the runtime thread may verify one more task itself.
    pub fn has_room(&self) -> bool {
        let window = nanos(Self::WINDOW);
        let now = nanos(self.base.elapsed());
        if now.saturating_sub(self.window.load(Ordering::Relaxed)) >= window {
            self.window.store(now, Ordering::Relaxed);
            self.busy.store(0, Ordering::Relaxed);
            return true;
        }
        self.busy.load(Ordering::Relaxed) < window / 2
    }

    /// The runtime thread spent `time` verifying.
    pub fn spent(&self, time: std::time::Duration) {
        self.busy.fetch_add(nanos(time), Ordering::Relaxed);
    }
}

fn nanos(time: std::time::Duration) -> u64 {
    u64::try_from(time.as_nanos()).unwrap_or(u64::MAX)
}

/// Room for one task, held by a link while it waits for that task to arrive.
pub(crate) struct Reservation {
    permit: OwnedSemaphorePermit,
    taken: Arc<AtomicUsize>,
}

/// A task's place in the budget, from the moment it goes to the pool until its verdict is
/// pushed or dropped; it counts in the budget's and in its link's figures while it lives.
pub(crate) struct Ticket {
    _permit: OwnedSemaphorePermit,
    _taken: Share,
    _pending: Share,
}

/// One unit of a shared count, given back when dropped.
struct Share(Arc<AtomicUsize>);

impl Share {
    fn new(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Share(Arc::clone(count))
    }
}

impl Drop for Share {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A verdict coming back from the pool.
pub(crate) struct Done {
    generation: u64,
    verdict: Verdict,
    ticket: Ticket,
}

/// The metric handles every verified task records into, looked up once: a lookup by name and
/// label hashes the key and takes the registry's lock, per task.
struct TaskMetrics {
    seconds: metrics::Histogram,
    verified: plumbing::StatusCounters,
}

impl TaskMetrics {
    fn new() -> Self {
        TaskMetrics {
            seconds: metrics::histogram!("verification_seconds"),
            verified: plumbing::StatusCounters::new("tasks_verified_total"),
        }
    }

    fn record(&self, status: SignatureStatus, started: std::time::Instant) {
        self.seconds.record(started.elapsed().as_secs_f64());
        self.verified.of(status).increment(1);
    }
}

/// One link's tasks in flight and the channel their verdicts come back on.
pub(crate) struct InFlight {
    metrics: Arc<TaskMetrics>,
    done_tx: mpsc::Sender<Done>,
    done_rx: mpsc::Receiver<Done>,
    /// This link's tickets alive.
    pending: Arc<AtomicUsize>,
    /// The connection whose verdicts are pushed; older ones are dropped.
    generation: u64,
}

impl InFlight {
    /// Verdicts for a link of a process whose budget is `budget`.
    ///
    /// The channel is bounded by the budget's limit, and that bound is never reached: every
    /// [`Done`] holds a ticket, a ticket holds one of the budget's permits, and there are only
    /// `limit` of them — so a link can never have more verdicts outstanding, whether on the
    /// worker threads or queued here.
    pub fn new(budget: &Budget) -> Self {
        let (done_tx, done_rx) = mpsc::channel(budget.limit().max(1));
        InFlight {
            metrics: Arc::new(TaskMetrics::new()),
            done_tx,
            done_rx,
            pending: Arc::default(),
            generation: 0,
        }
    }

    /// Starts a new generation: verdicts of tasks taken before are dropped from now on.
    pub fn next_generation(&mut self) {
        self.generation += 1;
    }

    /// This link's tasks whose verdicts are not pushed or dropped yet.
    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::Relaxed)
    }

    /// Verifies `task` here and now, on the calling thread, in the room `reservation` holds;
    /// its verdict comes back through [`InFlight::recv`]. For a task with none behind it: it
    /// costs no hand-off to a worker thread and back, each a wake-up and a context switch.
    pub fn verify_here(&self, keys: &KeyRing, task: &VerifyTask, reservation: Reservation) {
        let ticket = self.ticket(reservation);
        let started = std::time::Instant::now();
        let verdict = verify_task(keys, task);
        self.metrics.record(verdict.status, started);
        let done = Done {
            generation: self.generation,
            verdict,
            ticket,
        };
        hand_back(&self.done_tx, done);
    }

    /// Verifies `task` on the pool, in the room `reservation` holds; its verdict comes back
    /// through [`InFlight::recv`].
    pub fn dispatch(
        &self,
        pool: &Pool,
        keys: &Arc<KeyRing>,
        task: VerifyTask,
        reservation: Reservation,
    ) {
        let ticket = self.ticket(reservation);
        let keys = Arc::clone(keys);
        let done_tx = self.done_tx.clone();
        let metrics = Arc::clone(&self.metrics);
        let generation = self.generation;
        pool.execute(move || {
            let started = std::time::Instant::now();
            let verdict = verify_task(&keys, &task);
            metrics.record(verdict.status, started);
            let done = Done {
                generation,
                verdict,
                ticket,
            };
            hand_back(&done_tx, done);
        });
    }

    fn ticket(&self, reservation: Reservation) -> Ticket {
        Ticket {
            _taken: Share::new(&reservation.taken),
            _pending: Share::new(&self.pending),
            _permit: reservation.permit,
        }
    }

    /// The next verdict from the pool, of whichever generation (cancel-safe).
    pub async fn recv(&mut self) -> Option<Done> {
        self.done_rx.recv().await
    }

    /// The verdict, with the ticket to hold until it is pushed, when `done` answers a task of
    /// the current connection; otherwise it is dropped here.
    pub fn current(&self, done: Done) -> Option<(Verdict, Ticket)> {
        if done.generation == self.generation {
            Some((done.verdict, done.ticket))
        } else {
            discard(done);
            None
        }
    }

    /// Waits for `f` unless `shutdown` fires first (then `None`), dropping every verdict that
    /// comes back meanwhile, so their tickets free up. For the time between connections: the
    /// verdicts that arrive then belong to a lost one.
    pub async fn wait_discarding<F: Future>(
        &mut self,
        shutdown: &CancellationToken,
        f: F,
    ) -> Option<F::Output> {
        tokio::pin!(f);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return None,
                Some(done) = self.done_rx.recv() => discard(done),
                output = &mut f => return Some(output),
            }
        }
    }
}

/// Queues a verdict for its link.
fn hand_back(done_tx: &mpsc::Sender<Done>, done: Done) {
    // `try_send`, never a wait: the worker threads serve every link, so none may wait on one.
    // By the bound in `InFlight::new` the channel is never full; were it ever, dropping the
    // verdict costs only a resend after the task's deadline.
    match done_tx.try_send(done) {
        Ok(()) => {}
        // The link has stopped; nobody wants the verdict.
        Err(TrySendError::Closed(_)) => {}
        Err(TrySendError::Full(done)) => tracing::error!(
            task_id = done.verdict.task_id,
            "verdict queue full, verdict dropped; the in-flight bound is broken"
        ),
    }
}

/// Drops the verdict of a task from a lost connection: its publisher is gone, and the new one
/// may reuse the task id.
fn discard(done: Done) {
    tracing::debug!(
        task_id = done.verdict.task_id,
        "verdict for a lost connection dropped"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use wire::SignatureStatus;

    fn task(task_id: u64) -> VerifyTask {
        VerifyTask {
            task_id,
            key: "nobody".into(),
            sha256: wire::sha256(b"doc"),
            signature: vec![0; 256],
            attempt: 1,
        }
    }

    #[tokio::test]
    async fn a_ticket_counts_in_both_figures_until_its_verdict_is_handled() {
        let (pool, keys) = (Pool::new(1).expect("a thread"), Arc::default());
        let budget = Budget::new(2);
        let mut link = InFlight::new(&budget);
        link.next_generation();

        link.dispatch(&pool, &keys, task(7), budget.reserve().await);
        let done = link.recv().await.expect("a verdict");
        assert_eq!((budget.in_flight(), link.pending()), (1, 1));

        let (verdict, ticket) = link.current(done).expect("same generation");
        assert_eq!(verdict.task_id, 7);
        assert_eq!(verdict.status, SignatureStatus::Error);
        drop(ticket);
        assert_eq!((budget.in_flight(), link.pending()), (0, 0));
        assert_eq!(budget.permits.available_permits(), 2);
    }

    #[tokio::test]
    async fn a_task_verified_here_holds_its_ticket_until_its_verdict_is_handled() {
        let keys = KeyRing::default();
        let budget = Budget::new(2);
        let mut link = InFlight::new(&budget);
        link.next_generation();

        link.verify_here(&keys, &task(9), budget.reserve().await);
        assert_eq!((budget.in_flight(), link.pending()), (1, 1));
        let done = link.recv().await.expect("a verdict, queued at once");
        let (verdict, ticket) = link.current(done).expect("same generation");
        assert_eq!(
            (verdict.task_id, verdict.status),
            (9, SignatureStatus::Error)
        );
        drop(ticket);
        assert_eq!((budget.in_flight(), link.pending()), (0, 0));
    }

    #[tokio::test]
    async fn the_runtime_thread_verifies_while_under_half_of_a_window_and_again_in_the_next() {
        let share = OwnShare::new();
        assert!(share.has_room());
        share.spent(OwnShare::WINDOW / 3);
        assert!(share.has_room(), "a third of the window");
        share.spent(OwnShare::WINDOW / 3);
        assert!(!share.has_room(), "two thirds: the rest goes to the pool");
        let next_window = async {
            while !share.has_room() {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(5), next_window)
            .await
            .expect("room again in a later window");
    }

    #[tokio::test]
    async fn room_is_reserved_without_waiting_only_while_there_is_some() {
        let budget = Budget::new(1);
        let only = budget.try_reserve().expect("room for one");
        assert!(
            budget.try_reserve().is_none(),
            "the only permit is reserved"
        );
        drop(only);
        assert!(budget.try_reserve().is_some(), "room again");
    }

    #[tokio::test]
    async fn a_reservation_alone_is_not_a_task_in_flight() {
        let budget = Budget::new(1);
        let reservation = budget.reserve().await;
        assert_eq!(budget.in_flight(), 0);
        let no_room = tokio::time::timeout(Duration::from_millis(50), budget.reserve()).await;
        assert!(no_room.is_err(), "the only permit is reserved");
        drop(reservation);
        tokio::time::timeout(Duration::from_secs(5), budget.reserve())
            .await
            .expect("room again");
    }

    #[tokio::test]
    async fn verdicts_of_an_older_generation_are_dropped_and_free_their_ticket() {
        let (pool, keys) = (Pool::new(1).expect("a thread"), Arc::default());
        let budget = Budget::new(2);
        let mut link = InFlight::new(&budget);
        link.next_generation();
        link.dispatch(&pool, &keys, task(1), budget.reserve().await);
        let done = link.recv().await.expect("a verdict");

        link.next_generation();
        assert!(link.current(done).is_none());
        assert_eq!((budget.in_flight(), link.pending()), (0, 0));
    }

    #[tokio::test]
    async fn waiting_discards_verdicts_meanwhile_and_gives_way_to_shutdown() {
        let (pool, keys) = (Pool::new(1).expect("a thread"), Arc::default());
        let budget = Budget::new(2);
        let mut link = InFlight::new(&budget);
        let shutdown = CancellationToken::new();
        link.dispatch(&pool, &keys, task(1), budget.reserve().await);

        let pending = Arc::clone(&link.pending);
        let all_dropped = async move {
            while pending.load(Ordering::Relaxed) > 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        let waited = tokio::time::timeout(
            Duration::from_secs(10),
            link.wait_discarding(&shutdown, all_dropped),
        )
        .await;
        assert_eq!(
            waited,
            Ok(Some(())),
            "the verdict came back and was dropped"
        );

        shutdown.cancel();
        let never = link.wait_discarding(&shutdown, std::future::pending::<()>());
        assert_eq!(never.await, None);
    }
}
