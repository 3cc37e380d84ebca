//! Signature checks handed to verifier workers over PUSH/PULL, with delivery made reliable on
//! top (design §6): every task has an id and a deadline; no verdict in time means it is sent
//! again, to whichever verifier is alive, a bounded number of times, then it ends as `error`.
//! Verdicts are idempotent by task id. Verifiers announce themselves and their keys with
//! heartbeats on the results socket; the API learns from them which keys exist.
//!
//! - [`registry`]: the verifiers heard from and their keys, as a snapshot ready for the API;
//! - [`dispatcher`]: the decisions (send, send again, conclude), with no I/O;
//! - [`sockets`]: the PUSH and PULL sockets, each owned by a task;
//! - [`driver`]: carries out the decisions on the tasks that bring the news (the handler, the
//!   PULL task) under one lock, and runs the one timer.

mod dispatcher;
mod driver;
mod registry;
mod sockets;

pub use dispatcher::Job;
pub use registry::Snapshot;

use crate::events::Events;
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use wire::Codec;

/// Delivery settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Endpoint the PUSH (tasks) socket binds.
    pub tasks_bind: String,
    /// Endpoint the PULL (results, heartbeats) socket binds.
    pub results_bind: String,
    /// Time a verifier has to answer one send of a task.
    pub task_timeout: Duration,
    /// Sends of a task before it ends as `error`.
    pub task_attempts: u32,
    /// A verifier not heard from for this long counts as gone.
    pub verifier_timeout: Duration,
    /// Requests that may wait for the dispatcher before new ones get 503; also the bound of
    /// the task outbox, so a full queue's worth of first sends fits in it.
    pub queue_capacity: usize,
    /// Requests the dispatcher takes at once (in flight, or with their outcome not yet
    /// published).
    pub max_in_flight: usize,
    /// The guard's limits for both sockets' peers (the verifiers).
    pub limits: Option<guard::Limits>,
    /// Requests are journaled: on stop, those still in flight stay pending, to be verified
    /// again at the next start, instead of ending as `error`.
    pub journaled: bool,
}

/// The task queue is full.
#[derive(Debug, thiserror::Error)]
#[error("the verification queue is full")]
pub struct Busy;

/// What the API asks of verification; cheap to clone. Once every clone is dropped the
/// dispatcher takes no more jobs, lets the tasks in flight end and stops.
#[derive(Clone)]
pub struct Verification {
    shared: Arc<driver::Shared>,
    _api: Arc<Api>,
    present: watch::Receiver<Arc<Snapshot>>,
    verifier_timeout: Duration,
}

/// Dropped with the last [`Verification`]: tells the dispatcher the API is gone.
struct Api(Weak<driver::Shared>);

impl Drop for Api {
    fn drop(&mut self) {
        if let Some(shared) = self.0.upgrade() {
            shared.stop();
        }
    }
}

impl Verification {
    /// Verifiers heard from within the verifier timeout, and their keys.
    pub fn present(&self) -> Arc<Snapshot> {
        self.present.borrow().clone()
    }

    /// How long a silent verifier still counts as present.
    pub fn verifier_timeout(&self) -> Duration {
        self.verifier_timeout
    }

    /// A handle for the requests read back from the journal that does not keep the
    /// dispatcher running: it stops when the API's handles are gone, resubmitted or not.
    pub fn resubmitter(&self) -> Resubmitter {
        Resubmitter {
            shared: Arc::downgrade(&self.shared),
            present: self.present.clone(),
        }
    }

    /// Takes a job without waiting: its task is sent at once, on this task.
    pub fn submit(&self, job: Job) -> Result<(), Busy> {
        self.shared.submit(job).map_err(|_| Busy)
    }
}

/// Queues the jobs of requests read back from the journal.
pub struct Resubmitter {
    shared: Weak<driver::Shared>,
    present: watch::Receiver<Arc<Snapshot>>,
}

impl Resubmitter {
    /// Queues `job` once a verifier is present and the queue has room: such a request has no
    /// client waiting to be told 503. Fails when the dispatcher has stopped.
    pub async fn resubmit(&mut self, mut job: Job) -> Result<(), Busy> {
        self.present
            .wait_for(|p| p.verifiers > 0)
            .await
            .map_err(|_| Busy)?;
        loop {
            let shared = self.shared.upgrade().ok_or(Busy)?;
            let room = shared.room();
            tokio::pin!(room);
            room.as_mut().enable();
            match shared.submit(job) {
                Ok(()) => return Ok(()),
                Err(driver::Refused(back)) => job = back,
            }
            if shared.is_stopping() {
                return Err(Busy);
            }
            room.await;
        }
    }
}

/// Binds the task and result sockets and starts the dispatcher; returns the handle for the
/// API, the dispatcher's task and the resolved tasks and results endpoints. The task ends once
/// every [`Verification`] handle is dropped and the tasks in flight have ended (or a drain
/// time has passed), with every outcome handed to `events`.
pub async fn start(
    settings: &Settings,
    codec: Codec,
    events: Events,
) -> anyhow::Result<(Verification, JoinHandle<()>, [String; 2])> {
    let sockets = sockets::bind(
        &settings.tasks_bind,
        &settings.results_bind,
        &settings.limits,
    )
    .await?;
    let endpoints = sockets.endpoints.clone();
    let (registry, present) = registry::Registry::new(settings.verifier_timeout);
    let core = driver::Core::new(
        dispatcher::Dispatcher::new(
            events.identity().clone(),
            settings.task_timeout,
            settings.task_attempts,
        ),
        registry,
    );
    // The shared state needs the outbox, and the PULL task the shared state: it reaches it
    // through a cell filled once both exist.
    let stop_replies = CancellationToken::new();
    let cell: Arc<OnceLock<Weak<driver::Shared>>> = Arc::new(OnceLock::new());
    let receive = {
        let cell = Arc::clone(&cell);
        let mut shared: Option<Arc<driver::Shared>> = None;
        move |reply| {
            if shared.is_none() {
                shared = cell.get().and_then(Weak::upgrade);
            }
            if let Some(shared) = &shared {
                shared.receive(reply);
            }
        }
    };
    let (outbox, replies) = sockets.start(
        codec.clone(),
        settings.queue_capacity,
        receive,
        stop_replies.clone(),
    );
    let (shared, outcomes) = driver::Shared::new(
        core,
        codec,
        outbox,
        events,
        settings.queue_capacity,
        settings.max_in_flight,
        settings.journaled,
    );
    let _ = cell.set(Arc::downgrade(&shared));
    let task = tokio::spawn(driver::run(
        Arc::clone(&shared),
        replies,
        stop_replies,
        outcomes,
    ));
    let handle = Verification {
        _api: Arc::new(Api(Arc::downgrade(&shared))),
        shared,
        present,
        verifier_timeout: settings.verifier_timeout,
    };
    Ok((handle, task, endpoints))
}
