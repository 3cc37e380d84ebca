//! Where each publisher's numbering stands (design §6), as a state machine: it takes what
//! arrives — live events, heartbeats, replay answers, the passing of time — and answers with
//! actions: lines to write, replay to ask for. It owns no socket, does no I/O and reads no
//! clock (time is a parameter), so every path is tested without a runtime.
//!
//! The promise it keeps: every event of a publisher is written exactly once, in order per
//! (publisher, epoch), or a gap line names exactly the numbers that are missing and why.
//!
//! With a topic filter (`TOPICS`) the publisher's numbers still count every event, so the
//! live stream jumps over the events of other topics. A jump is then not a loss but a hole
//! like any other, filled by replay: the request carries the same prefixes, the answer holds
//! only matching events, and its end marker covers the numbers it skipped, which are
//! accounted for without a line. So a filtered-out number never becomes a gap line, and a
//! matching event that was lost still does (it has left the window: `expired`; replay does not
//! answer: `replay unanswered`). Without replay, nothing can tell a filtered-out number from a
//! lost one: jumps are passed over silently, and losses go unnoticed.
//!
//! This file finds a publisher's [`Stream`] (creating it at first sight, replacing it when a
//! new epoch begins); `stream.rs` decides what each arrival means for it.

mod catch_up;
mod stream;
#[cfg(test)]
mod tests;

use crate::config::Start;
use crate::log_line::Entry;
use std::collections::{HashMap, hash_map};
use std::time::{Duration, Instant};
use stream::{Serves, Stream};
use wire::{Envelope, Event, Heartbeat, Replayed};

/// How the state machine behaves; fixed for the process.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Where a publisher never followed before is started.
    pub start: Start,
    /// Whether replay endpoints are configured at all.
    pub replay: bool,
    /// How long to hold a new publisher's events for its first heartbeat (which says whether it
    /// serves replay) before following it as one that does not.
    pub heartbeat_wait: Duration,
    /// How long a replay request may go unanswered before it is sent again.
    pub replay_timeout: Duration,
    /// How long replay may make no progress before the missing range is written as a gap.
    pub give_up: Duration,
    /// Live events held per publisher while the numbers before them are fetched; past it,
    /// arriving ones are dropped (counted): replay fetches them again.
    pub max_held: usize,
    /// Whether only some topics are followed (`TOPICS`): then a jump in the numbers is
    /// expected, and is filled by replay rather than taken for a loss.
    pub filtered: bool,
}

/// What the writer is to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Append this line to the log.
    Write(Entry),
    /// Ask the publisher's replay endpoint for what follows `after`.
    Ask(Ask),
}

/// "Send me the events of `publisher`'s `epoch` after `after`", for replay endpoint `endpoint`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ask {
    /// Index of the endpoint pair the publisher's events arrive on.
    pub endpoint: usize,
    /// The publisher.
    pub publisher: String,
    /// The epoch asked about.
    pub epoch: u64,
    /// The last number the log has.
    pub after: u64,
}

/// What the log already held of a publisher when this process started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resume {
    /// The epoch the log follows; `None` when only the log was left to tell (text lines carry
    /// no epoch).
    pub epoch: Option<u64>,
    /// The last number accounted for.
    pub last: u64,
    /// Publish time of the last event line (ms), to tell an unknown epoch from a later one.
    pub last_event_ms: Option<u64>,
}

/// The first number heard from a publisher: where "start where it is" starts.
#[derive(Debug, Clone, Copy)]
enum Heard {
    Event(u64),
    Beat(u64),
}

impl Heard {
    /// The number before which nothing is ours when we start where the publisher is.
    fn before(self) -> u64 {
        match self {
            Heard::Event(seq) => seq.saturating_sub(1),
            Heard::Beat(last_seq) => last_seq,
        }
    }
}

impl Resume {
    /// Whether epoch `epoch`, first heard at `heard`, is the one the log's tail belongs to when
    /// the log could not say. Epochs are start times in ms (wire `Origin`): an epoch that began
    /// after the last logged event was published is a later run; and a run the log follows
    /// cannot be behind the log's last number.
    fn continues(&self, epoch: u64, heard: Heard) -> bool {
        let numbering = match heard {
            Heard::Event(seq) => seq > self.last,
            Heard::Beat(last_seq) => last_seq >= self.last,
        };
        numbering && self.last_event_ms.is_none_or(|at| epoch <= at)
    }
}

/// Every publisher's stream.
#[derive(Debug)]
pub struct Streams {
    settings: Settings,
    /// By publisher id, looked up twice per arrival: foldhash, seeded anew per process, is
    /// several times quicker than SipHash on ids this short and still not predictable from
    /// outside.
    streams: HashMap<String, Stream, foldhash::fast::RandomState>,
    resume: HashMap<String, Resume>,
}

impl Streams {
    /// Starts with what the log holds (`resume`, per publisher).
    pub fn new(settings: Settings, resume: HashMap<String, Resume>) -> Self {
        Streams {
            settings,
            streams: HashMap::default(),
            resume,
        }
    }

    /// A live event arrived on endpoint pair `endpoint`.
    pub fn event(
        &mut self,
        endpoint: usize,
        event: Envelope<Event>,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        let heard = Heard::Event(event.seq);
        let settings = self.settings;
        if let Some(stream) = self.stream(endpoint, &event.sender, event.epoch, heard, now, out) {
            stream.live(event, &settings, now, out);
        }
    }

    /// A heartbeat of `sender`'s `epoch` arrived on endpoint pair `endpoint`.
    pub fn heartbeat(
        &mut self,
        endpoint: usize,
        sender: &str,
        epoch: u64,
        beat: Heartbeat,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        let heard = Heard::Beat(beat.last_seq);
        let settings = self.settings;
        if let Some(stream) = self.stream(endpoint, sender, epoch, heard, now, out) {
            stream.heartbeat(beat, &settings, now, out);
        }
    }

    /// A message of a replay answer arrived.
    pub fn replayed(&mut self, answer: Envelope<Replayed>, now: Instant, out: &mut Vec<Action>) {
        let Some(stream) = self.streams.get_mut(&answer.sender) else {
            return; // never asked: nothing to match it to
        };
        let (header, body) = answer.into_parts();
        match body {
            Replayed::Event(event) => stream.replayed(header.with(event), now, out),
            Replayed::End(end)
                if end.asked_epoch == stream.epoch && end.epoch > end.asked_epoch =>
            {
                // The epoch asked about is over: nothing more of it can be had.
                let endpoint = stream.endpoint;
                let settings = self.settings;
                let stream = self.restart(endpoint, &header.sender, end.epoch, now, out);
                stream.serves = Serves::Yes; // it just answered a replay request
                stream.heard_of(end.newest);
                stream.advance(&settings, now, out);
            }
            Replayed::End(end) => stream.end(end, now, out),
        }
    }

    /// Time passed: waits for a heartbeat end, unanswered requests are sent again or given up.
    pub fn tick(&mut self, now: Instant, out: &mut Vec<Action>) {
        for stream in self.streams.values_mut() {
            stream.tick(&self.settings, now, out);
        }
    }

    /// The publishers whose log is being caught up, with how many events it is behind each,
    /// by publisher id.
    pub fn catching_up(&self, now: Instant) -> Vec<(String, u64)> {
        let mut behind: Vec<(String, u64)> = self
            .streams
            .iter()
            .filter_map(|(publisher, stream)| Some((publisher.clone(), stream.catching_up(now)?)))
            .collect();
        behind.sort();
        behind
    }

    /// The ask for `publisher` could not be handed to its replay client (its queue was full):
    /// it is sent again on the next tick.
    pub fn unsent(&mut self, publisher: &str, now: Instant) {
        if let Some(stream) = self.streams.get_mut(publisher) {
            stream.unsent(now);
        }
    }

    /// The process stops: what is next in order is written (a new publisher still waited on
    /// for its first heartbeat starts where it was first heard), and no range is given up as
    /// a gap — the next run, resuming from the position file, fetches or declares the rest.
    pub fn finish(&mut self, out: &mut Vec<Action>) {
        for stream in self.streams.values_mut() {
            stream.finish(out);
        }
    }

    /// The stream `sender`'s `epoch` belongs to; `None` when that epoch is older than the one
    /// followed (or than the one the log holds), whose arrivals are dropped.
    fn stream(
        &mut self,
        endpoint: usize,
        sender: &str,
        epoch: u64,
        heard: Heard,
        now: Instant,
        out: &mut Vec<Action>,
    ) -> Option<&mut Stream> {
        match self.streams.get(sender).map(|s| s.epoch) {
            Some(known) if epoch < known => return None,
            Some(known) if epoch > known => {
                self.restart(endpoint, sender, epoch, now, out);
            }
            Some(_) => {}
            None => {
                let stream = self.first_sight(endpoint, sender, epoch, heard, now)?;
                self.streams.insert(sender.to_owned(), stream);
            }
        }
        let stream = self.streams.get_mut(sender)?;
        stream.endpoint = endpoint;
        Some(stream)
    }

    /// A publisher not followed yet in this process: resumed where the log left it, or new.
    fn first_sight(
        &mut self,
        endpoint: usize,
        sender: &str,
        epoch: u64,
        heard: Heard,
        now: Instant,
    ) -> Option<Stream> {
        let settings = &self.settings;
        let new = |last| Stream::new(sender, endpoint, epoch, last, settings, now);
        let Some(resume) = self.resume.get(sender).copied() else {
            tracing::info!(publisher = %sender, epoch, from = ?settings.start, "new publisher");
            return Some(match settings.start {
                Start::Earliest => {
                    Stream::joining(sender, endpoint, epoch, heard.before(), settings, now)
                }
                Start::Latest => new(heard.before()),
            });
        };
        let stream = match resume.epoch {
            Some(logged) if logged > epoch => return None,
            Some(logged) if logged == epoch => new(resume.last),
            None if resume.continues(epoch, heard) => new(resume.last),
            // A later run of a publisher the log follows: followed from its first event.
            _ => new(0),
        };
        tracing::info!(publisher = %sender, epoch, resumed_after = stream.last(), "publisher followed again");
        self.resume.remove(sender);
        Some(stream)
    }

    /// `sender` began epoch `epoch`: the old one is closed (its missing numbers written as a
    /// gap) and the new one is followed from its first event.
    fn restart(
        &mut self,
        endpoint: usize,
        sender: &str,
        epoch: u64,
        now: Instant,
        out: &mut Vec<Action>,
    ) -> &mut Stream {
        let settings = &self.settings;
        let fresh = Stream::new(sender, endpoint, epoch, 0, settings, now);
        match self.streams.entry(sender.to_owned()) {
            hash_map::Entry::Occupied(mut old) => {
                tracing::info!(publisher = %sender, from = old.get().epoch, to = epoch, "publisher restarted");
                old.get_mut().close(out);
                old.insert(fresh);
                old.into_mut()
            }
            hash_map::Entry::Vacant(place) => place.insert(fresh),
        }
    }
}
