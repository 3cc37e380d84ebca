//! What this publisher knows of its peers' signature requests, learnt from their events: a
//! bounded map from request id to status, each entry kept for `RESULTS_TTL` from when it was
//! first heard of, like the publisher's own results. Expiry is one purge task sleeping until the
//! next deadline (deadlines in a `BTreeSet`, as in mini-redis's `db.rs`), not a scan.
//!
//! It also remembers which publishers it heard from (events or heartbeats), by the tag their
//! request ids carry, so a lookup of an id of a followed publisher whose event has not arrived
//! yet can wait for it a moment instead of answering 404 at once.

use crate::request_id::Tag;
use crate::results::State;
use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;
use wire::{Broadcast, Envelope, Event, Origin, SignatureOutcome, SignatureRequested};

/// Longest key id, reason or verifier id taken from a peer's event. Real ones are far shorter;
/// the bound keeps `RESULTS_CAPACITY` entries small whatever a peer sends.
const MAX_FIELD_BYTES: usize = 1024;
/// Most peer publishers remembered: far more than run side by side, so only publishers that
/// come and go under new ids (containers restarted) ever reach it; then the longest silent one
/// is forgotten.
const MAX_PUBLISHERS: usize = 4096;

/// A peer's request as this publisher knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerStatus {
    /// The key id the signature is checked against.
    pub key: String,
    /// Pending, or how it ended.
    pub state: State,
}

/// Why a peer's message was not used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Refused {
    /// The request id is not one its sender made: no publisher speaks for another's requests.
    #[error("request id {id:?} is not one publisher {sender:?} makes")]
    NotItsId {
        /// The id in the event.
        id: String,
        /// The envelope's publisher id.
        sender: String,
    },
    /// A field is longer than any real one.
    #[error("field `{field}` is over {MAX_FIELD_BYTES} bytes")]
    Oversized {
        /// Which field.
        field: &'static str,
    },
}

/// What a peer's message did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// A signature event, now in the map.
    Event,
    /// A heartbeat or an event this map has no use for (`downcase`): the sender is known.
    Heard,
    /// This publisher's own message (a peer list naming the whole service names it too).
    Own,
}

/// The peers' request statuses.
pub struct PeerStatuses {
    inner: Mutex<Inner>,
    own: Origin,
    capacity: usize,
    ttl: Duration,
    /// Bumped on every request newly known, to wake lookups waiting for one.
    arrivals: watch::Sender<u64>,
    /// Wakes the purge task when the first deadline appears.
    purge: Notify,
}

#[derive(Default)]
struct Inner {
    requests: HashMap<String, Known>,
    /// `(deadline, id)` of every entry of `requests`, earliest first.
    expirations: BTreeSet<(Instant, String)>,
    /// Peer publishers by the tag of their ids, with when they were last heard from.
    publishers: HashMap<Tag, Instant>,
    /// Whether a twin (another process under this publisher's id) was warned about.
    twin_warned: bool,
}

struct Known {
    status: PeerStatus,
    deadline: Instant,
}

impl PeerStatuses {
    /// An empty map for the publisher `own`, of at most `capacity` requests kept `ttl` each.
    pub fn new(own: Origin, capacity: usize, ttl: Duration) -> Self {
        PeerStatuses {
            inner: Mutex::new(Inner::default()),
            own,
            capacity,
            ttl,
            arrivals: watch::Sender::new(0),
            purge: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes in one message from a peer's event socket.
    pub fn apply(&self, envelope: Envelope<Broadcast>) -> Result<Applied, Refused> {
        let (header, body) = envelope.into_parts();
        if header.sender == self.own.id {
            if header.epoch != self.own.epoch {
                self.warn_twin(header.epoch);
            }
            return Ok(Applied::Own);
        }
        let tag = Tag::of(&header.sender);
        let update = match body {
            Broadcast::Event(Event::SignatureRequested(SignatureRequested { id, key, .. })) => {
                Some((id, key, State::Pending))
            }
            Broadcast::Event(Event::SignatureOutcome(SignatureOutcome {
                id,
                key,
                status,
                reason,
                verified_by,
                ..
            })) => {
                bounded("reason", reason.as_deref())?;
                bounded("verified_by", verified_by.as_deref())?;
                let ended = State::Done {
                    status,
                    reason,
                    verified_by,
                };
                Some((id, key, ended))
            }
            Broadcast::Event(Event::Downcase(_)) | Broadcast::Heartbeat(_) => None,
        };
        let Some((id, key, state)) = update else {
            self.heard_from(tag);
            return Ok(Applied::Heard);
        };
        if Tag::in_id(&id) != Some(tag) {
            return Err(Refused::NotItsId {
                id,
                sender: header.sender,
            });
        }
        bounded("key", Some(&key))?;
        self.heard_from(tag);
        self.record(id, PeerStatus { key, state });
        Ok(Applied::Event)
    }

    /// Remembers that the publisher with `tag` is alive.
    fn heard_from(&self, tag: Tag) {
        let mut inner = self.lock();
        let now = Instant::now();
        if !inner.publishers.contains_key(&tag) {
            inner
                .publishers
                .retain(|_, heard| now.duration_since(*heard) < self.ttl);
            if inner.publishers.len() >= MAX_PUBLISHERS {
                let silent = inner.publishers.iter().min_by_key(|(_, at)| **at);
                if let Some(silent) = silent.map(|(tag, _)| *tag) {
                    inner.publishers.remove(&silent);
                }
            }
        }
        inner.publishers.insert(tag, now);
        metrics::gauge!("peer_publishers_known").set(inner.publishers.len() as f64);
    }

    /// Puts a request's status in the map: a new one at the back, evicting the oldest when
    /// full; a known one keeps its deadline and is only ever moved from pending to ended.
    fn record(&self, id: String, status: PeerStatus) {
        let mut inner = self.lock();
        if let Some(known) = inner.requests.get_mut(&id) {
            if known.status.state == State::Pending {
                known.status = status;
            }
            return;
        }
        if inner.requests.len() >= self.capacity {
            if let Some((_, oldest)) = inner.expirations.pop_first() {
                inner.requests.remove(&oldest);
            }
        }
        let now = Instant::now();
        let deadline = now.checked_add(self.ttl).unwrap_or(now);
        let first = inner.expirations.is_empty();
        inner.expirations.insert((deadline, id.clone()));
        inner.requests.insert(id, Known { status, deadline });
        metrics::gauge!("peer_requests_known").set(inner.requests.len() as f64);
        drop(inner);
        // Every deadline is `ttl` after its arrival, so a new one is the earliest only when it
        // is the only one.
        if first {
            self.purge.notify_one();
        }
        self.arrivals.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// The peer request `id`, unless unknown or expired.
    pub fn get(&self, id: &str) -> Option<PeerStatus> {
        let inner = self.lock();
        let known = inner.requests.get(id)?;
        (known.deadline > Instant::now()).then(|| known.status.clone())
    }

    /// The peer request `id`. When it is not known yet but names a publisher heard from, waits
    /// up to `limit` for its event (it may be on its way); `None` when it is unknown still, or
    /// at once for an id of no followed publisher.
    pub async fn find(&self, id: &str, limit: Duration) -> Option<PeerStatus> {
        let tag = Tag::in_id(id)?;
        // Subscribed before looking, so an arrival between the look and the wait is seen.
        let mut arrivals = self.arrivals.subscribe();
        if let Some(status) = self.get(id) {
            return Some(status);
        }
        if !self.follows(tag) {
            return None;
        }
        let waited = tokio::time::timeout(limit, async {
            loop {
                if arrivals.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
                if let Some(status) = self.get(id) {
                    return status;
                }
            }
        })
        .await;
        waited.ok()
    }

    /// Whether `tag` is a peer's (not this publisher's) heard from within the TTL.
    fn follows(&self, tag: Tag) -> bool {
        let inner = self.lock();
        inner
            .publishers
            .get(&tag)
            .is_some_and(|heard| heard.elapsed() < self.ttl)
    }

    /// Removes expired entries as their deadlines pass, until `stop` is cancelled.
    pub async fn purge_expired(&self, stop: CancellationToken) {
        loop {
            let next = self.purge_now();
            let woken = self.purge.notified();
            tokio::select! {
                () = stop.cancelled() => return,
                () = woken => {}
                () = async {
                    match next {
                        Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
                        None => std::future::pending().await,
                    }
                } => {}
            }
        }
    }

    /// Removes what has expired; the next deadline, if any.
    fn purge_now(&self) -> Option<Instant> {
        let mut inner = self.lock();
        let now = Instant::now();
        while let Some((deadline, _)) = inner.expirations.first() {
            if *deadline > now {
                break;
            }
            if let Some((_, id)) = inner.expirations.pop_first() {
                inner.requests.remove(&id);
            }
        }
        metrics::gauge!("peer_requests_known").set(inner.requests.len() as f64);
        inner.expirations.first().map(|(deadline, _)| *deadline)
    }

    fn warn_twin(&self, epoch: u64) {
        let mut inner = self.lock();
        if !std::mem::replace(&mut inner.twin_warned, true) {
            tracing::warn!(
                id = %self.own.id,
                epoch,
                own_epoch = self.own.epoch,
                "another publisher runs under this publisher's id: its requests are not \
                 followed; give each publisher its own PUBLISHER_ID"
            );
        }
    }
}

fn bounded(field: &'static str, value: Option<&str>) -> Result<(), Refused> {
    match value {
        Some(value) if value.len() > MAX_FIELD_BYTES => Err(Refused::Oversized { field }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wire::{Downcase, Heartbeat, SignatureStatus};

    const TTL: Duration = Duration::from_secs(60);

    fn own() -> Origin {
        Origin {
            id: "pub-a".into(),
            epoch: 1,
        }
    }

    fn from(sender: &str, body: Broadcast) -> Envelope<Broadcast> {
        Origin {
            id: sender.into(),
            epoch: 7,
        }
        .envelope(1, body)
    }

    fn requested(id: &str) -> Broadcast {
        Broadcast::Event(Event::SignatureRequested(SignatureRequested {
            id: id.into(),
            key: "alice".into(),
            text_sha256: String::new(),
            text_len: 0,
        }))
    }

    fn ended(id: &str, status: SignatureStatus) -> Broadcast {
        Broadcast::Event(Event::SignatureOutcome(SignatureOutcome {
            id: id.into(),
            key: "alice".into(),
            status,
            reason: None,
            verified_by: Some("v1".into()),
            attempts: 1,
        }))
    }

    fn valid() -> State {
        State::Done {
            status: SignatureStatus::Valid,
            reason: None,
            verified_by: Some("v1".into()),
        }
    }

    #[test]
    fn a_peer_request_is_pending_then_ended_and_never_pending_again() {
        let statuses = PeerStatuses::new(own(), 10, TTL);
        let id = Tag::of("pub-b").new_id();

        assert_eq!(
            statuses.apply(from("pub-b", requested(&id))),
            Ok(Applied::Event)
        );
        assert_eq!(statuses.get(&id).map(|s| s.state), Some(State::Pending));
        statuses
            .apply(from("pub-b", ended(&id, SignatureStatus::Valid)))
            .expect("applied");
        statuses
            .apply(from("pub-b", requested(&id)))
            .expect("applied");

        let status = statuses.get(&id).expect("known");
        assert_eq!((status.key.as_str(), status.state), ("alice", valid()));
    }

    #[test]
    fn own_events_are_ignored_and_ids_of_another_publisher_refused() {
        let statuses = PeerStatuses::new(own(), 10, TTL);
        let own_id = Tag::of("pub-a").new_id();
        let c_id = Tag::of("pub-c").new_id();

        assert_eq!(
            statuses.apply(from("pub-a", requested(&own_id))),
            Ok(Applied::Own)
        );
        let refused = statuses.apply(from("pub-b", requested(&c_id)));
        let garbage = statuses.apply(from("pub-b", requested("../../etc/passwd")));

        assert!(
            matches!(refused, Err(Refused::NotItsId { .. })),
            "{refused:?}"
        );
        assert!(
            matches!(garbage, Err(Refused::NotItsId { .. })),
            "{garbage:?}"
        );
        assert!(statuses.get(&own_id).is_none());
        assert!(statuses.get(&c_id).is_none());
    }

    #[test]
    fn oversized_fields_are_refused() {
        let statuses = PeerStatuses::new(own(), 10, TTL);
        let id = Tag::of("pub-b").new_id();
        let Broadcast::Event(Event::SignatureOutcome(mut outcome)) =
            ended(&id, SignatureStatus::Invalid)
        else {
            unreachable!("an outcome")
        };
        outcome.reason = Some("x".repeat(MAX_FIELD_BYTES + 1));

        let refused = statuses.apply(from(
            "pub-b",
            Broadcast::Event(Event::SignatureOutcome(outcome)),
        ));

        assert_eq!(refused, Err(Refused::Oversized { field: "reason" }));
        assert!(statuses.get(&id).is_none());
    }

    #[test]
    fn when_full_the_oldest_request_makes_room() {
        let statuses = PeerStatuses::new(own(), 2, TTL);
        let tag = Tag::of("pub-b");
        let ids: Vec<String> = (0..3).map(|_| tag.new_id()).collect();

        for id in &ids {
            statuses
                .apply(from("pub-b", requested(id)))
                .expect("applied");
        }

        assert!(statuses.get(&ids[0]).is_none());
        assert!(statuses.get(&ids[1]).is_some());
        assert!(statuses.get(&ids[2]).is_some());
    }

    #[tokio::test]
    async fn entries_expire_and_the_purge_task_removes_them() {
        let statuses = std::sync::Arc::new(PeerStatuses::new(own(), 10, Duration::from_millis(50)));
        let stop = CancellationToken::new();
        let purging = tokio::spawn({
            let (statuses, stop) = (statuses.clone(), stop.clone());
            async move { statuses.purge_expired(stop).await }
        });
        let id = Tag::of("pub-b").new_id();
        statuses
            .apply(from("pub-b", requested(&id)))
            .expect("applied");

        let purged = tokio::time::timeout(Duration::from_secs(5), async {
            while !statuses.lock().requests.is_empty() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;

        assert!(purged.is_ok(), "the entry was purged");
        assert!(statuses.lock().expirations.is_empty());
        stop.cancel();
        purging.await.expect("the purge task ends");
    }

    #[tokio::test]
    async fn a_lookup_waits_only_for_ids_of_publishers_heard_from() {
        let statuses = std::sync::Arc::new(PeerStatuses::new(own(), 10, TTL));
        let wait = Duration::from_secs(10);
        let stranger = Tag::of("pub-z").new_id();
        let own_id = Tag::of("pub-a").new_id();

        // Not heard from: answered at once (a 10 s wait would time the test out).
        let quick = tokio::time::timeout(Duration::from_secs(5), async {
            (
                statuses.find(&stranger, wait).await,
                statuses.find(&own_id, wait).await,
                statuses.find("garbage", wait).await,
            )
        })
        .await;
        assert_eq!(quick, Ok((None, None, None)));

        // Heard from: the lookup waits, and the event arriving meanwhile answers it.
        let beat = Broadcast::Heartbeat(Heartbeat {
            last_seq: 0,
            replay: true,
        });
        assert_eq!(statuses.apply(from("pub-b", beat)), Ok(Applied::Heard));
        let id = Tag::of("pub-b").new_id();
        let waiting = tokio::spawn({
            let (statuses, id) = (statuses.clone(), id.clone());
            async move { statuses.find(&id, wait).await }
        });
        while statuses.arrivals.receiver_count() == 0 {
            tokio::task::yield_now().await;
        }
        statuses
            .apply(from("pub-b", requested(&id)))
            .expect("applied");

        let found = waiting.await.expect("the lookup ends");
        assert_eq!(found.map(|s| s.state), Some(State::Pending));
    }

    #[test]
    fn a_downcase_event_makes_its_sender_known_and_nothing_else() {
        let statuses = PeerStatuses::new(own(), 10, TTL);
        let body = Broadcast::Event(Event::Downcase(Downcase {
            param: "A".into(),
            result: "a".into(),
        }));

        assert_eq!(statuses.apply(from("pub-b", body)), Ok(Applied::Heard));
        assert!(statuses.follows(Tag::of("pub-b")));
        assert!(statuses.lock().requests.is_empty());
    }
}
