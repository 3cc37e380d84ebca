//! Signature requests and their outcomes, kept for `GET /signatures/{id}` in a bounded store
//! with an expiry. A request's id is random, so only the client that made it can ask for it.

use std::borrow::Borrow;
use std::collections::{HashSet, VecDeque};
use std::hash::{Hash, Hasher};
use std::pin::pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use wire::SignatureStatus;

/// Where a request stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Sent to a verifier, no verdict yet.
    Pending,
    /// Ended.
    Done {
        /// `valid`, `invalid` or `error`.
        status: SignatureStatus,
        /// Why, for `invalid` and `error`.
        reason: Option<String>,
        /// The verifier that decided.
        verified_by: Option<String>,
    },
}

/// One signature request: its id, the key it is checked against, and where it stands. The
/// results store finds it by id for the API; the dispatcher's entry for its task holds the same
/// record and ends it, so each is stored once and nothing is looked up twice.
#[derive(Debug)]
pub struct Request {
    id: Box<str>,
    key: String,
    /// When it was made, for the store's expiry.
    made: Instant,
    /// Its verdict, set once; unset while pending. Read without a lock.
    verdict: OnceLock<State>,
    /// Wakes whoever waits for the verdict ([`Request::ended`]). Inline, unlike a watch
    /// channel, which allocates its shared state (and nine `Notify`s) for every request.
    ended: Notify,
}

impl Request {
    /// A pending request `id` for key `key`, kept by no store (the store makes its own with
    /// [`Results::insert`]): for the tests of what ends requests.
    #[cfg(test)]
    pub fn new(id: &str, key: String) -> Self {
        Self::made(id, key, Instant::now())
    }

    fn made(id: &str, key: String, made: Instant) -> Self {
        Request {
            id: Box::from(id),
            key,
            made,
            verdict: OnceLock::new(),
            ended: Notify::new(),
        }
    }

    /// The request's id, as the client has it.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The key id the signature is checked against.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Where the request stands now, owned: for tests ([`Request::state_now`] borrows it).
    #[cfg(test)]
    pub fn state(&self) -> State {
        self.state_now().clone()
    }

    /// Where the request stands now, borrowed: a verdict once set never changes.
    pub fn state_now(&self) -> &State {
        self.verdict.get().unwrap_or(&State::Pending)
    }

    /// Whether it still waits for a verdict.
    pub fn is_pending(&self) -> bool {
        self.verdict.get().is_none()
    }

    /// Resolves once the request has ended (at once if it has).
    pub async fn ended(&self) {
        let mut notified = pin!(self.ended.notified());
        // Registered before the check, so a verdict set after it still wakes this waiter.
        notified.as_mut().enable();
        if self.is_pending() {
            notified.await;
        }
    }

    /// Ends the request; returns false when it had already ended.
    pub fn finish(&self, outcome: State) -> bool {
        if outcome == State::Pending {
            // Nothing to record: it stays pending either way.
            return self.is_pending();
        }
        let first = self.verdict.set(outcome).is_ok();
        if first {
            self.ended.notify_waiters();
        }
        first
    }

    fn expired(&self, now: Instant, ttl: Duration) -> bool {
        now.saturating_duration_since(self.made) >= ttl
    }
}

/// The store is full of requests that are all still pending.
#[derive(Debug, thiserror::Error)]
#[error("too many signature requests are pending")]
pub struct Full;

/// Bounded map from request id to its record.
pub struct Results {
    inner: Mutex<Inner>,
    capacity: usize,
    ttl: Duration,
}

/// A request in the store's set, found by its id.
struct ById(Arc<Request>);

impl Borrow<str> for ById {
    fn borrow(&self) -> &str {
        &self.0.id
    }
}

impl Hash for ById {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // As its id hashes, which `Borrow<str>` requires.
        self.0.id.hash(state);
    }
}

impl PartialEq for ById {
    fn eq(&self, other: &Self) -> bool {
        self.0.id == other.0.id
    }
}

impl Eq for ById {}

#[derive(Default)]
struct Inner {
    /// Keyed by the request's own id. foldhash, seeded anew per map, hashes these 41-byte ids
    /// several times quicker than SipHash; the ids stored are random ones of our own making,
    /// so a client can choose only what it looks up, not what collides in the table.
    entries: HashSet<ById, foldhash::fast::RandomState>,
    /// The same requests in insertion order, for expiry and eviction: each knows when it was
    /// made and whether it has ended, so walking it looks nothing up.
    order: VecDeque<Arc<Request>>,
}

impl Inner {
    /// Drops `request` from the set, unless the set holds another request of the same id.
    fn forget(&mut self, request: &Arc<Request>) {
        if let Some(held) = self.entries.take(request.id()) {
            if !Arc::ptr_eq(&held.0, request) {
                self.entries.insert(held);
            }
        }
    }

    /// Whether the set holds `request` itself.
    fn holds(&self, request: &Arc<Request>) -> bool {
        self.entries
            .get(request.id())
            .is_some_and(|held| Arc::ptr_eq(&held.0, request))
    }
}

impl Results {
    /// A store of at most `capacity` records, each kept for `ttl` after it was made.
    pub fn new(capacity: usize, ttl: Duration) -> Self {
        Results {
            inner: Mutex::new(Inner::default()),
            capacity,
            ttl,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a pending request and returns it. Expired records go first; when still full, the
    /// oldest ended one makes room. A pending one is never dropped: then the store is [`Full`].
    pub fn insert(&self, id: &str, key: String) -> Result<Arc<Request>, Full> {
        let now = Instant::now();
        self.insert_made(id, key, now, now)
    }

    /// Adds a request read back from the journal, made `age` ago; `None` when it has expired
    /// by now or the store is full. Restored oldest first, they keep the store's order.
    pub fn restore(&self, id: &str, key: String, age: Duration) -> Option<Arc<Request>> {
        if age >= self.ttl {
            return None;
        }
        let now = Instant::now();
        let made = now.checked_sub(age).unwrap_or(now);
        self.insert_made(id, key, made, now).ok()
    }

    /// Adds a request made at `made`, expiring what has expired by `now`.
    fn insert_made(
        &self,
        id: &str,
        key: String,
        made: Instant,
        now: Instant,
    ) -> Result<Arc<Request>, Full> {
        // Made outside the lock: the allocations need not hold up other requests.
        let request = Arc::new(Request::made(id, key, made));
        let mut inner = self.lock();
        while let Some(oldest) = inner.order.front() {
            if !oldest.expired(now, self.ttl) {
                break;
            }
            if let Some(oldest) = inner.order.pop_front() {
                inner.forget(&oldest);
            }
        }
        if inner.entries.len() >= self.capacity {
            let ended = inner
                .order
                .iter()
                .position(|r| !r.is_pending() || !inner.holds(r));
            let evicted = ended.and_then(|at| inner.order.remove(at)).ok_or(Full)?;
            inner.forget(&evicted);
        }
        inner.order.push_back(request.clone());
        inner.entries.replace(ById(request.clone()));
        Ok(request)
    }

    /// The request `id`, unless unknown or expired.
    pub fn get(&self, id: &str) -> Option<Arc<Request>> {
        let inner = self.lock();
        let held = inner.entries.get(id)?;
        (!held.0.expired(Instant::now(), self.ttl)).then(|| held.0.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> State {
        State::Done {
            status: SignatureStatus::Valid,
            reason: None,
            verified_by: Some("v".into()),
        }
    }

    #[test]
    fn a_request_is_pending_until_finished_once() {
        let store = Results::new(10, Duration::from_secs(60));
        let request = store.insert("a", "k".into()).unwrap();
        assert_eq!(store.get("a").unwrap().state(), State::Pending);
        assert!(request.finish(valid()));
        assert!(
            !request.finish(State::Pending),
            "a second verdict is ignored"
        );
        assert_eq!(store.get("a").unwrap().state(), valid());
        assert_eq!(store.get("a").unwrap().key(), "k");
        assert!(store.get("b").is_none());
    }

    #[test]
    fn when_full_the_oldest_ended_record_makes_room_and_pending_ones_stay() {
        let store = Results::new(2, Duration::from_secs(60));
        store.insert("a", "k".into()).unwrap();
        let b = store.insert("b", "k".into()).unwrap();
        assert!(store.insert("c", "k".into()).is_err(), "both pending");
        b.finish(valid());
        store.insert("c", "k".into()).unwrap();
        assert!(store.get("a").is_some());
        assert!(store.get("b").is_none());
    }

    #[test]
    fn a_restored_request_keeps_its_age_and_an_expired_one_is_not_restored() {
        let store = Results::new(10, Duration::from_secs(60));
        assert!(
            store
                .restore("old", "k".into(), Duration::from_secs(61))
                .is_none()
        );
        let request = store
            .restore("a", "k".into(), Duration::from_secs(30))
            .unwrap();
        assert!(request.is_pending());
        assert!(store.get("a").is_some());
        assert!(store.get("old").is_none());
    }

    #[test]
    fn a_replaced_record_makes_room_without_taking_its_successor_along() {
        let store = Results::new(2, Duration::from_secs(60));
        let first = store.insert("a", "k".into()).unwrap();
        let second = store
            .restore("a", "k2".into(), Duration::from_secs(1))
            .unwrap();
        store.insert("b", "k".into()).unwrap();

        store.insert("c", "k".into()).unwrap();

        assert!(first.is_pending(), "the replaced one made room");
        assert!(Arc::ptr_eq(&store.get("a").unwrap(), &second));
        assert!(store.get("b").is_some() && store.get("c").is_some());
        assert_eq!(store.lock().order.len(), 3);
    }

    #[tokio::test]
    async fn a_waiter_wakes_when_its_request_ends_and_not_before() {
        let store = Results::new(10, Duration::from_secs(60));
        let request = store.insert("a", "k".into()).unwrap();
        let waiter = tokio::spawn({
            let request = request.clone();
            async move { request.ended().await }
        });
        let early = tokio::time::timeout(Duration::from_millis(50), request.ended()).await;
        assert!(early.is_err(), "still pending");

        assert!(request.finish(valid()));

        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("woken")
            .expect("ran");
        tokio::time::timeout(Duration::from_secs(5), request.ended())
            .await
            .expect("an ended request is waited for no more");
        assert_eq!(request.state_now(), &valid());
    }

    #[test]
    fn records_expire() {
        let store = Results::new(10, Duration::ZERO);
        store.insert("a", "k".into()).unwrap();
        assert!(store.get("a").is_none());
        store.insert("b", "k".into()).unwrap();
        assert_eq!(store.lock().entries.len(), 1, "the expired one was purged");
    }
}
