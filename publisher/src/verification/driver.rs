//! The dispatcher's task. It feeds the [`Dispatcher`] jobs from the API, replies from the PULL
//! socket and the one timer — woken at the soonest task deadline or verifier expiry — and
//! carries out what it decides: a task into the outbox, an outcome into its request and on to
//! the event path. It never waits on the outbox or on the event queue.

use super::dispatcher::{Concluded, Decision, Dispatcher, Job};
use super::registry::Registry;
use crate::events::{Events, PublishError};
use crate::results::State;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;
use wire::{Codec, Envelope, Event, Reply, SignatureOutcome};
use zeromq::ZmqMessage;

/// How long in-flight tasks may still finish once the publisher is stopping.
const DRAIN: Duration = Duration::from_secs(5);

/// What the dispatcher's task works with.
pub struct Driver {
    /// The decisions.
    pub dispatcher: Dispatcher,
    /// The verifiers present.
    pub registry: Registry,
    /// Encodes tasks.
    pub codec: Codec,
    /// Encoded tasks for the PUSH task. Bounded; when it is full the send is skipped (counted
    /// in `tasks_send_skipped_total`) and the task's deadline sends it again, as it would a
    /// task lost on the way to a verifier.
    pub outbox: mpsc::Sender<ZmqMessage>,
    /// Requests are journaled: those in flight at the stop stay pending for the next start.
    pub journaled: bool,
}

impl Driver {
    /// Runs until `jobs` is closed and the tasks in flight have ended (or [`DRAIN`] has
    /// passed); what is left then ends as `error`. At most `max_in_flight` requests are taken
    /// at once.
    pub async fn run(
        mut self,
        mut jobs: mpsc::Receiver<Job>,
        mut replies: mpsc::Receiver<Envelope<Reply>>,
        events: Events,
        max_in_flight: usize,
    ) {
        // Outcomes are published by a task of their own, so a full event queue never stops
        // this loop from reading verdicts. Policy: a job is taken only while the tasks in
        // flight plus the outcomes not yet published are fewer than this channel's bound.
        // Each outcome comes from a task in flight, so it always finds room and `try_send`
        // never fails for want of it; at the bound, jobs wait in their queue, and when that is
        // full too the API answers 503.
        let (outcomes, outcomes_rx) = mpsc::channel(max_in_flight);
        let publisher = tokio::spawn(publish_outcomes(events, outcomes_rx));
        let timer = tokio::time::sleep(Duration::ZERO);
        tokio::pin!(timer);
        let mut armed: Option<Instant> = None;
        let mut stopping: Option<Instant> = None;
        loop {
            let wake = [
                self.dispatcher.next_deadline(),
                self.registry.next_expiry(),
                stopping.map(|since| since + DRAIN),
            ]
            .into_iter()
            .flatten()
            .min();
            if wake != armed {
                if let Some(at) = wake {
                    timer.as_mut().reset(at.into());
                }
                armed = wake;
            }
            let room = self.dispatcher.len() < outcomes.capacity();
            tokio::select! {
                job = jobs.recv(), if stopping.is_none() && room => match job {
                    Some(job) => {
                        let decision = self.dispatcher.dispatch(job, Instant::now());
                        self.act(decision, &outcomes);
                    }
                    None => stopping = Some(Instant::now()),
                },
                Some(reply) = replies.recv() => self.receive(reply, &outcomes),
                () = &mut timer, if armed.is_some() => {
                    // Fired: re-armed at the next wake, even when it is the same instant.
                    armed = None;
                    let now = Instant::now();
                    self.registry.prune(now);
                    while let Some(decision) = self.dispatcher.expire(now) {
                        self.act(decision, &outcomes);
                    }
                },
                else => break,
            }
            if let Some(since) = stopping {
                if self.dispatcher.is_empty() || since.elapsed() >= DRAIN {
                    break;
                }
            }
        }
        let unanswered = self
            .dispatcher
            .give_up("the publisher stopped before a verifier answered");
        if self.journaled {
            if !unanswered.is_empty() {
                tracing::info!(
                    requests = unanswered.len(),
                    "requests without a verdict stay in the journal, to be verified at the next start"
                );
            }
        } else {
            for ended in unanswered {
                conclude(ended, &outcomes);
            }
        }
        drop(outcomes);
        if let Err(e) = publisher.await {
            tracing::error!(cause = %e, "outcome publisher failed");
        }
        tracing::info!(
            duplicate_verdicts = self.dispatcher.duplicates(),
            "verification dispatcher stopped"
        );
    }

    fn receive(&mut self, reply: Envelope<Reply>, outcomes: &mpsc::Sender<SignatureOutcome>) {
        let now = Instant::now();
        match reply.body {
            Reply::Heartbeat(beat) => self.registry.heard(&reply.sender, beat.keys, now),
            Reply::Verdict(verdict) => {
                if let Some(decision) = self.dispatcher.verdict(&reply.sender, verdict, now) {
                    self.act(decision, outcomes);
                }
            }
        }
    }

    fn act(&mut self, decision: Decision, outcomes: &mpsc::Sender<SignatureOutcome>) {
        match decision {
            Decision::Send(task_id) => self.send(task_id),
            Decision::Conclude(ended) => conclude(ended, outcomes),
        }
    }

    fn send(&mut self, task_id: u64) {
        let codec = &self.codec;
        let Some(message) = self
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
}

/// Records how the request ended and queues its outcome event.
fn conclude(ended: Concluded, outcomes: &mpsc::Sender<SignatureOutcome>) {
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
    let outcome = SignatureOutcome {
        id: request.id().to_owned(),
        key: request.key().to_owned(),
        status,
        reason,
        verified_by,
        attempts,
    };
    match outcomes.try_send(outcome) {
        Ok(()) => {}
        // Not while the bound in `Driver::run` holds; were it broken, say so rather than wait.
        Err(TrySendError::Full(_)) => {
            tracing::error!(request = %request.id(), "outcome queue full; its event is lost");
        }
        Err(TrySendError::Closed(_)) => {
            tracing::error!("event path closed before the verification dispatcher");
        }
    }
}

/// Publishes outcomes in the order they were concluded until the dispatcher is done.
async fn publish_outcomes(events: Events, mut outcomes: mpsc::Receiver<SignatureOutcome>) {
    while let Some(outcome) = outcomes.recv().await {
        let id = outcome.id.clone();
        match events.publish(Event::SignatureOutcome(outcome)).await {
            Ok(_) => {}
            Err(PublishError::Stopped) => {
                tracing::error!("event path closed before the verification dispatcher");
                return;
            }
            // Failing now: the outcome is not in the journal, so after a restart the request
            // is verified again.
            Err(PublishError::Journal(e)) => {
                tracing::warn!(request = %id, cause = %e, "outcome not journaled");
            }
        }
    }
}
