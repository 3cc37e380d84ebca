//! One publisher's epoch: the last number written, the highest known to exist, whether the
//! publisher serves replay, and the live events held while a hole before them is filled.
//!
//! Every number up to `last` is in the log, as an event or inside a gap line; nothing after
//! it is. A hole is `last < known`. Holes are filled from replay when the publisher serves
//! it, else written as gap lines at once; held events are written as soon as they are next.
//!
//! With a topic filter, replayed events past a hole are held until the chunk's end marker,
//! which alone tells what before them has left the window (a gap) and what was only of other
//! topics (accounted for without a line).

mod accounting;

use super::catch_up::{CatchUp, REPORT_EVERY};
use super::{Action, Ask, Settings};
use crate::log_line::GapReason;
use std::collections::BTreeMap;
use std::time::Instant;
use wire::{Envelope, Event, Heartbeat, ReplayEnd};

/// Whether a publisher serves replay, as its heartbeats say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Serves {
    /// No heartbeat yet; past `until`, it is followed as one that does not.
    Unknown {
        until: Instant,
    },
    Yes,
    No,
}

/// One publisher's stream in its current epoch.
#[derive(Debug)]
pub(super) struct Stream {
    sender: String,
    /// The endpoint pair its events last arrived on, which its replay is asked from.
    pub endpoint: usize,
    pub epoch: u64,
    /// Every number up to this is in the log. While `joining`, only where the publisher was
    /// when first heard: the start is decided once we know whether it serves replay.
    last: u64,
    joining: bool,
    /// The highest number known to exist: from events, heartbeats and replay ends.
    known: u64,
    pub serves: Serves,
    /// Live events past a hole, by number.
    held: BTreeMap<u64, Envelope<Event>>,
    catch_up: Option<CatchUp>,
    /// Whether only some topics are followed ([`Settings::filtered`]).
    filtered: bool,
}

impl Stream {
    /// A stream whose numbers up to `last` are accounted for.
    pub fn new(
        sender: &str,
        endpoint: usize,
        epoch: u64,
        last: u64,
        s: &Settings,
        now: Instant,
    ) -> Self {
        let serves = if s.replay {
            Serves::Unknown {
                until: now + s.heartbeat_wait,
            }
        } else {
            Serves::No
        };
        Stream {
            sender: sender.to_owned(),
            endpoint,
            epoch,
            last,
            joining: false,
            known: last,
            serves,
            held: BTreeMap::new(),
            catch_up: None,
            filtered: s.filtered,
        }
    }

    /// A publisher never followed, started from its earliest event if it serves replay, else
    /// where it is (just after `before`).
    pub fn joining(
        sender: &str,
        endpoint: usize,
        epoch: u64,
        before: u64,
        s: &Settings,
        now: Instant,
    ) -> Self {
        let mut stream = Stream::new(sender, endpoint, epoch, before, s, now);
        stream.joining = true;
        stream
    }

    /// The last number accounted for.
    pub fn last(&self) -> u64 {
        self.last
    }

    /// How many events the log is behind while it is being caught up — held for a first
    /// heartbeat, or filling a hole by replay; `None` while it follows the live stream. With
    /// a topic filter, replay fills every jump: only a catch-up older than a second counts.
    pub fn catching_up(&self, now: Instant) -> Option<u64> {
        let replaying = self
            .catch_up
            .as_ref()
            .is_some_and(|c| !self.filtered || c.age(now) >= REPORT_EVERY);
        (self.joining || replaying).then(|| self.known.saturating_sub(self.last))
    }

    /// Number `seq` exists (a replay end said how far the publisher is).
    pub fn heard_of(&mut self, seq: u64) {
        self.known = self.known.max(seq);
    }

    /// A live event.
    pub fn live(
        &mut self,
        event: Envelope<Event>,
        s: &Settings,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        self.known = self.known.max(event.seq);
        if self.joining || event.seq > self.last + 1 {
            self.hold(event, s.max_held);
        } else if event.seq == self.last + 1 {
            self.write(event, out);
        } else {
            tracing::debug!(publisher = %self.sender, seq = event.seq, "duplicate dropped");
            return;
        }
        self.advance(s, now, out);
    }

    /// A heartbeat: how far the publisher is, and whether it serves replay.
    pub fn heartbeat(
        &mut self,
        beat: Heartbeat,
        s: &Settings,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        self.known = self.known.max(beat.last_seq);
        let serves = if s.replay && beat.replay {
            Serves::Yes
        } else {
            Serves::No
        };
        if serves == Serves::No && self.catch_up.take().is_some() {
            tracing::warn!(publisher = %self.sender, "publisher no longer serves replay");
        }
        self.serves = serves;
        self.advance(s, now, out);
    }

    /// An event of a replay answer.
    pub fn replayed(&mut self, event: Envelope<Event>, now: Instant, out: &mut Vec<Action>) {
        if event.epoch != self.epoch || self.joining {
            return;
        }
        self.known = self.known.max(event.seq);
        if event.seq > self.last + 1 && self.filtered {
            // Filtered out or left the window: the chunk's end says which.
            self.held.insert(event.seq, event);
            if let Some(catch_up) = &mut self.catch_up {
                catch_up.replayed(now);
            }
            return;
        }
        if event.seq > self.last + 1 {
            // A chunk starts where the window does: what lies before it has left the window.
            self.skip_to(event.seq - 1, GapReason::Expired, out);
        }
        if event.seq != self.last + 1 {
            return; // written already, live or from an earlier answer
        }
        self.write(event, out);
        metrics::counter!("events_replayed_total").increment(1);
        if let Some(catch_up) = &mut self.catch_up {
            catch_up.replayed(now);
        }
        self.drain(out);
    }

    /// The end of a replay chunk of this epoch: what the window holds, where the chunk ended.
    pub fn end(&mut self, end: ReplayEnd, now: Instant, out: &mut Vec<Action>) {
        if end.asked_epoch != self.epoch || end.epoch != self.epoch {
            return; // about an epoch we are past
        }
        self.known = self.known.max(end.newest);
        let Some(asked) = self.catch_up.as_ref().map(|c| c.after) else {
            return;
        };
        if end.asked_after != asked {
            return; // the end of an earlier request's answer, whose events were taken
        }
        let window_from = if end.oldest == 0 {
            end.newest.saturating_add(1)
        } else {
            end.oldest
        };
        if window_from > self.last + 1 {
            self.skip_to(window_from - 1, GapReason::Expired, out);
        }
        if end.last > self.last && self.filtered {
            // Of other topics (or undecodable on the way, which the rejects count).
            self.pass_to(end.last, out);
        } else if end.last > self.last {
            // Covered by the chunk yet never read (undecodable on the way): asking again
            // would only bring the same.
            self.skip_to(end.last, GapReason::NotReceived, out);
        }
        self.drain(out);
        if !self.behind() {
            self.caught_up(now);
        } else if self.last > asked {
            if let Some(catch_up) = &mut self.catch_up {
                catch_up.moved(now);
            }
            self.ask(now, out);
        } else if let Some(catch_up) = &mut self.catch_up {
            catch_up.no_progress(now);
        }
    }

    /// Ends the wait for a first heartbeat, sends requests again, gives up on them.
    pub fn tick(&mut self, s: &Settings, now: Instant, out: &mut Vec<Action>) {
        if matches!(self.serves, Serves::Unknown { until } if now >= until) {
            tracing::info!(publisher = %self.sender, "no heartbeat yet: followed without replay");
            self.serves = Serves::No;
            self.advance(s, now, out);
        }
        if let Some(catch_up) = &mut self.catch_up {
            if catch_up.stalled(now, s.give_up) {
                self.give_up(out);
            } else {
                catch_up.report(now, &self.sender, self.last, self.known);
                if catch_up.due(now) {
                    self.ask(now, out);
                }
            }
        }
        let lag = self.known.saturating_sub(self.last);
        metrics::gauge!("lag_events", "publisher" => self.sender.clone()).set(lag as f64);
    }

    /// The ask could not be handed over; it goes again on the next tick.
    pub fn unsent(&mut self, now: Instant) {
        if let Some(catch_up) = &mut self.catch_up {
            catch_up.unsent(now);
        }
    }

    /// Writes what can be written and starts filling a hole, or writes it as a gap.
    pub fn advance(&mut self, s: &Settings, now: Instant, out: &mut Vec<Action>) {
        if self.joining {
            if matches!(self.serves, Serves::Unknown { .. }) {
                return; // held until we know whether it serves replay
            }
            self.decide_start(self.serves);
        }
        self.drain(out);
        if self.catch_up.is_some() || !self.behind() {
            return;
        }
        match self.serves {
            Serves::Unknown { .. } => {}
            Serves::Yes if self.filtered => {
                // A jump over other topics' events, most likely: not counted as a gap.
                tracing::debug!(publisher = %self.sender, after = self.last, known = self.known, "filling a jump by replay");
                self.catch_up = Some(CatchUp::new(self.last, now, s.replay_timeout));
                self.ask(now, out);
            }
            Serves::Yes => {
                metrics::counter!("gaps_found_total").increment(1);
                tracing::info!(publisher = %self.sender, after = self.last, known = self.known, "catching up by replay");
                self.catch_up = Some(CatchUp::new(self.last, now, s.replay_timeout));
                self.ask(now, out);
            }
            // Nothing can tell other topics' events from lost ones.
            Serves::No if self.filtered => self.pass_to(self.known, out),
            Serves::No => {
                metrics::counter!("gaps_found_total").increment(1);
                self.skip_to(self.known, GapReason::NotReceived, out);
            }
        }
    }

    /// A joining stream starts at the publisher's first event when it can be replayed, else at
    /// its first event heard.
    fn decide_start(&mut self, serves: Serves) {
        if !std::mem::take(&mut self.joining) {
            return;
        }
        if serves == Serves::Yes {
            self.last = 0;
        } else if let Some(&first) = self.held.keys().next() {
            self.last = self.last.min(first - 1);
        }
    }

    fn behind(&self) -> bool {
        self.known > self.last
    }

    fn ask(&mut self, now: Instant, out: &mut Vec<Action>) {
        let Some(catch_up) = &mut self.catch_up else {
            return;
        };
        catch_up.asked(self.last, now);
        out.push(Action::Ask(Ask {
            endpoint: self.endpoint,
            publisher: self.sender.clone(),
            epoch: self.epoch,
            after: self.last,
        }));
    }

    fn caught_up(&mut self, now: Instant) {
        if let Some(catch_up) = self.catch_up.take() {
            let routine = self.filtered && !catch_up.lost && catch_up.age(now) < REPORT_EVERY;
            if !routine {
                catch_up.done(now, &self.sender, self.last);
            }
            if !catch_up.lost && !self.filtered {
                metrics::counter!("gaps_filled_total").increment(1);
            }
        }
    }

    fn give_up(&mut self, out: &mut Vec<Action>) {
        tracing::warn!(publisher = %self.sender, after = self.last, known = self.known, "replay unanswered; the rest is written as a gap");
        self.catch_up = None;
        self.skip_to(self.known, GapReason::ReplayUnanswered, out);
    }
}
