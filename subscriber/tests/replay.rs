//! The subscriber binary against a fake publisher the test controls: a real PUB socket and a
//! real ROUTER serving a small window kept in the test (design §6). A late joiner gets every
//! earlier event once, in order; a subscriber killed mid-stream and started again misses
//! none and doubles none; what the window no longer holds is one explicit gap line.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wire::{
    Broadcast, Codec, Downcase, Event, Heartbeat, Origin, ReplayEnd, ReplayRequest, Replayed,
};
use zeromq::{PubSocket, RouterSocket, Socket, SocketRecv, SocketSend, ZmqMessage};

/// Everything the fake publisher has published, as sent, and where its window starts.
struct Window {
    sent: Vec<ZmqMessage>,
    oldest: u64,
    /// Requests are read and never answered.
    mute: bool,
}

/// A publisher that serves replay, made of real sockets; the test drives it step by step.
struct FakePublisher {
    socket: PubSocket,
    events: String,
    replay: String,
    origin: Origin,
    window: Arc<Mutex<Window>>,
    _router: tokio::task::JoinHandle<()>,
}

impl FakePublisher {
    async fn start() -> Self {
        let mut socket = PubSocket::new();
        let events = socket.bind("tcp://127.0.0.1:0").await.expect("bind PUB");
        let mut router = RouterSocket::new();
        let replay = router.bind("tcp://127.0.0.1:0").await.expect("bind ROUTER");
        let origin = Origin::starting_now("fake-pub");
        let window = Arc::new(Mutex::new(Window {
            sent: Vec::new(),
            oldest: 1,
            mute: false,
        }));
        let serving = serve_replay(router, origin.clone(), Arc::clone(&window));
        FakePublisher {
            socket,
            events: events.to_string(),
            replay: replay.to_string(),
            origin,
            window,
            _router: tokio::spawn(serving),
        }
    }

    fn published(&self) -> u64 {
        self.window.lock().expect("window").sent.len() as u64
    }

    /// Publishes `count` more events (dropped by PUB when nobody listens; kept in the window).
    async fn publish(&mut self, count: u64) {
        for _ in 0..count {
            let seq = self.published() + 1;
            let body = Broadcast::Event(Event::Downcase(Downcase {
                param: format!("Event {seq}"),
                result: format!("event {seq}"),
            }));
            let message = Codec::default().encode(&self.origin.envelope(seq, body));
            self.window
                .lock()
                .expect("window")
                .sent
                .push(message.clone());
            self.socket.send(message).await.expect("PUB send");
        }
    }

    async fn heartbeat(&mut self) {
        let last_seq = self.published();
        let beat = Broadcast::Heartbeat(Heartbeat {
            last_seq,
            replay: true,
        });
        let message = Codec::default().encode(&self.origin.envelope(last_seq, beat));
        self.socket.send(message).await.expect("PUB send");
    }

    /// The window no longer holds the numbers before `seq`.
    fn forget_before(&self, seq: u64) {
        self.window.lock().expect("window").oldest = seq;
    }

    /// Heartbeats every 50 ms until `log` holds `count` events, at most `limit`.
    async fn until_logged(&mut self, log: &Path, count: usize, limit: Duration) {
        let start = Instant::now();
        while events(log).len() < count {
            assert!(
                start.elapsed() < limit,
                "{count} events not logged within {limit:?}; log:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
            self.heartbeat().await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The ROUTER side: answers each request with the window's events after `after` (at most
/// `max_events`), then the end marker; frames as the subscriber sends them, identity first.
async fn serve_replay(mut router: RouterSocket, origin: Origin, window: Arc<Mutex<Window>>) {
    let codec = Codec::default();
    while let Ok(message) = router.recv().await {
        let mut frames: VecDeque<_> = message.into_vecdeque();
        let Some(identity) = frames.pop_front() else {
            continue;
        };
        let request = ZmqMessage::try_from(frames).expect("request frames");
        let request = codec
            .decode::<ReplayRequest>(&request)
            .expect("a replay request");
        let ReplayRequest {
            epoch,
            after,
            max_events,
            ..
        } = request.body;
        let answers = {
            let window = window.lock().expect("window");
            if window.mute {
                continue;
            }
            let newest = window.sent.len() as u64;
            let first = (after + 1).max(window.oldest);
            let last = newest.min(first + u64::from(max_events) - 1);
            let mut answers: Vec<ZmqMessage> = (first..=last)
                .map(|seq| window.sent[(seq - 1) as usize].clone())
                .collect();
            let end = ReplayEnd {
                epoch: origin.epoch,
                asked_epoch: epoch,
                asked_after: after,
                last: last.max(after),
                oldest: window.oldest.min(newest),
                newest,
            };
            answers.push(codec.encode(&origin.envelope(newest, Replayed::End(end))));
            answers
        };
        for mut answer in answers {
            answer.push_front(identity.clone());
            if router.send(answer).await.is_err() {
                break; // that subscriber is gone
            }
        }
    }
}

/// The sequence numbers of the event lines in `log`, in order; panics on a gap line.
fn events(log: &Path) -> Vec<u64> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .filter(|line| !line.is_empty())
        .map(|line| {
            let origin = line.split(' ').nth(2).expect("publisher#seq");
            assert!(!line.contains(" gap "), "unexpected gap line: {line}");
            origin
                .strip_prefix("fake-pub#")
                .and_then(|seq| seq.parse().ok())
                .unwrap_or_else(|| panic!("not an event of fake-pub: {line}"))
        })
        .collect()
}

/// The subscriber binary cargo built for this package. The check guards against a target
/// directory shared with other checkouts, where `target/debug/subscriber` is whoever built last.
fn binary() -> &'static str {
    let path = env!("CARGO_BIN_EXE_subscriber");
    let help = Command::new(path)
        .arg("--help")
        .output()
        .expect("--help runs");
    assert!(
        String::from_utf8_lossy(&help.stdout).contains("REPLAY_CONNECT"),
        "{path} is not this checkout's subscriber (a CARGO_TARGET_DIR shared with another build?)"
    );
    path
}

/// A running subscriber with its stderr in a file.
struct Subscriber {
    child: Child,
    stderr: PathBuf,
}

impl Subscriber {
    /// Starts run number `run` (it names the stderr file).
    fn start(publisher: &FakePublisher, dir: &Path, run: u32) -> Subscriber {
        Self::start_with(publisher, dir, run, &[])
    }

    fn start_with(
        publisher: &FakePublisher,
        dir: &Path,
        run: u32,
        env: &[(&str, &str)],
    ) -> Subscriber {
        let stderr = dir.join(format!("subscriber-{run}.stderr"));
        let child = Command::new(binary())
            .env("EVENTS_CONNECT", &publisher.events)
            .env("REPLAY_CONNECT", &publisher.replay)
            .env("LOG_FILE", dir.join("subscriber.log"))
            .env("REPLAY_CHUNK", "25")
            .env("RUST_LOG", "info")
            .env("HEALTH_ADDR", "127.0.0.1:0")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).expect("stderr file"))
            .spawn()
            .expect("subscriber starts");
        Subscriber { child, stderr }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    fn kill(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reaped");
    }

    fn terminate(mut self) -> String {
        let pid = self.child.id().to_string();
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill runs");
        let status = self.child.wait().expect("exits");
        assert!(
            status.success(),
            "exit on SIGTERM: {status}\n{}",
            self.stderr()
        );
        self.stderr()
    }
}

const LIMIT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn a_late_joiner_gets_every_earlier_event_exactly_once_in_order() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("subscriber.log");
    let mut publisher = FakePublisher::start().await;
    publisher.publish(60).await;

    let subscriber = Subscriber::start(&publisher, dir.path(), 1);
    publisher.until_logged(&log, 60, LIMIT).await;
    publisher.publish(20).await;
    publisher.until_logged(&log, 80, LIMIT).await;

    assert_eq!(events(&log), (1..=80).collect::<Vec<_>>());
    let stderr = subscriber.terminate();
    assert!(stderr.contains("caught up"), "{stderr}");
}

#[tokio::test]
async fn a_subscriber_killed_mid_stream_and_started_again_logs_every_event_exactly_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("subscriber.log");
    let mut publisher = FakePublisher::start().await;
    let subscriber = Subscriber::start(&publisher, dir.path(), 1);

    // A steady stream; the subscriber dies in the middle of it, with no warning.
    let start = Instant::now();
    while events(&log).len() < 150 {
        assert!(start.elapsed() < LIMIT, "the stream never reached the log");
        publisher.publish(5).await;
        publisher.heartbeat().await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    subscriber.kill();
    let logged_before = events(&log).len();
    for _ in 0..20 {
        publisher.publish(5).await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let subscriber = Subscriber::start(&publisher, dir.path(), 2);
    for _ in 0..40 {
        publisher.publish(5).await;
        publisher.heartbeat().await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let total = publisher.published() as usize;
    publisher.until_logged(&log, total, LIMIT).await;

    let logged = events(&log);
    assert_eq!(logged.len(), total, "none doubled at the restart point");
    assert_eq!(logged, (1..=total as u64).collect::<Vec<_>>());
    assert!(logged_before < total);
    let stderr = subscriber.terminate();
    assert!(stderr.contains("publisher followed again"), "{stderr}");
}

#[tokio::test]
async fn events_the_window_no_longer_holds_are_one_expired_gap_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("subscriber.log");
    let mut publisher = FakePublisher::start().await;
    publisher.publish(30).await;
    publisher.forget_before(11);

    let subscriber = Subscriber::start(&publisher, dir.path(), 1);
    let start = Instant::now();
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("fake-pub#30 ")
    {
        assert!(start.elapsed() < LIMIT, "event 30 never logged");
        publisher.heartbeat().await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let text = std::fs::read_to_string(&log).expect("log");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 21, "{text}");
    assert!(
        lines[0].ends_with(" gap fake-pub#1 last=10 missing=10 reason=\"expired\""),
        "{text}"
    );
    assert!(lines[1].contains(" downcase fake-pub#11 "), "{text}");
    subscriber.terminate();
}

#[tokio::test]
async fn a_corrupt_position_file_is_a_warning_and_the_log_itself_says_where_to_go_on() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("subscriber.log");
    let mut publisher = FakePublisher::start().await;
    publisher.publish(5).await;
    let subscriber = Subscriber::start(&publisher, dir.path(), 1);
    publisher.until_logged(&log, 5, LIMIT).await;
    subscriber.terminate();

    std::fs::write(dir.path().join("subscriber.log.pos"), "{ torn").expect("corrupt it");
    publisher.publish(3).await;
    let subscriber = Subscriber::start(&publisher, dir.path(), 2);
    publisher.until_logged(&log, 8, LIMIT).await;

    assert_eq!(events(&log), (1..=8).collect::<Vec<_>>());
    let stderr = subscriber.terminate();
    assert!(stderr.contains("position file unusable"), "{stderr}");
}

#[tokio::test]
async fn a_replay_endpoint_that_never_answers_costs_a_gap_line_not_the_live_stream() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("subscriber.log");
    let mut publisher = FakePublisher::start().await;
    publisher.window.lock().expect("window").mute = true;
    publisher.publish(10).await;
    let fast = [("REPLAY_TIMEOUT", "200ms"), ("REPLAY_GIVE_UP", "1s")];
    let subscriber = Subscriber::start_with(&publisher, dir.path(), 1, &fast);

    let start = Instant::now();
    let text = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("fake-pub#11 ") {
            break text;
        }
        assert!(
            start.elapsed() < LIMIT,
            "the live stream stopped; log:\n{text}"
        );
        publisher.heartbeat().await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        if start.elapsed() > Duration::from_millis(300) && publisher.published() == 10 {
            publisher.publish(1).await; // a live event, held while replay is tried
        }
    };

    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].ends_with(" gap fake-pub#1 last=10 missing=10 reason=\"replay unanswered\""),
        "{text}"
    );
    assert!(lines[1].contains(" downcase fake-pub#11 "), "{text}");
    let stderr = subscriber.terminate();
    assert!(
        stderr.contains("replay connection dropped; rebuilding it"),
        "{stderr}"
    );
}
