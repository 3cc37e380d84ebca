//! The replay window: the most recent events as they were sent on the wire, bounded by count
//! and by bytes, oldest dropped first. The socket task appends every event it publishes; the
//! replay server copies chunks out. Sequence numbers in the window are contiguous, so finding
//! where an answer starts is arithmetic, not a search.
//!
//! The frames of held events are copied into large shared blocks rather than kept as one heap
//! object each: a window of a million small, long-lived allocations interleaved with each
//! request's short-lived ones made the allocator the publisher's largest cost (a third more CPU
//! per request, `bench/downcase.py`). A block is freed when its last event has left.

use bytes::{Bytes, BytesMut};
use std::collections::VecDeque;
use zeromq::ZmqMessage;

/// What one held event costs beyond its frames: its entry in the window.
const ENTRY_OVERHEAD: usize = std::mem::size_of::<Held>();
/// Size of the blocks held events are copied into.
const BLOCK: usize = 1 << 20;
/// Most frames an event has (topic, envelope, tag).
const MAX_FRAMES: usize = 3;

/// How large the window may grow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// Most events held.
    pub events: usize,
    /// Most bytes held, counting each event's frames and its bookkeeping.
    pub bytes: usize,
}

/// One published event, ready to be sent again: its frames, end to end, in a shared block.
#[derive(Debug, Clone)]
struct Held {
    topic: &'static str,
    frames: Bytes,
    lengths: [u32; MAX_FRAMES],
}

impl Held {
    fn size(&self) -> usize {
        self.frames.len() + ENTRY_OVERHEAD
    }

    /// The event as a message again; the frames are slices of the block, not copies.
    fn message(&self) -> ZmqMessage {
        let mut frames = Vec::with_capacity(MAX_FRAMES);
        let mut at = 0;
        for &len in self.lengths.iter().take_while(|&&len| len > 0) {
            let end = at + len as usize;
            frames.push(self.frames.slice(at..end));
            at = end;
        }
        // Held events always have at least their topic frame, so this never falls back.
        ZmqMessage::try_from(frames).unwrap_or_else(|_| ZmqMessage::from(self.topic))
    }
}

/// Recent events of the current epoch, numbered `oldest ..= newest` without holes.
#[derive(Debug)]
pub struct Window {
    held: VecDeque<Held>,
    /// Sequence number of `held[0]`.
    first: u64,
    bytes: usize,
    bounds: Bounds,
    /// The rest of the current block, where the next event's frames go.
    block: BytesMut,
}

/// A chunk copied out of the window.
#[derive(Debug, Default)]
pub struct Chunk {
    /// The events, in order, as they were published.
    pub messages: Vec<ZmqMessage>,
    /// The last number the chunk covers: events skipped by topic and numbers that had already
    /// left the window included.
    pub last: u64,
}

impl Window {
    /// An empty window whose first event will be number 1.
    pub fn new(bounds: Bounds) -> Self {
        Window {
            held: VecDeque::new(),
            first: 1,
            bytes: 0,
            bounds,
            block: BytesMut::new(),
        }
    }

    /// The oldest number held, 0 when empty.
    pub fn oldest(&self) -> u64 {
        if self.held.is_empty() { 0 } else { self.first }
    }

    /// The newest number held, 0 when nothing was ever held.
    pub fn newest(&self) -> u64 {
        (self.first + self.held.len() as u64).saturating_sub(1)
    }

    /// Bytes held now.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Events held now.
    pub fn len(&self) -> usize {
        self.held.len()
    }

    /// Appends event `seq`, which must follow the newest (the socket task sends in order);
    /// anything else means the numbering restarted, and the window starts over from `seq`.
    pub fn push(&mut self, seq: u64, topic: &'static str, message: &ZmqMessage) {
        if seq != self.newest() + 1 {
            self.held.clear();
            self.bytes = 0;
            self.first = seq;
        }
        let held = self.copy_in(topic, message);
        self.bytes += held.size();
        self.held.push_back(held);
        while self.held.len() > self.bounds.events.max(1)
            || (self.bytes > self.bounds.bytes && self.held.len() > 1)
        {
            if let Some(old) = self.held.pop_front() {
                self.bytes -= old.size();
                self.first += 1;
            }
        }
    }

    /// Marks the numbers from the newest up to `seq` (excluded) as lost, so that `seq` can be
    /// pushed next and what is held before the hole stays replayable: an answer skips lost
    /// numbers (its end marker covers them), and the asker writes them as a gap. Only the
    /// journal's recovery makes holes (a record that failed its checksum). A hole longer than
    /// the window starts the window over instead.
    pub fn lose_until(&mut self, seq: u64) {
        let missing = seq.saturating_sub(self.newest() + 1);
        if self.held.is_empty() || missing == 0 || missing > self.bounds.events as u64 {
            return;
        }
        for _ in 0..missing {
            let lost = Held {
                topic: "",
                frames: Bytes::new(),
                lengths: [0; MAX_FRAMES],
            };
            self.bytes += lost.size();
            self.held.push_back(lost);
        }
    }

    /// Copies the frames of `message` end to end into the current block (a new one when it
    /// is full).
    fn copy_in(&mut self, topic: &'static str, message: &ZmqMessage) -> Held {
        let total: usize = message.iter().map(|frame| frame.len()).sum();
        if self.block.capacity() - self.block.len() < total {
            self.block = BytesMut::with_capacity(BLOCK.max(total));
        }
        let mut lengths = [0; MAX_FRAMES];
        for (length, frame) in lengths.iter_mut().zip(message.iter()) {
            *length = u32::try_from(frame.len()).unwrap_or(u32::MAX);
            self.block.extend_from_slice(frame);
        }
        Held {
            topic,
            frames: self.block.split().freeze(),
            lengths,
        }
    }

    /// Up to `max` events after `after` whose topic starts with one of `topics` (all topics
    /// when empty). Frames are reference-counted: copying them out is cheap.
    pub fn after(&self, after: u64, max: usize, topics: &[String]) -> Chunk {
        let start = after.saturating_add(1).max(self.first);
        // Numbers that left the window count as covered: the answer's end marker says so.
        let mut chunk = Chunk {
            messages: Vec::new(),
            last: start - 1,
        };
        let Ok(skip) = usize::try_from(start - self.first) else {
            return chunk;
        };
        for (offset, held) in self.held.iter().skip(skip).enumerate() {
            if chunk.messages.len() >= max {
                break;
            }
            chunk.last = start + offset as u64;
            let lost = held.lengths[0] == 0;
            if !lost
                && (topics.is_empty() || topics.iter().any(|t| held.topic.starts_with(t.as_str())))
            {
                chunk.messages.push(held.message());
            }
        }
        chunk
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(seq: u64) -> ZmqMessage {
        ZmqMessage::from(format!("event {seq:03}"))
    }

    #[test]
    fn a_held_event_comes_back_with_every_frame_as_it_was() {
        let mut w = window(10, 1 << 20);
        let mut sent = ZmqMessage::from("downcase");
        sent.push_back(Bytes::from_static(b"envelope"));
        sent.push_back(Bytes::from(vec![7u8; 32]));
        w.push(1, "downcase", &sent);
        let back = w.after(0, 10, &[]).messages.remove(0);
        assert_eq!(back.into_vec(), sent.into_vec());
    }

    fn window(events: usize, bytes: usize) -> Window {
        Window::new(Bounds { events, bytes })
    }

    fn seqs(chunk: &Chunk) -> Vec<String> {
        chunk
            .messages
            .iter()
            .map(|m| String::from_utf8_lossy(&m.get(0).unwrap()[..]).into_owned())
            .collect()
    }

    #[test]
    fn an_empty_window_holds_nothing_and_answers_nothing() {
        let w = window(10, 1 << 20);
        assert_eq!((w.oldest(), w.newest(), w.len()), (0, 0, 0));
        let chunk = w.after(0, 100, &[]);
        assert!(chunk.messages.is_empty());
        assert_eq!(chunk.last, 0);
    }

    #[test]
    fn the_oldest_events_leave_first_when_the_count_is_reached() {
        let mut w = window(3, 1 << 20);
        for seq in 1..=5 {
            w.push(seq, "downcase", &message(seq));
        }
        assert_eq!((w.oldest(), w.newest(), w.len()), (3, 5, 3));
        let chunk = w.after(0, 100, &[]);
        assert_eq!(seqs(&chunk), ["event 003", "event 004", "event 005"]);
        assert_eq!(chunk.last, 5);
    }

    #[test]
    fn the_byte_bound_holds_too() {
        let mut w = window(1000, 3 * (ENTRY_OVERHEAD + 9));
        for seq in 1..=10 {
            w.push(seq, "downcase", &message(seq));
        }
        assert_eq!(w.len(), 3);
        assert!(w.bytes() <= 3 * (ENTRY_OVERHEAD + 9));
        assert_eq!(w.oldest(), 8);
    }

    #[test]
    fn an_answer_starts_after_the_asked_number_and_stops_at_max() {
        let mut w = window(100, 1 << 20);
        for seq in 1..=10 {
            w.push(seq, "downcase", &message(seq));
        }
        let chunk = w.after(4, 3, &[]);
        assert_eq!(seqs(&chunk), ["event 005", "event 006", "event 007"]);
        assert_eq!(chunk.last, 7);
        let rest = w.after(chunk.last, 100, &[]);
        assert_eq!(rest.messages.len(), 3);
        assert_eq!(rest.last, 10);
        let none = w.after(10, 100, &[]);
        assert!(none.messages.is_empty());
        assert_eq!(none.last, 10);
    }

    #[test]
    fn a_topic_filter_skips_events_but_the_chunk_covers_them() {
        let mut w = window(100, 1 << 20);
        w.push(1, "downcase", &message(1));
        w.push(2, "signature.requested", &message(2));
        w.push(3, "downcase", &message(3));
        let chunk = w.after(0, 100, &["signature.".to_owned()]);
        assert_eq!(seqs(&chunk), ["event 002"]);
        assert_eq!(chunk.last, 3);
    }

    #[test]
    fn asking_for_what_left_the_window_starts_at_the_oldest_held() {
        let mut w = window(2, 1 << 20);
        for seq in 1..=6 {
            w.push(seq, "downcase", &message(seq));
        }
        let chunk = w.after(1, 100, &[]);
        assert_eq!(seqs(&chunk), ["event 005", "event 006"]);
        assert_eq!(w.oldest(), 5);
    }

    #[test]
    fn numbers_lost_in_the_journal_are_skipped_and_what_is_around_them_is_served() {
        let mut w = window(100, 1 << 20);
        w.push(1, "downcase", &message(1));
        w.lose_until(4);
        w.push(4, "downcase", &message(4));
        assert_eq!((w.oldest(), w.newest(), w.len()), (1, 4, 4));
        let chunk = w.after(0, 100, &[]);
        assert_eq!(seqs(&chunk), ["event 001", "event 004"]);
        assert_eq!(chunk.last, 4);
    }

    #[test]
    fn a_number_out_of_order_starts_the_window_over() {
        let mut w = window(100, 1 << 20);
        w.push(1, "downcase", &message(1));
        w.push(2, "downcase", &message(2));
        w.push(7, "downcase", &message(7));
        assert_eq!((w.oldest(), w.newest(), w.len()), (7, 7, 1));
    }
}
