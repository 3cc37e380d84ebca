//! Signature checks handed to verifier workers over PUSH/PULL, with delivery made reliable on
//! top (design §6): every task has an id and a deadline; no verdict in time means it is sent
//! again, to whichever verifier is alive, a bounded number of times, then it ends as `error`.
//! Verdicts are idempotent by task id. Verifiers announce themselves and their keys with
//! heartbeats on the results socket; the API learns from them which keys exist.

use crate::events::Events;
use crate::results::{Results, State};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use wire::{
    Codec, Envelope, Event, KeyInfo, Reply, SignatureOutcome, SignatureStatus, Verdict, VerifyTask,
};
use zeromq::{PullSocket, PushSocket, Socket, SocketRecv, SocketSend, ZmqMessage};

/// How often deadlines are checked.
const TICK: Duration = Duration::from_millis(100);
/// How long in-flight tasks may still finish once the publisher is stopping.
const DRAIN: Duration = Duration::from_secs(5);

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
    /// Requests that may wait for the dispatcher before new ones get 503.
    pub queue_capacity: usize,
}

/// A signature to check for request `request_id`.
#[derive(Debug)]
pub struct Job {
    /// The API request it belongs to.
    pub request_id: String,
    /// Key id.
    pub key: String,
    /// The signed document.
    pub document: Vec<u8>,
    /// The signature.
    pub signature: Vec<u8>,
}

/// The task queue is full.
#[derive(Debug, thiserror::Error)]
#[error("the verification queue is full")]
pub struct Busy;

/// What the API asks of verification; cheap to clone.
#[derive(Clone)]
pub struct Verification {
    jobs: mpsc::Sender<Job>,
    verifiers: Arc<Mutex<Verifiers>>,
    verifier_timeout: Duration,
}

/// Verifiers heard from: id → (last heard, keys it holds).
#[derive(Default)]
struct Verifiers(HashMap<String, (Instant, Vec<KeyInfo>)>);

/// The verifiers present right now and the keys they hold.
#[derive(Debug, Default)]
pub struct Present {
    /// How many verifiers were heard from recently.
    pub verifiers: usize,
    /// Key id → signature length in bytes.
    pub keys: HashMap<String, u32>,
}

impl Verification {
    /// Verifiers heard from within the verifier timeout, and their keys.
    pub fn present(&self) -> Present {
        let verifiers = self.verifiers.lock().unwrap_or_else(|p| p.into_inner());
        let mut present = Present::default();
        for (heard, keys) in verifiers.0.values() {
            if heard.elapsed() < self.verifier_timeout {
                present.verifiers += 1;
                for key in keys {
                    present.keys.insert(key.id.clone(), key.modulus_len);
                }
            }
        }
        present
    }

    /// How long a silent verifier still counts as present.
    pub fn verifier_timeout(&self) -> Duration {
        self.verifier_timeout
    }

    /// Queues a job without waiting.
    pub fn submit(&self, job: Job) -> Result<(), Busy> {
        self.jobs.try_send(job).map_err(|_| Busy)
    }
}

/// Binds the task and result sockets and starts the dispatcher. The returned task ends once
/// every [`Verification`] handle is dropped and in-flight tasks have finished (or [`DRAIN`]
/// has passed).
pub async fn start(
    settings: &Settings,
    codec: Codec,
    events: Events,
    results: Arc<Results>,
) -> anyhow::Result<(Verification, JoinHandle<()>, [String; 2])> {
    let mut push = PushSocket::new();
    let tasks_endpoint = push
        .bind(&settings.tasks_bind)
        .await
        .map_err(|e| anyhow::anyhow!("cannot bind TASKS_BIND {}: {e}", settings.tasks_bind))?;
    let mut pull = PullSocket::new();
    let results_endpoint = pull
        .bind(&settings.results_bind)
        .await
        .map_err(|e| anyhow::anyhow!("cannot bind RESULTS_BIND {}: {e}", settings.results_bind))?;
    let (jobs_tx, jobs) = mpsc::channel(settings.queue_capacity);
    let (outbox, outbox_rx) = mpsc::unbounded_channel();
    tokio::spawn(push_tasks(push, outbox_rx));
    let verifiers = Arc::new(Mutex::new(Verifiers::default()));
    let dispatcher = Dispatcher {
        codec,
        events,
        results,
        verifiers: verifiers.clone(),
        outbox,
        pending: HashMap::new(),
        next_task: 0,
        task_timeout: settings.task_timeout,
        task_attempts: settings.task_attempts,
    };
    let task = tokio::spawn(dispatcher.run(jobs, pull));
    let handle = Verification {
        jobs: jobs_tx,
        verifiers,
        verifier_timeout: settings.verifier_timeout,
    };
    Ok((
        handle,
        task,
        [tasks_endpoint.to_string(), results_endpoint.to_string()],
    ))
}

/// Owns the PUSH socket: sending may wait on a slow verifier, which must never stall the
/// dispatcher's reading of results.
async fn push_tasks(mut push: PushSocket, mut outbox: mpsc::UnboundedReceiver<ZmqMessage>) {
    while let Some(message) = outbox.recv().await {
        // With no verifier connected the send fails at once; the task's deadline re-sends it.
        if let Err(e) = push.send(message).await {
            tracing::debug!(cause = %e, "task not sent");
        }
    }
}

struct Pending {
    job: Job,
    attempts: u32,
    deadline: Instant,
    first_sent: Instant,
}

struct Dispatcher {
    codec: Codec,
    events: Events,
    results: Arc<Results>,
    verifiers: Arc<Mutex<Verifiers>>,
    outbox: mpsc::UnboundedSender<ZmqMessage>,
    pending: HashMap<u64, Pending>,
    next_task: u64,
    task_timeout: Duration,
    task_attempts: u32,
}

impl Dispatcher {
    async fn run(mut self, mut jobs: mpsc::Receiver<Job>, mut pull: PullSocket) {
        let rejects = plumbing::Rejects::new("a message that could not be decoded");
        let mut tick = tokio::time::interval(TICK);
        let mut stopping: Option<Instant> = None;
        loop {
            tokio::select! {
                job = jobs.recv(), if stopping.is_none() => match job {
                    Some(job) => self.dispatch(job),
                    None => stopping = Some(Instant::now()),
                },
                message = pull.recv() => match message {
                    Ok(message) => match self.codec.decode::<Reply>(&message) {
                        Ok(envelope) => self.receive(envelope).await,
                        Err(e) => {
                            rejects.record("results socket", &e);
                        }
                    },
                    Err(e) => tracing::debug!(cause = %e, "result receive interrupted"),
                },
                _ = tick.tick() => self.resend_overdue().await,
            }
            if let Some(since) = stopping {
                if self.pending.is_empty() || since.elapsed() > DRAIN {
                    break;
                }
            }
        }
        let unfinished: Vec<u64> = self.pending.keys().copied().collect();
        for task_id in unfinished {
            self.fail(task_id, "the publisher stopped before a verifier answered")
                .await;
        }
        tracing::info!("verification dispatcher stopped");
    }

    fn dispatch(&mut self, job: Job) {
        self.next_task += 1;
        let now = Instant::now();
        let task_id = self.next_task;
        self.pending.insert(
            task_id,
            Pending {
                job,
                attempts: 0,
                deadline: now,
                first_sent: now,
            },
        );
        self.send(task_id);
    }

    /// Sends (or re-sends) a pending task and sets its next deadline.
    fn send(&mut self, task_id: u64) {
        let Some(pending) = self.pending.get_mut(&task_id) else {
            return;
        };
        pending.attempts += 1;
        pending.deadline = Instant::now() + self.task_timeout;
        let envelope = self.events.identity().envelope(
            task_id,
            VerifyTask {
                task_id,
                key: pending.job.key.clone(),
                document: pending.job.document.clone(),
                signature: pending.job.signature.clone(),
                attempt: pending.attempts,
            },
        );
        let counter = if pending.attempts == 1 {
            "tasks_sent_total"
        } else {
            "tasks_resent_total"
        };
        metrics::counter!(counter).increment(1);
        let _ = self.outbox.send(self.codec.encode(&envelope));
    }

    async fn receive(&mut self, envelope: Envelope<Reply>) {
        match envelope.body {
            Reply::Heartbeat(beat) => {
                let mut verifiers = self.verifiers.lock().unwrap_or_else(|p| p.into_inner());
                let known = verifiers
                    .0
                    .insert(envelope.sender.clone(), (Instant::now(), beat.keys));
                if known.is_none() {
                    tracing::info!(verifier = %envelope.sender, "verifier joined");
                }
            }
            Reply::Verdict(result) => self.verdict(&envelope.sender, result).await,
        }
    }

    async fn verdict(&mut self, verifier: &str, result: Verdict) {
        let Some(pending) = self.pending.get(&result.task_id) else {
            metrics::counter!("tasks_duplicate_results_total").increment(1);
            tracing::debug!(task_id = result.task_id, %verifier, "late or duplicate result ignored");
            return;
        };
        // A verifier that could not check (it lacks the key, say) leaves the task to another.
        if result.status == SignatureStatus::Error && pending.attempts < self.task_attempts {
            tracing::debug!(task_id = result.task_id, %verifier, reason = ?result.reason, "re-sending after an error verdict");
            self.send(result.task_id);
            return;
        }
        let Some(pending) = self.pending.remove(&result.task_id) else {
            return;
        };
        metrics::histogram!("verification_seconds")
            .record(pending.first_sent.elapsed().as_secs_f64());
        metrics::counter!("tasks_completed_total", "status" => result.status.as_str()).increment(1);
        self.conclude(
            pending,
            result.status,
            result.reason,
            Some(verifier.to_owned()),
        )
        .await;
    }

    async fn resend_overdue(&mut self) {
        let now = Instant::now();
        let overdue: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(&id, _)| id)
            .collect();
        for task_id in overdue {
            let attempts = self.pending.get(&task_id).map_or(0, |p| p.attempts);
            if attempts < self.task_attempts {
                self.send(task_id);
            } else {
                let reason = format!(
                    "no verifier answered within {} in {attempts} attempts",
                    humantime::format_duration(self.task_timeout)
                );
                self.fail(task_id, &reason).await;
            }
        }
    }

    async fn fail(&mut self, task_id: u64, reason: &str) {
        if let Some(pending) = self.pending.remove(&task_id) {
            metrics::counter!("tasks_failed_total").increment(1);
            tracing::warn!(task_id, request = %pending.job.request_id, reason, "signature request failed");
            self.conclude(
                pending,
                SignatureStatus::Error,
                Some(reason.to_owned()),
                None,
            )
            .await;
        }
    }

    /// Records the outcome for the API and announces it as an event.
    async fn conclude(
        &mut self,
        pending: Pending,
        status: SignatureStatus,
        reason: Option<String>,
        verified_by: Option<String>,
    ) {
        let Job {
            request_id, key, ..
        } = pending.job;
        self.results.finish(
            &request_id,
            State::Done {
                status,
                reason: reason.clone(),
                verified_by: verified_by.clone(),
            },
        );
        let outcome = SignatureOutcome {
            id: request_id,
            key,
            status,
            reason,
            verified_by,
            attempts: pending.attempts,
        };
        if self
            .events
            .publish(Event::SignatureOutcome(outcome))
            .await
            .is_err()
        {
            tracing::error!("event path closed before the verification dispatcher");
        }
    }
}
