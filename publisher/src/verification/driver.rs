//! Carries out what the [`Dispatcher`] decides, on whichever task brings the news: the request
//! handler that submits a job sends its task at once; the PULL task that decodes a verdict
//! concludes its request and publishes the outcome; one timer task, woken at the soonest task
//! deadline or verifier expiry, sends tasks again and drops silent verifiers. They share one
//! [`Core`] under a lock held only for a decision and its sending, never across a wait: a
//! task goes into the outbox with `try_send`, an outcome onto the event queue with
//! [`Events::try_publish`]. A request thus crosses no task of the dispatcher's own on its way
//! to a verifier and back.

use super::dispatcher::{Concluded, Decision, Dispatcher, Job};
use super::registry::Registry;
use crate::events::{Events, PublishError};
use crate::results::State;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tokio::sync::futures::Notified;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use wire::{Codec, Envelope, Event, Reply, SignatureOutcome};
use zeromq::ZmqMessage;

/// How long in-flight tasks may still finish once the publisher is stopping.
const DRAIN: Duration = Duration::from_secs(5);

/// The decisions' state, under the lock.
pub struct Core {
    /// The tasks in flight.
    pub dispatcher: Dispatcher,
    /// The verifiers present.
    pub registry: Registry,
    /// Jobs accepted while the tasks in flight were at their bound, oldest first.
    waiting: VecDeque<Job>,
    /// Since when the API has been gone (every [`super::Verification`] dropped).
    stopping: Option<Instant>,
    /// What the timer task sleeps until; a sooner wake must notify it.
    armed: Option<Instant>,
}

/// What the handlers, the PULL task and the timer task share.
pub struct Shared {
    core: Mutex<Core>,
    codec: Codec,
    /// Encoded tasks for the PUSH task. Bounded; when it is full the send is skipped (counted
    /// in `tasks_send_skipped_total`) and the task's deadline sends it again, as it would a
    /// task lost on the way to a verifier.
    outbox: mpsc::Sender<ZmqMessage>,
    events: Events,
    /// Outcomes that could not go onto the event queue at once (it was full, or it leads
    /// through the journal), for the outcome task, which waits for room. Policy: a job is
    /// taken into flight only while the tasks in flight are fewer than this channel's free
    /// room, so every conclusion finds room here; at the bound, jobs wait in
    /// [`Core::waiting`], and when that is full too the API answers 503.
    outcomes: mpsc::Sender<Event>,
    /// Most jobs in [`Core::waiting`].
    queue_capacity: usize,
    /// Wakes the timer task: a sooner deadline, room for waiting jobs, or the stop.
    wake: Notify,
    /// Wakes resubmitters waiting for room in [`Core::waiting`].
    room: Notify,
    /// Requests are journaled: those in flight at the stop stay pending for the next start.
    journaled: bool,
}

/// The job queue is full, or the dispatcher is stopping.
pub struct Refused(pub Job);

impl Shared {
    /// Shares `core`; the returned receiver is the outcome task's, `max_in_flight` its bound.
    pub fn new(
        core: Core,
        codec: Codec,
        outbox: mpsc::Sender<ZmqMessage>,
        events: Events,
        queue_capacity: usize,
        max_in_flight: usize,
        journaled: bool,
    ) -> (Arc<Self>, mpsc::Receiver<Event>) {
        let (outcomes, outcomes_rx) = mpsc::channel(max_in_flight.max(1));
        let shared = Shared {
            core: Mutex::new(core),
            codec,
            outbox,
            events,
            outcomes,
            queue_capacity,
            wake: Notify::new(),
            room: Notify::new(),
            journaled,
        };
        (Arc::new(shared), outcomes_rx)
    }

    fn lock(&self) -> MutexGuard<'_, Core> {
        self.core.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes `job`: its task is sent at once, or the job waits for room among the tasks in
    /// flight; refused when that queue is full too, or once the dispatcher is stopping.
    pub fn submit(&self, job: Job) -> Result<(), Refused> {
        let mut core = self.lock();
        if core.stopping.is_some() {
            return Err(Refused(job));
        }
        if core.waiting.is_empty() && self.has_room(&core) {
            let decision = core.dispatcher.dispatch(job, Instant::now());
            self.act(&mut core, decision);
            self.rearm(&core);
        } else if core.waiting.len() < self.queue_capacity {
            core.waiting.push_back(job);
        } else {
            return Err(Refused(job));
        }
        Ok(())
    }

    /// What the PULL task decoded: a heartbeat or a verdict.
    pub fn receive(&self, reply: Envelope<Reply>) {
        let now = Instant::now();
        let mut core = self.lock();
        match reply.body {
            Reply::Heartbeat(beat) => core.registry.heard(&reply.sender, beat.keys, now),
            Reply::Verdict(verdict) => {
                if let Some(decision) = core.dispatcher.verdict(&reply.sender, verdict, now) {
                    self.act(&mut core, decision);
                    self.fill(&mut core);
                }
            }
        }
        self.rearm(&core);
    }

    /// The API is gone: no job is taken any more; the timer task drains and stops.
    pub fn stop(&self) {
        let mut core = self.lock();
        core.stopping.get_or_insert_with(Instant::now);
        drop(core);
        self.wake.notify_one();
    }

    /// Whether the API is gone and no job is taken any more.
    pub fn is_stopping(&self) -> bool {
        self.lock().stopping.is_some()
    }

    /// Completes when the job queue may have room, or the dispatcher has stopped.
    pub fn room(&self) -> Notified<'_> {
        self.room.notified()
    }

    fn has_room(&self, core: &Core) -> bool {
        core.dispatcher.len() < self.outcomes.capacity()
    }

    /// Moves waiting jobs into flight while there is room.
    fn fill(&self, core: &mut Core) {
        let mut moved = false;
        while self.has_room(core) {
            let Some(job) = core.waiting.pop_front() else {
                break;
            };
            let decision = core.dispatcher.dispatch(job, Instant::now());
            self.act(core, decision);
            moved = true;
        }
        if moved {
            self.room.notify_waiters();
        }
    }

    /// Notifies the timer task when the soonest wake is now sooner than what it sleeps until.
    fn rearm(&self, core: &Core) {
        let wake = core.next_wake();
        if wake.is_some() && (core.armed.is_none() || wake < core.armed) {
            self.wake.notify_one();
        }
    }

    fn act(&self, core: &mut Core, decision: Decision) {
        match decision {
            Decision::Send(task_id) => self.send(core, task_id),
            Decision::Conclude(ended) => self.conclude(ended),
        }
    }

    fn send(&self, core: &mut Core, task_id: u64) {
        let codec = &self.codec;
        let Some(message) = core
            .dispatcher
            .with_task(task_id, |task| codec.encode(task))
        else {
            return;
        };
        match self.outbox.try_send(message) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                metrics::counter!("tasks_send_skipped_total").increment(1);
                tracing::debug!(
                    task_id,
                    "task outbox full; the deadline sends the task again"
                );
            }
            Err(TrySendError::Closed(_)) => tracing::debug!(task_id, "task socket closed"),
        }
    }

    /// Records how the request ended and publishes its outcome event: onto the event queue at
    /// once when that needs no wait and no earlier outcome is still waiting, else through the
    /// outcome task.
    fn conclude(&self, ended: Concluded) {
        let Concluded {
            request,
            status,
            reason,
            verified_by,
            attempts,
        } = ended;
        request.finish(State::Done {
            status,
            reason: reason.clone(),
            verified_by: verified_by.clone(),
        });
        let mut event = Event::SignatureOutcome(SignatureOutcome {
            id: request.id().to_owned(),
            key: request.key().to_owned(),
            status,
            reason,
            verified_by,
            attempts,
        });
        if self.outcomes.capacity() == self.outcomes.max_capacity() {
            match self.events.try_publish(event) {
                Ok(_) => return,
                Err(back) => event = back,
            }
        }
        match self.outcomes.try_send(event) {
            Ok(()) => {}
            // Not while the bound in `has_room` holds; were it broken, say so rather than wait.
            Err(TrySendError::Full(_)) => {
                tracing::error!(request = %request.id(), "outcome queue full; its event is lost");
            }
            Err(TrySendError::Closed(_)) => {
                tracing::error!("event path closed before the verification dispatcher");
            }
        }
    }
}

impl Core {
    /// No task in flight, no verifier heard from yet.
    pub fn new(dispatcher: Dispatcher, registry: Registry) -> Self {
        Core {
            dispatcher,
            registry,
            waiting: VecDeque::new(),
            stopping: None,
            armed: None,
        }
    }

    fn next_wake(&self) -> Option<Instant> {
        [
            self.dispatcher.next_deadline(),
            self.registry.next_expiry(),
            self.stopping.map(|since| since + DRAIN),
        ]
        .into_iter()
        .flatten()
        .min()
    }
}

/// The timer task: sends tasks again at their deadlines, drops silent verifiers and takes
/// waiting jobs in as room appears, until the API is gone and the tasks in flight have ended
/// (or [`DRAIN`] has passed); what is left then ends as `error`, or with a journal stays
/// pending for the next start. It then stops the PULL task (`replies`, which ends once
/// `stop_replies` is cancelled) and returns once the outcome task has published everything.
pub async fn run(
    shared: Arc<Shared>,
    replies: JoinHandle<()>,
    stop_replies: CancellationToken,
    outcomes: mpsc::Receiver<Event>,
) {
    let publisher = tokio::spawn(publish_outcomes(
        shared.events.clone(),
        outcomes,
        Arc::downgrade(&shared),
    ));
    let timer = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(timer);
    loop {
        let wake = {
            let mut core = shared.lock();
            let now = Instant::now();
            core.registry.prune(now);
            while let Some(decision) = core.dispatcher.expire(now) {
                shared.act(&mut core, decision);
            }
            shared.fill(&mut core);
            if let Some(since) = core.stopping {
                let drained = core.dispatcher.is_empty() && core.waiting.is_empty();
                if drained || since.elapsed() >= DRAIN {
                    break;
                }
            }
            core.armed = core.next_wake();
            core.armed
        };
        match wake {
            Some(at) => {
                timer.as_mut().reset(at.into());
                tokio::select! {
                    () = &mut timer => {}
                    () = shared.wake.notified() => {}
                }
            }
            None => shared.wake.notified().await,
        }
    }
    let reason = "the publisher stopped before a verifier answered";
    let (unanswered, unsent, duplicates) = {
        let mut core = shared.lock();
        let unanswered = core.dispatcher.give_up(reason);
        let unsent: Vec<Job> = core.waiting.drain(..).collect();
        (unanswered, unsent, core.dispatcher.duplicates())
    };
    shared.room.notify_waiters();
    if shared.journaled {
        let left = unanswered.len() + unsent.len();
        if left > 0 {
            tracing::info!(
                requests = left,
                "requests without a verdict stay in the journal, to be verified at the next start"
            );
        }
    } else {
        for ended in unanswered {
            shared.conclude(ended);
        }
        for job in unsent {
            shared.conclude(Concluded {
                request: job.request,
                status: wire::SignatureStatus::Error,
                reason: Some(reason.to_owned()),
                verified_by: None,
                attempts: 0,
            });
        }
    }
    stop_replies.cancel();
    if let Err(e) = replies.await {
        tracing::error!(cause = %e, "results socket task failed");
    }
    // The last strong handle: the outbox and the outcome queue close with it, so the PUSH
    // task ends and the outcome task drains what is left.
    drop(shared);
    if let Err(e) = publisher.await {
        tracing::error!(cause = %e, "outcome publisher failed");
    }
    tracing::info!(
        duplicate_verdicts = duplicates,
        "verification dispatcher stopped"
    );
}

/// Publishes the outcomes that could not go onto the event queue at once, in order, until the
/// dispatcher is gone; after each, the timer task may take waiting jobs in.
async fn publish_outcomes(
    events: Events,
    mut outcomes: mpsc::Receiver<Event>,
    shared: Weak<Shared>,
) {
    while let Some(event) = outcomes.recv().await {
        match events.publish(event).await {
            Ok(_) => {}
            Err(PublishError::Stopped) => {
                tracing::error!("event path closed before the verification dispatcher");
                return;
            }
            // Failing now: the outcome is not in the journal, so after a restart the request
            // is verified again.
            Err(PublishError::Journal(e)) => {
                tracing::warn!(cause = %e, "outcome not journaled");
            }
        }
        if let Some(shared) = shared.upgrade() {
            shared.wake.notify_one();
        }
    }
}
