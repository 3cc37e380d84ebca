//! The dispatcher's decisions, as a plain state machine: what to do when a job comes in, a
//! verdict arrives or a deadline passes. It owns the tasks in flight — one map keyed by task
//! id, each entry holding its request's record — and their deadlines in one ordered set, but no
//! socket, no runtime and no clock: every method takes `now` and returns what to do, a
//! [`Decision`] to send a task or to conclude a request, which the driver carries out.

use crate::results::Request;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wire::{Envelope, Origin, SignatureStatus, Verdict, VerifyTask};

/// A signature to check for a request.
#[derive(Debug)]
pub struct Job {
    /// The API request it belongs to, ended by the dispatcher.
    pub request: Arc<Request>,
    /// SHA-256 of the signed document.
    pub sha256: Vec<u8>,
    /// The signature.
    pub signature: Vec<u8>,
}

/// What the dispatcher decided.
#[derive(Debug)]
pub enum Decision {
    /// Send (or send again) task `id`; [`Dispatcher::with_task`] gives its message.
    Send(u64),
    /// The request has ended: record the outcome and announce it.
    Conclude(Concluded),
}

/// A request that has ended, with how.
#[derive(Debug)]
pub struct Concluded {
    /// The request.
    pub request: Arc<Request>,
    /// `valid`, `invalid` or `error`.
    pub status: SignatureStatus,
    /// Why, for `invalid` and `error`.
    pub reason: Option<String>,
    /// The verifier that decided; `None` when none did.
    pub verified_by: Option<String>,
    /// How many times its task was sent.
    pub attempts: u32,
}

/// The metric handles the dispatcher records into for every task, looked up once: a lookup by
/// name (and label) hashes the key and takes the registry's lock each time.
struct TaskMetrics {
    sent: metrics::Counter,
    resent: metrics::Counter,
    seconds: metrics::Histogram,
    completed: plumbing::StatusCounters,
}

impl TaskMetrics {
    fn new() -> Self {
        TaskMetrics {
            sent: metrics::counter!("tasks_sent_total"),
            resent: metrics::counter!("tasks_resent_total"),
            seconds: metrics::histogram!("verification_seconds"),
            completed: plumbing::StatusCounters::new("tasks_completed_total"),
        }
    }
}

/// The tasks in flight and the rules for them.
pub struct Dispatcher {
    origin: Origin,
    metrics: TaskMetrics,
    task_timeout: Duration,
    task_attempts: u32,
    next_task: u64,
    tasks: HashMap<u64, InFlight>,
    /// `(deadline, task id)` of every task in flight, soonest first.
    deadlines: BTreeSet<(Instant, u64)>,
    duplicates: u64,
}

/// One task in flight. Its digest and signature are moved in from the job and into each
/// message it is sent as, never copied.
struct InFlight {
    request: Arc<Request>,
    sha256: Vec<u8>,
    signature: Vec<u8>,
    attempts: u32,
    deadline: Instant,
    first_sent: Instant,
}

impl Dispatcher {
    /// Tasks are sent as `origin`; each send has `task_timeout` to be answered, and a task is
    /// sent at most `task_attempts` times.
    pub fn new(origin: Origin, task_timeout: Duration, task_attempts: u32) -> Self {
        Dispatcher {
            origin,
            metrics: TaskMetrics::new(),
            task_timeout,
            task_attempts,
            // Task ids go on in the same epoch after a restart from the journal: starting each
            // run at its start time (ms) × 2^20 keeps a late verdict for a task of the run
            // before from matching a task of this one.
            next_task: wire::now_ms() << 20,
            tasks: HashMap::new(),
            deadlines: BTreeSet::new(),
            duplicates: 0,
        }
    }

    /// Takes a new job: it becomes a task, to be sent now.
    pub fn dispatch(&mut self, job: Job, now: Instant) -> Decision {
        self.next_task += 1;
        let task_id = self.next_task;
        let Job {
            request,
            sha256,
            signature,
        } = job;
        let task = InFlight {
            request,
            sha256,
            signature,
            attempts: 0,
            deadline: now,
            first_sent: now,
        };
        self.tasks.insert(task_id, task);
        self.send(task_id, now)
    }

    /// A verdict from `verifier`. `None` when it is for no task in flight (late, or a
    /// duplicate: counted and ignored).
    pub fn verdict(&mut self, verifier: &str, verdict: Verdict, now: Instant) -> Option<Decision> {
        let task_id = verdict.task_id;
        let Some(task) = self.tasks.get(&task_id) else {
            self.duplicates += 1;
            metrics::counter!("tasks_duplicate_results_total").increment(1);
            tracing::debug!(task_id, %verifier, "late or duplicate result ignored");
            return None;
        };
        // A verifier that could not check (it lacks the key, say) leaves the task to another.
        if verdict.status == SignatureStatus::Error && task.attempts < self.task_attempts {
            tracing::debug!(task_id, %verifier, reason = ?verdict.reason, "re-sending after an error verdict");
            return Some(self.send(task_id, now));
        }
        let task = self.remove(task_id)?;
        self.metrics
            .seconds
            .record(now.duration_since(task.first_sent).as_secs_f64());
        self.metrics.completed.of(verdict.status).increment(1);
        Some(Decision::Conclude(Concluded {
            request: task.request,
            status: verdict.status,
            reason: verdict.reason,
            verified_by: Some(verifier.to_owned()),
            attempts: task.attempts,
        }))
    }

    /// The decision for the first task whose deadline has passed by `now`: send it again, or
    /// give up once it has been sent `task_attempts` times. `None` when no deadline has passed;
    /// call it until then.
    pub fn expire(&mut self, now: Instant) -> Option<Decision> {
        let &(deadline, task_id) = self.deadlines.first()?;
        if deadline > now {
            return None;
        }
        let attempts = self.tasks.get(&task_id).map_or(0, |t| t.attempts);
        if attempts < self.task_attempts {
            return Some(self.send(task_id, now));
        }
        let reason = format!(
            "no verifier answered within {} in {attempts} attempts",
            humantime::format_duration(self.task_timeout)
        );
        self.fail(task_id, reason).map(Decision::Conclude)
    }

    /// Ends every task still in flight as `error` with `reason` (the publisher is stopping).
    pub fn give_up(&mut self, reason: &str) -> Vec<Concluded> {
        let ids: Vec<u64> = self.tasks.keys().copied().collect();
        ids.into_iter()
            .filter_map(|task_id| self.fail(task_id, reason.to_owned()))
            .collect()
    }

    /// The soonest deadline of a task in flight.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.first().map(|&(deadline, _)| deadline)
    }

    /// How many tasks are in flight.
    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    /// Whether no task is in flight.
    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// Verdicts ignored so far because their task was no longer in flight.
    pub fn duplicates(&self) -> u64 {
        self.duplicates
    }

    /// Builds the message for task `task_id`'s current attempt and hands it to `with`. The
    /// digest and signature are moved into the message and back, so a re-send copies nothing.
    pub fn with_task<T>(
        &mut self,
        task_id: u64,
        with: impl FnOnce(&Envelope<VerifyTask>) -> T,
    ) -> Option<T> {
        let task = self.tasks.get_mut(&task_id)?;
        let message = self.origin.envelope(
            task_id,
            VerifyTask {
                task_id,
                key: task.request.key().to_owned(),
                sha256: std::mem::take(&mut task.sha256),
                signature: std::mem::take(&mut task.signature),
                attempt: task.attempts,
            },
        );
        let result = with(&message);
        task.sha256 = message.body.sha256;
        task.signature = message.body.signature;
        Some(result)
    }

    /// Counts one more send of `task_id` and moves its deadline to `now` + the timeout.
    fn send(&mut self, task_id: u64, now: Instant) -> Decision {
        if let Some(task) = self.tasks.get_mut(&task_id) {
            task.attempts += 1;
            self.deadlines.remove(&(task.deadline, task_id));
            task.deadline = now + self.task_timeout;
            self.deadlines.insert((task.deadline, task_id));
            if task.attempts == 1 {
                self.metrics.sent.increment(1);
            } else {
                self.metrics.resent.increment(1);
            }
        }
        Decision::Send(task_id)
    }

    fn fail(&mut self, task_id: u64, reason: String) -> Option<Concluded> {
        let task = self.remove(task_id)?;
        metrics::counter!("tasks_failed_total").increment(1);
        tracing::warn!(task_id, request = %task.request.id(), reason, "signature request failed");
        Some(Concluded {
            request: task.request,
            status: SignatureStatus::Error,
            reason: Some(reason),
            verified_by: None,
            attempts: task.attempts,
        })
    }

    fn remove(&mut self, task_id: u64) -> Option<InFlight> {
        let task = self.tasks.remove(&task_id)?;
        self.deadlines.remove(&(task.deadline, task_id));
        Some(task)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::State;

    const TIMEOUT: Duration = Duration::from_secs(1);

    fn dispatcher(attempts: u32) -> Dispatcher {
        let origin = Origin {
            id: "pub-1".into(),
            epoch: 7,
        };
        Dispatcher::new(origin, TIMEOUT, attempts)
    }

    fn job(id: &str) -> Job {
        Job {
            request: Arc::new(Request::new(id, "alice".into())),
            sha256: wire::sha256(b"doc"),
            signature: vec![7; 256],
        }
    }

    fn verdict(task_id: u64, status: SignatureStatus, reason: Option<&str>) -> Verdict {
        Verdict {
            task_id,
            status,
            reason: reason.map(str::to_owned),
        }
    }

    fn sent(decision: Option<Decision>) -> u64 {
        match decision {
            Some(Decision::Send(task_id)) => task_id,
            other => panic!("expected a send, got {other:?}"),
        }
    }

    fn concluded(decision: Option<Decision>) -> Concluded {
        match decision {
            Some(Decision::Conclude(concluded)) => concluded,
            other => panic!("expected a conclusion, got {other:?}"),
        }
    }

    fn attempt(dispatcher: &mut Dispatcher, task_id: u64) -> u32 {
        dispatcher
            .with_task(task_id, |task| task.body.attempt)
            .expect("in flight")
    }

    #[test]
    fn a_job_is_sent_at_once_as_attempt_one_with_its_digest_and_key() {
        let mut d = dispatcher(4);
        let t0 = Instant::now();
        let task_id = sent(Some(d.dispatch(job("r1"), t0)));
        let task = d.with_task(task_id, Clone::clone).unwrap();
        assert_eq!(task.body.attempt, 1);
        assert_eq!(task.body.key, "alice");
        assert_eq!(task.body.sha256, wire::sha256(b"doc"));
        assert_eq!(task.body.signature, vec![7; 256]);
        assert_eq!((task.sender.as_str(), task.epoch), ("pub-1", 7));
        assert_eq!(d.next_deadline(), Some(t0 + TIMEOUT));
    }

    #[test]
    fn a_passed_deadline_sends_the_task_again_as_the_next_attempt() {
        let mut d = dispatcher(4);
        let t0 = Instant::now();
        let task_id = sent(Some(d.dispatch(job("r1"), t0)));
        assert!(d.expire(t0 + TIMEOUT - Duration::from_millis(1)).is_none());

        assert_eq!(sent(d.expire(t0 + TIMEOUT)), task_id);
        assert_eq!(attempt(&mut d, task_id), 2);
        assert_eq!(d.next_deadline(), Some(t0 + 2 * TIMEOUT));
        assert!(d.expire(t0 + TIMEOUT).is_none(), "one send per deadline");
        assert_eq!(
            attempt(&mut d, task_id),
            2,
            "building the message again sends nothing"
        );
    }

    #[test]
    fn after_the_last_attempt_the_request_ends_as_error_with_the_reason() {
        let mut d = dispatcher(3);
        let t0 = Instant::now();
        let task_id = sent(Some(d.dispatch(job("r1"), t0)));
        assert_eq!(sent(d.expire(t0 + TIMEOUT)), task_id);
        assert_eq!(sent(d.expire(t0 + 2 * TIMEOUT)), task_id);
        assert_eq!(attempt(&mut d, task_id), 3);

        let ended = concluded(d.expire(t0 + 3 * TIMEOUT));
        assert_eq!(ended.request.id(), "r1");
        assert_eq!(ended.status, SignatureStatus::Error);
        assert_eq!(
            ended.reason.as_deref(),
            Some("no verifier answered within 1s in 3 attempts")
        );
        assert_eq!((ended.verified_by, ended.attempts), (None, 3));
        assert!(d.is_empty());
        assert_eq!(d.next_deadline(), None);
    }

    #[test]
    fn a_verdict_concludes_its_request_once_and_a_late_duplicate_is_ignored_and_counted() {
        let mut d = dispatcher(4);
        let t0 = Instant::now();
        let task_id = sent(Some(d.dispatch(job("r1"), t0)));

        let ended = concluded(d.verdict("v1", verdict(task_id, SignatureStatus::Valid, None), t0));
        assert_eq!(ended.request.id(), "r1");
        assert_eq!(ended.status, SignatureStatus::Valid);
        assert_eq!(ended.verified_by.as_deref(), Some("v1"));
        assert_eq!(ended.attempts, 1);
        assert_eq!(
            ended.request.state(),
            State::Pending,
            "the driver records it"
        );
        assert!(d.is_empty());
        assert_eq!(d.next_deadline(), None, "its deadline went with it");

        let late = verdict(task_id, SignatureStatus::Invalid, Some("bad"));
        assert!(d.verdict("v2", late, t0 + TIMEOUT).is_none());
        assert!(
            d.verdict("v1", verdict(99, SignatureStatus::Valid, None), t0)
                .is_none()
        );
        assert_eq!(d.duplicates(), 2);
    }

    #[test]
    fn an_error_verdict_sends_the_task_to_another_verifier_while_attempts_remain() {
        let mut d = dispatcher(2);
        let t0 = Instant::now();
        let task_id = sent(Some(d.dispatch(job("r1"), t0)));
        let lacks_key = || {
            verdict(
                task_id,
                SignatureStatus::Error,
                Some("unknown key \"alice\""),
            )
        };

        let later = t0 + Duration::from_millis(300);
        assert_eq!(sent(d.verdict("v1", lacks_key(), later)), task_id);
        assert_eq!(attempt(&mut d, task_id), 2);
        assert_eq!(d.next_deadline(), Some(later + TIMEOUT), "a fresh deadline");

        let ended = concluded(d.verdict("v2", lacks_key(), later));
        assert_eq!(ended.status, SignatureStatus::Error);
        assert_eq!(ended.reason.as_deref(), Some("unknown key \"alice\""));
        assert_eq!(ended.verified_by.as_deref(), Some("v2"));
        assert_eq!(ended.attempts, 2);
    }

    #[test]
    fn deadlines_are_taken_soonest_first_and_give_up_ends_what_is_left() {
        let mut d = dispatcher(1);
        let t0 = Instant::now();
        let first = sent(Some(d.dispatch(job("r1"), t0)));
        let second = sent(Some(d.dispatch(job("r2"), t0 + Duration::from_millis(10))));
        let third = sent(Some(d.dispatch(job("r3"), t0 + Duration::from_millis(20))));
        assert_ne!(first, second);

        let ended = concluded(d.expire(t0 + TIMEOUT + Duration::from_millis(15)));
        assert_eq!(ended.request.id(), "r1");
        let ended = concluded(d.expire(t0 + TIMEOUT + Duration::from_millis(15)));
        assert_eq!(ended.request.id(), "r2");
        assert!(d.expire(t0 + TIMEOUT + Duration::from_millis(15)).is_none());

        let left = d.give_up("stopping");
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].request.id(), "r3");
        assert_eq!(left[0].reason.as_deref(), Some("stopping"));
        assert!(d.is_empty() && d.with_task(third, |_| ()).is_none());
    }
}
