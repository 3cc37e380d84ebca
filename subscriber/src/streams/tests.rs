//! The state machine driven arrival by arrival, time passed as a parameter.

use super::*;
use wire::{Downcase, Origin, ReplayEnd};

fn settings() -> Settings {
    Settings {
        start: Start::Earliest,
        replay: true,
        heartbeat_wait: Duration::from_secs(3),
        replay_timeout: Duration::from_secs(2),
        give_up: Duration::from_secs(10),
        max_held: 50_000,
        filtered: false,
    }
}

/// Only some topics followed (`TOPICS`): the publisher's numbers jump over the others.
fn filtered() -> Settings {
    Settings {
        filtered: true,
        ..settings()
    }
}

/// A publisher "p" in epoch `epoch`, and what the state machine did so far, one word each:
/// `7` an event written, `gap 2-5 expired` a gap line, `ask 1/4` a request (epoch/after).
struct Harness {
    streams: Streams,
    now: Instant,
    epoch: u64,
}

impl Harness {
    fn new(settings: Settings) -> Self {
        Self::resuming(settings, HashMap::new())
    }

    fn resuming(settings: Settings, resume: HashMap<String, Resume>) -> Self {
        Harness {
            streams: Streams::new(settings, resume),
            now: Instant::now(),
            epoch: 1,
        }
    }

    fn event(&self, seq: u64) -> Envelope<Event> {
        let origin = Origin {
            id: "p".into(),
            epoch: self.epoch,
        };
        origin.envelope(
            seq,
            Event::Downcase(Downcase {
                param: format!("#{seq}"),
                result: format!("#{seq}"),
            }),
        )
    }

    fn live(&mut self, seqs: impl IntoIterator<Item = u64>) -> Vec<String> {
        let mut out = Vec::new();
        for seq in seqs {
            let event = self.event(seq);
            self.streams.event(0, event, self.now, &mut out);
        }
        words(out)
    }

    fn beat(&mut self, last_seq: u64, replay: bool) -> Vec<String> {
        let mut out = Vec::new();
        let beat = Heartbeat { last_seq, replay };
        self.streams
            .heartbeat(0, "p", self.epoch, beat, self.now, &mut out);
        words(out)
    }

    fn replay(&mut self, seqs: impl IntoIterator<Item = u64>) -> Vec<String> {
        let mut out = Vec::new();
        for seq in seqs {
            let event = self.event(seq).map(Replayed::Event);
            self.streams.replayed(event, self.now, &mut out);
        }
        words(out)
    }

    fn end(&mut self, asked_after: u64, last: u64, oldest: u64, newest: u64) -> Vec<String> {
        let end = ReplayEnd {
            epoch: self.epoch,
            asked_epoch: self.epoch,
            asked_after,
            last,
            oldest,
            newest,
        };
        self.end_of(end)
    }

    fn end_of(&mut self, end: ReplayEnd) -> Vec<String> {
        let mut out = Vec::new();
        let origin = Origin {
            id: "p".into(),
            epoch: end.epoch,
        };
        self.streams
            .replayed(origin.envelope(0, Replayed::End(end)), self.now, &mut out);
        words(out)
    }

    fn later(&mut self, by: Duration) -> Vec<String> {
        self.now += by;
        let mut out = Vec::new();
        self.streams.tick(self.now, &mut out);
        words(out)
    }
}

fn words(actions: Vec<Action>) -> Vec<String> {
    actions
        .into_iter()
        .map(|action| match action {
            Action::Write(Entry::Event(e)) => e.seq.to_string(),
            Action::Write(Entry::Gap {
                first,
                last,
                reason,
                ..
            }) => format!("gap {first}-{last} {}", reason.as_str()),
            Action::Ask(ask) => format!("ask {}/{}", ask.epoch, ask.after),
        })
        .collect()
}

fn seqs(range: std::ops::RangeInclusive<u64>) -> Vec<String> {
    range.map(|s| s.to_string()).collect()
}

const SECOND: Duration = Duration::from_secs(1);

#[test]
fn a_late_joiner_asks_after_0_and_writes_replayed_events_once() {
    let mut h = Harness::new(settings());
    assert_eq!(h.beat(5, true), ["ask 1/0"]);
    assert!(h.live([6]).is_empty(), "held while the earlier ones come");
    assert_eq!(h.replay(1..=6), seqs(1..=6));
    assert!(h.end(0, 6, 1, 6).is_empty(), "caught up: no further ask");
    assert_eq!(h.live([6, 7]), ["7"]);
}

#[test]
fn a_hole_is_filled_from_replay_with_held_live_events_drained_in_order_and_no_duplicates() {
    let mut h = Harness::new(settings());
    h.beat(0, true);
    assert_eq!(h.live([1, 2]), ["1", "2"]);
    assert_eq!(h.live([5, 6]), ["ask 1/2"]);
    assert!(h.live([7, 6]).is_empty());
    assert_eq!(h.replay([3, 4, 5]), ["3", "4", "5", "6", "7"]);
    assert!(h.replay([6, 7]).is_empty());
    assert!(h.end(2, 7, 1, 7).is_empty());
    assert_eq!(h.live([8]), ["8"]);
}

#[test]
fn a_long_hole_is_fetched_chunk_after_chunk() {
    let mut h = Harness::new(settings());
    h.beat(0, true);
    h.live([1]);
    assert_eq!(h.beat(5, true), ["ask 1/1"]);
    assert_eq!(h.replay([2, 3]), ["2", "3"]);
    assert_eq!(h.end(1, 3, 1, 5), ["ask 1/3"]);
    assert_eq!(h.replay([4, 5]), ["4", "5"]);
    assert!(h.end(3, 5, 1, 5).is_empty());
}

#[test]
fn an_expired_range_is_exactly_one_gap_line_then_the_events_the_window_holds() {
    let mut h = Harness::new(settings());
    h.beat(0, true);
    h.live([1]);
    assert_eq!(h.live([10]), ["ask 1/1"]);
    let written = h.replay(6..=10);
    assert_eq!(written[0], "gap 2-5 expired");
    assert_eq!(written[1..], seqs(6..=10));
    assert!(h.end(1, 10, 6, 10).is_empty());
}

#[test]
fn an_end_whose_window_starts_past_the_hole_is_one_expired_gap_line() {
    let mut h = Harness::new(settings());
    h.beat(0, true);
    h.live([1]);
    h.live([9]);
    assert_eq!(h.end(1, 1, 9, 9), ["gap 2-8 expired", "9"]);
    let mut h = Harness::new(settings());
    h.beat(0, true);
    h.live([1]);
    h.beat(4, true);
    assert_eq!(h.end(1, 1, 0, 4), ["gap 2-4 expired"], "an empty window");
}

#[test]
fn a_publisher_restart_mid_catch_up_is_one_restarted_gap_for_exactly_the_lost_range() {
    let mut h = Harness::new(settings());
    h.beat(0, true);
    h.live([1]);
    assert_eq!(h.beat(10, true), ["ask 1/1"]);
    assert_eq!(h.replay([2, 3]), ["2", "3"]);
    h.epoch = 2;
    assert_eq!(h.live([2]), ["gap 4-10 publisher restarted"]);
    assert_eq!(h.beat(2, true), ["ask 2/0"]);
    assert_eq!(h.replay([1, 2]), ["1", "2"]);
}

#[test]
fn an_end_naming_a_new_epoch_closes_the_asked_one_and_starts_the_new_from_its_first_event() {
    let mut h = Harness::new(settings());
    h.beat(0, true);
    h.live([1]);
    h.beat(6, true);
    let end = ReplayEnd {
        epoch: 2,
        asked_epoch: 1,
        asked_after: 1,
        last: 1,
        oldest: 1,
        newest: 3,
    };
    assert_eq!(h.end_of(end), ["gap 2-6 publisher restarted", "ask 2/0"]);
    h.epoch = 1;
    assert!(h.live([7]).is_empty(), "the old epoch is dropped");
}

#[test]
fn without_replay_a_hole_is_a_not_received_gap_at_once() {
    let mut h = Harness::new(settings());
    assert!(h.beat(0, false).is_empty());
    assert_eq!(h.live([1, 4]), ["1", "gap 2-3 not received", "4"]);
    assert_eq!(h.beat(6, false), ["gap 5-6 not received"]);
    let mut h = Harness::new(Settings {
        replay: false,
        ..settings()
    });
    assert_eq!(
        h.live([3, 5]),
        ["3", "gap 4-4 not received", "5"],
        "replay disabled: no wait"
    );
    assert_eq!(h.beat(5, true), Vec::<String>::new());
    assert_eq!(h.live([7]), ["gap 6-6 not received", "7"]);
}

#[test]
fn an_unanswered_replay_is_sent_again_with_backoff_then_a_replay_unanswered_gap() {
    let mut h = Harness::new(settings());
    h.beat(0, true);
    h.live([1]);
    assert_eq!(h.live([5]), ["ask 1/1"]);
    assert!(h.later(SECOND).is_empty());
    assert_eq!(h.later(SECOND), ["ask 1/1"], "after REPLAY_TIMEOUT");
    assert!(
        h.later(3 * SECOND).is_empty(),
        "the second wait is twice as long"
    );
    assert_eq!(h.later(SECOND), ["ask 1/1"]);
    assert!(h.later(3 * SECOND).is_empty());
    assert_eq!(
        h.later(SECOND),
        ["gap 2-4 replay unanswered", "5"],
        "after REPLAY_GIVE_UP"
    );
    assert_eq!(h.live([6]), ["6"], "the live stream goes on");
    assert!(h.later(20 * SECOND).is_empty());
}

#[test]
fn replay_that_keeps_coming_is_never_given_up() {
    let mut h = Harness::new(settings());
    h.beat(0, true);
    h.live([1]);
    h.beat(100, true);
    for seq in 2..=20 {
        h.later(SECOND);
        assert_eq!(h.replay([seq]), [seq.to_string()]);
    }
    assert!(h.later(SECOND).iter().all(|w| w.starts_with("ask")));
}

#[test]
fn duplicates_from_live_and_replay_overlapping_are_written_once() {
    let mut h = Harness::new(settings());
    h.beat(0, true);
    h.live([1]);
    h.live([4, 5, 6]);
    let mut written = h.replay(2..=6);
    written.extend(h.live([4, 5, 6, 7]));
    written.extend(h.replay(2..=7));
    written.extend(h.end(1, 7, 1, 7));
    written.extend(h.live([7, 8]));
    assert_eq!(written, seqs(2..=8));
}

#[test]
fn a_new_publisher_without_a_heartbeat_is_followed_without_replay_after_the_wait() {
    let mut h = Harness::new(settings());
    assert!(
        h.live([3, 4, 6]).is_empty(),
        "held until we know about replay"
    );
    assert!(h.later(2 * SECOND).is_empty());
    assert_eq!(h.later(SECOND), ["3", "4", "gap 5-5 not received", "6"]);
}

#[test]
fn with_latest_a_new_publisher_starts_at_its_next_event() {
    let mut h = Harness::new(Settings {
        start: Start::Latest,
        ..settings()
    });
    assert_eq!(h.live([7, 8]), ["7", "8"]);
    assert!(h.beat(8, true).is_empty());
    let mut h = Harness::new(Settings {
        start: Start::Latest,
        ..settings()
    });
    assert!(h.beat(5, true).is_empty(), "nothing before 5 is ours");
    assert_eq!(h.live([6]), ["6"]);
}

#[test]
fn a_resumed_publisher_asks_after_the_logged_position_and_a_later_epoch_starts_at_one() {
    let resume = |epoch| {
        let r = Resume {
            epoch,
            last: 5,
            last_event_ms: Some(1),
        };
        HashMap::from([("p".to_owned(), r)])
    };
    let mut h = Harness::resuming(settings(), resume(Some(1)));
    assert!(h.live([8]).is_empty());
    assert_eq!(h.beat(8, true), ["ask 1/5"]);
    assert_eq!(h.replay(4..=8), seqs(6..=8));

    let mut h = Harness::resuming(settings(), resume(Some(1)));
    h.epoch = 2;
    assert_eq!(h.live([2]), Vec::<String>::new());
    assert_eq!(h.beat(2, false), ["gap 1-1 not received", "2"]);

    let mut h = Harness::resuming(settings(), resume(Some(3)));
    assert!(
        h.live([9]).is_empty() && h.beat(9, true).is_empty(),
        "an older epoch is dropped"
    );
}

#[test]
fn an_epoch_the_log_could_not_name_is_continued_only_if_it_began_before_the_last_event() {
    let resume = |last_event_ms| {
        let r = Resume {
            epoch: None,
            last: 5,
            last_event_ms: Some(last_event_ms),
        };
        HashMap::from([("p".to_owned(), r)])
    };
    // Epoch 1 began before the last logged event (at ms 1000): the same run.
    let mut h = Harness::resuming(settings(), resume(1000));
    assert_eq!(h.beat(7, true), ["ask 1/5"]);
    // It began after it: a later run, followed from its first event.
    let mut h = Harness::resuming(settings(), resume(0));
    assert_eq!(h.beat(7, true), ["ask 1/0"]);
    // Behind the log's last number: cannot be the run the log follows.
    let mut h = Harness::resuming(settings(), resume(1000));
    assert_eq!(h.beat(3, true), ["ask 1/0"]);
}

#[test]
fn events_past_the_hold_limit_are_dropped_and_fetched_again() {
    let mut h = Harness::new(Settings {
        max_held: 2,
        ..settings()
    });
    h.beat(0, true);
    h.live([1]);
    assert_eq!(h.live([3, 4, 5, 6]), ["ask 1/1"]);
    assert_eq!(h.replay([2]), ["2", "3", "4"]);
    assert_eq!(h.end(1, 2, 1, 6), ["ask 1/4"]);
    assert_eq!(h.replay([5, 6]), ["5", "6"]);
}

#[test]
fn an_ask_that_found_the_queue_full_is_sent_on_the_next_tick() {
    let mut h = Harness::new(settings());
    h.beat(0, true);
    h.live([1]);
    assert_eq!(h.live([3]), ["ask 1/1"]);
    h.streams.unsent("p", h.now);
    assert_eq!(h.later(Duration::from_millis(100)), ["ask 1/1"]);
}

#[test]
fn a_publisher_that_stops_serving_replay_has_its_hole_written_as_not_received() {
    let mut h = Harness::new(settings());
    h.beat(0, true);
    h.live([1]);
    assert_eq!(h.live([4]), ["ask 1/1"]);
    assert_eq!(h.beat(4, false), ["gap 2-3 not received", "4"]);
}

#[test]
fn at_shutdown_what_is_next_is_written_and_no_range_is_given_up() {
    let finish = |h: &mut Harness| {
        let mut out = Vec::new();
        h.streams.finish(&mut out);
        words(out)
    };
    let mut h = Harness::new(settings());
    h.live([2, 3, 5]);
    assert_eq!(
        finish(&mut h),
        ["2", "3"],
        "a new publisher starts where it was heard"
    );
    let mut h = Harness::new(settings());
    h.beat(0, true);
    h.live([1, 3]);
    assert!(finish(&mut h).is_empty(), "left for replay in the next run");
    let resume = Resume {
        epoch: Some(1),
        last: 5,
        last_event_ms: None,
    };
    let mut h = Harness::resuming(settings(), HashMap::from([("p".to_owned(), resume)]));
    h.live([9]);
    assert!(
        finish(&mut h).is_empty(),
        "no gap before the next run could fill it"
    );
}

#[test]
fn answers_to_an_earlier_request_change_nothing() {
    let mut h = Harness::new(settings());
    h.beat(0, true);
    h.live([1]);
    h.live([5]);
    h.later(2 * SECOND); // sent again
    assert_eq!(h.replay(2..=4), ["2", "3", "4", "5"]);
    assert!(h.end(1, 4, 1, 5).is_empty());
    assert!(
        h.replay(2..=4).is_empty() && h.end(1, 4, 1, 5).is_empty(),
        "the second answer"
    );
    assert_eq!(
        h.end(3, 3, 1, 5),
        Vec::<String>::new(),
        "an end for an after never asked"
    );
}

#[test]
fn with_a_topic_filter_a_live_jump_is_filled_by_replay_and_the_skipped_numbers_are_no_gap() {
    let mut h = Harness::new(filtered());
    assert!(h.beat(0, true).is_empty());
    assert_eq!(h.live([1]), ["1"]);
    assert_eq!(
        h.live([4]),
        ["ask 1/1"],
        "a jump is asked about, not written as a gap"
    );
    assert!(
        h.replay([4]).is_empty(),
        "held until the end says what 2-3 were"
    );
    assert_eq!(
        h.end(1, 4, 1, 4),
        ["4"],
        "2-3 were of other topics: no line"
    );
    assert!(h.streams.catching_up(h.now).is_empty());
    assert_eq!(h.live([5]), ["5"]);
}

#[test]
fn with_a_topic_filter_a_heartbeat_past_only_other_topics_writes_nothing() {
    let mut h = Harness::new(filtered());
    assert!(h.beat(0, true).is_empty());
    assert_eq!(h.live([1]), ["1"]);
    assert_eq!(h.beat(7, true), ["ask 1/1"]);
    assert!(h.end(1, 7, 1, 7).is_empty(), "2-7 were of other topics");
    assert!(h.beat(7, true).is_empty(), "accounted for: not asked again");
    assert_eq!(h.live([9]), ["ask 1/7"]);
}

#[test]
fn with_a_topic_filter_what_left_the_window_is_still_an_expired_gap() {
    let mut h = Harness::new(filtered());
    assert!(h.beat(0, true).is_empty());
    assert_eq!(h.live([1]), ["1"]);
    assert_eq!(h.live([10]), ["ask 1/1"]);
    assert!(h.replay([6, 10]).is_empty());
    assert_eq!(
        h.end(1, 10, 5, 10),
        ["gap 2-4 expired", "6", "10"],
        "2-4 left the window (their topics unknown); 5, 7-9 were of other topics"
    );
}

#[test]
fn with_a_topic_filter_unanswered_replay_is_still_a_replay_unanswered_gap() {
    let mut h = Harness::new(filtered());
    assert!(h.beat(0, true).is_empty());
    assert_eq!(h.live([1]), ["1"]);
    assert_eq!(h.live([5]), ["ask 1/1"]);
    assert!(
        h.streams.catching_up(h.now).is_empty(),
        "a routine fill is not catching up"
    );
    h.later(SECOND * 3);
    assert_eq!(h.streams.catching_up(h.now), [("p".to_owned(), 4)]);
    let given_up = h.later(SECOND * 8);
    assert_eq!(given_up, ["gap 2-4 replay unanswered", "5"]);
}

#[test]
fn with_a_topic_filter_and_no_replay_jumps_are_passed_over_silently() {
    let mut h = Harness::new(Settings {
        replay: false,
        ..filtered()
    });
    assert_eq!(h.live([1, 5]), ["1", "5"]);
    assert!(h.beat(9, false).is_empty());
    assert_eq!(h.live([12]), ["12"]);
}

#[test]
fn with_a_topic_filter_a_late_joiner_gets_only_what_replay_sends_and_no_gap() {
    let mut h = Harness::new(filtered());
    assert_eq!(h.beat(6, true), ["ask 1/0"]);
    assert!(h.replay([2, 5]).is_empty());
    assert_eq!(h.end(0, 6, 1, 6), ["2", "5"]);
    assert!(h.streams.catching_up(h.now).is_empty());
}
