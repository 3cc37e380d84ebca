//! Where each publisher's numbering stands, so every event is written once, in order, and a
//! number that never arrived is written as a gap instead of being skipped in silence.

use std::collections::HashMap;

/// What to do with an arriving event.
#[derive(Debug, PartialEq, Eq)]
pub enum Admit {
    /// Write it.
    Next,
    /// Write a gap line for `first..=last`, then the event.
    AfterGap {
        /// First missing number.
        first: u64,
        /// Last missing number.
        last: u64,
    },
    /// Already written (or older than the publisher's current run): drop it.
    Seen,
}

/// The last number written per publisher and its epoch.
#[derive(Debug, Default)]
pub struct Streams {
    last: HashMap<String, (u64, u64)>,
}

impl Streams {
    /// Decides about event `seq` of `sender`'s `epoch`, and records it when it is to be written.
    pub fn admit(&mut self, sender: &str, epoch: u64, seq: u64) -> Admit {
        let expected = match self.last.get(sender) {
            // A publisher never seen: it was running before we joined, start where it is.
            None => seq,
            Some(&(known, last)) if known == epoch => last + 1,
            // A new run of a publisher we know numbers from 1.
            Some(&(known, _)) if epoch > known => 1,
            Some(_) => return Admit::Seen,
        };
        if seq < expected {
            return Admit::Seen;
        }
        self.last.insert(sender.to_owned(), (epoch, seq));
        if seq == expected {
            Admit::Next
        } else {
            Admit::AfterGap {
                first: expected,
                last: seq - 1,
            }
        }
    }

    /// A heartbeat says `last_seq` was the publisher's latest event; returns the numbers
    /// that never arrived, which are then counted as dealt with.
    pub fn heartbeat(&mut self, sender: &str, epoch: u64, last_seq: u64) -> Option<(u64, u64)> {
        let first = match self.last.get(sender) {
            None => None,
            Some(&(known, last)) if known == epoch => Some(last + 1),
            Some(&(known, _)) if epoch > known => Some(1),
            Some(_) => return None,
        };
        match first {
            Some(first) if first > last_seq => None,
            _ => {
                self.last.insert(sender.to_owned(), (epoch, last_seq));
                first.map(|first| (first, last_seq))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consecutive_events_are_written_and_repeats_dropped() {
        let mut s = Streams::default();
        assert_eq!(s.admit("p", 1, 10), Admit::Next);
        assert_eq!(s.admit("p", 1, 11), Admit::Next);
        assert_eq!(s.admit("p", 1, 11), Admit::Seen);
        assert_eq!(s.admit("p", 1, 3), Admit::Seen);
        assert_eq!(s.admit("q", 5, 1), Admit::Next);
    }

    #[test]
    fn a_jump_in_numbering_is_a_gap() {
        let mut s = Streams::default();
        s.admit("p", 1, 1);
        assert_eq!(s.admit("p", 1, 5), Admit::AfterGap { first: 2, last: 4 });
        assert_eq!(s.admit("p", 1, 6), Admit::Next);
    }

    #[test]
    fn a_new_epoch_starts_at_one_and_an_old_one_is_ignored() {
        let mut s = Streams::default();
        s.admit("p", 1, 100);
        assert_eq!(s.admit("p", 2, 1), Admit::Next);
        assert_eq!(s.admit("p", 1, 101), Admit::Seen);
        let mut s = Streams::default();
        s.admit("p", 1, 100);
        assert_eq!(s.admit("p", 2, 4), Admit::AfterGap { first: 1, last: 3 });
    }

    #[test]
    fn a_heartbeat_ahead_of_the_last_event_reveals_a_gap() {
        let mut s = Streams::default();
        assert_eq!(
            s.heartbeat("p", 1, 7),
            None,
            "joining: nothing was expected yet"
        );
        assert_eq!(s.heartbeat("p", 1, 7), None);
        assert_eq!(s.admit("p", 1, 8), Admit::Next);
        assert_eq!(s.heartbeat("p", 1, 10), Some((9, 10)));
        assert_eq!(s.admit("p", 1, 10), Admit::Seen);
        assert_eq!(s.admit("p", 1, 11), Admit::Next);
        assert_eq!(s.heartbeat("p", 2, 0), None);
        assert_eq!(s.heartbeat("p", 2, 2), Some((1, 2)));
    }
}
