//! How a stream accounts for its numbers in the log: held events are written as soon as they
//! are next, a range that cannot be had is written as one gap line with its reason, and what
//! is left when an epoch or the process ends is settled. With a topic filter, the numbers of
//! other topics' events are passed over without a line.

use super::{Serves, Stream};
use crate::log_line::{Entry, GapReason};
use crate::streams::Action;
use wire::{Envelope, Event};

impl Stream {
    /// The epoch is over: what it still lacks is written as one gap (held events kept).
    pub fn close(&mut self, out: &mut Vec<Action>) {
        self.decide_start(Serves::No);
        self.catch_up = None;
        if self.behind() {
            self.skip_to(self.known, GapReason::PublisherRestarted, out);
        }
    }

    /// The process stops: held events that are next are written, nothing else.
    pub fn finish(&mut self, out: &mut Vec<Action>) {
        self.decide_start(Serves::No);
        self.drain(out);
    }

    /// Keeps a live event that is not next yet; past `max_held`, a new one is dropped.
    pub(super) fn hold(&mut self, event: Envelope<Event>, max_held: usize) {
        if self.held.len() >= max_held && !self.held.contains_key(&event.seq) {
            // Replay brings it again; if it cannot, the number is written as a gap.
            metrics::counter!("events_held_dropped_total").increment(1);
            return;
        }
        self.held.insert(event.seq, event);
    }

    /// Writes held events while they are next in order, and forgets those already written.
    pub(super) fn drain(&mut self, out: &mut Vec<Action>) {
        while let Some(entry) = self.held.first_entry() {
            let seq = *entry.key();
            if seq > self.last + 1 {
                break;
            }
            let event = entry.remove();
            if seq == self.last + 1 {
                self.write(event, out);
            }
        }
    }

    /// Accounts for every number up to `target`: held events are written, the ranges between
    /// them as gap lines with `reason`.
    pub(super) fn skip_to(&mut self, target: u64, reason: GapReason, out: &mut Vec<Action>) {
        self.drain(out);
        while self.last < target {
            let next_held = self.held.keys().next().map_or(u64::MAX, |&seq| seq - 1);
            self.gap(self.last + 1, next_held.min(target), reason, out);
            self.drain(out);
        }
    }

    /// With a topic filter: accounts for every number up to `target` that is not held as an
    /// event of another topic, without a line; held events among them are written.
    pub(super) fn pass_to(&mut self, target: u64, out: &mut Vec<Action>) {
        self.drain(out);
        while self.last < target {
            let next_held = self.held.keys().next().map_or(u64::MAX, |&seq| seq - 1);
            self.last = next_held.min(target);
            self.drain(out);
        }
    }

    /// Writes `first..=last` as one gap line.
    fn gap(&mut self, first: u64, last: u64, reason: GapReason, out: &mut Vec<Action>) {
        let missing = last - first + 1;
        tracing::warn!(publisher = %self.sender, first, last, reason = reason.as_str(), "events missing; gap written");
        metrics::counter!("events_lost_total", "reason" => reason.as_str()).increment(missing);
        if let Some(catch_up) = &mut self.catch_up {
            catch_up.lost = true;
        }
        self.last = last;
        out.push(Action::Write(Entry::Gap {
            sender: self.sender.clone(),
            epoch: self.epoch,
            first,
            last,
            ts_ms: wire::now_ms(),
            reason,
        }));
    }

    /// Writes an event that is next in order.
    pub(super) fn write(&mut self, event: Envelope<Event>, out: &mut Vec<Action>) {
        self.last = event.seq;
        out.push(Action::Write(Entry::Event(event)));
    }
}
