//! What the subscriber costs per event at full rate: events from a PUB socket in this process,
//! as fast as the receiver takes them, into the release subscriber binary (a child process
//! writing a real log), against a SUB that only counts (a child process too), measured in the
//! same run in interleaved rounds.
//!
//! | target | the child process |
//! |---|---|
//! | `raw` | a zmq.rs SUB connected straight to the PUB, counting messages: the baseline |
//! | `guarded` | the same SUB behind a connect-side guard, as the subscriber's is |
//! | `subscriber` | the subscriber binary, no shared key |
//! | `subscriber-key` | the subscriber binary, with a shared key (every message tagged) |
//! | `other`, `other-key` | the same, with the binary `--other PATH` names (another build) |
//!
//! The envelopes are built with the wire crate before a round (a `downcase` event of ~90 B
//! per message, the size the publisher sends), so the feeding costs little. PUB drops what a
//! receiver cannot take, so the feeder stays at most [`WINDOW`] events ahead of what the
//! receiver has counted, or the subscriber's log holds (this process counts the log's lines as
//! they appear): the pipe stays full and nothing is lost. Afterwards the subscriber is stopped
//! and every line of its log is checked: each event once, in order, with its own `param`, and
//! no gap line.
//!
//! Columns: events/s; the child's CPU (utime + stime from `/proc`) per event in µs; both as
//! ratios to `raw`; `others`, cores busy with anything else meanwhile (the machine may be
//! shared); the child's resident memory (`VmRSS`) once warmed up and idle, after the round's
//! last event, and its peak (`VmHWM`), in MiB. Medians over rounds, slowest–fastest in
//! brackets. Below the table, per target, what its memory grew per event over the round —
//! run `--events 1000000` for the figures after 1 M events: bounded means this stays near 0
//! whatever the number of events.
//!
//! `cargo bench -p subscriber --bench ingest -- [--events N] [--rounds R]
//! [--targets raw,guarded,subscriber,subscriber-key] [--other PATH] [--perf DIR]` (defaults:
//! 300 000 events, 3 rounds, every target; `other` and `other-key` too with `--other`). `--perf DIR` runs `perf record -g` on each subscriber's measured
//! part, into `DIR/<target>-<round>.data`, for `perf report` (it slows what it records).

use bytes::Bytes;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use test_support::Process;
use tokio::sync::Notify;
use wire::{Broadcast, Codec, Downcase, Event, Heartbeat, Origin, SharedKey};
use zeromq::{PubSocket, Socket, SocketRecv, SocketSend, SubSocket, ZmqMessage};

type Error = Box<dyn std::error::Error>;

/// How far, in events, the feeder may run ahead of what the receiver has taken: well inside
/// PUB's queue of 100 000 messages, and more than the subscriber holds unflushed.
const WINDOW: u64 = 30_000;
/// Longest time without progress before a round is given up.
const STALL: Duration = Duration::from_secs(20);
/// The shared key of `subscriber-key`.
const KEY: &[u8] = b"ingest-bench-shared-key-0123456789";
/// The publisher id in every envelope.
const PUBLISHER: &str = "bench";
/// Set in a child started as a counting SUB: the endpoint to connect to.
const COUNT_ENV: &str = "INGEST_BENCH_COUNT";
/// Set (to anything) in a counting child that connects through a guard.
const GUARDED_ENV: &str = "INGEST_BENCH_GUARDED";
/// Set in a counting child: the events of a round, whose last one it reports.
const EVENTS_ENV: &str = "INGEST_BENCH_EVENTS";

#[derive(Clone, Copy, Debug, PartialEq)]
enum Target {
    Raw,
    Guarded,
    Subscriber,
    SubscriberKey,
    Other,
    OtherKey,
}

impl Target {
    const ALL: [Target; 6] = [
        Target::Raw,
        Target::Guarded,
        Target::Subscriber,
        Target::SubscriberKey,
        Target::Other,
        Target::OtherKey,
    ];

    fn name(self) -> &'static str {
        match self {
            Target::Raw => "raw",
            Target::Guarded => "guarded",
            Target::Subscriber => "subscriber",
            Target::SubscriberKey => "subscriber-key",
            Target::Other => "other",
            Target::OtherKey => "other-key",
        }
    }

    fn keyed(self) -> bool {
        matches!(self, Target::SubscriberKey | Target::OtherKey)
    }

    fn other(self) -> bool {
        matches!(self, Target::Other | Target::OtherKey)
    }
}

/// What to measure.
struct Plan {
    events: u64,
    rounds: usize,
    targets: Vec<Target>,
    other: Option<PathBuf>,
    perf: Option<PathBuf>,
}

impl Plan {
    /// Reads the arguments; `--bench`, which `cargo bench` passes, is ignored.
    fn from_args() -> Result<Plan, Error> {
        let mut plan = Plan {
            events: 300_000,
            rounds: 3,
            targets: Vec::new(),
            other: None,
            perf: None,
        };
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            let mut value = || args.next().ok_or_else(|| format!("{arg} needs a value"));
            match arg.as_str() {
                "--bench" => {}
                "--events" => plan.events = value()?.parse()?,
                "--rounds" => plan.rounds = value()?.parse()?,
                "--perf" => plan.perf = Some(value()?.into()),
                "--other" => plan.other = Some(value()?.into()),
                "--targets" => {
                    let names = value()?;
                    plan.targets = names
                        .split(',')
                        .map(|n| {
                            Target::ALL
                                .into_iter()
                                .find(|t| t.name() == n)
                                .ok_or_else(|| format!("unknown target {n:?}"))
                        })
                        .collect::<Result<_, _>>()?;
                }
                other => return Err(format!("unknown argument {other:?}").into()),
            }
        }
        if plan.targets.is_empty() {
            plan.targets = Target::ALL.to_vec();
            plan.targets.retain(|t| plan.other.is_some() || !t.other());
        }
        if plan.targets.iter().any(|t| t.other()) && plan.other.is_none() {
            return Err("the targets other and other-key need --other PATH".into());
        }
        if plan.rounds == 0 || plan.events == 0 {
            return Err("--rounds and --events must be at least 1".into());
        }
        Ok(plan)
    }
}

/// One round of one target.
#[derive(Debug, Clone, Copy)]
struct Measured {
    events_per_second: f64,
    cpu_us_per_event: f64,
    /// Cores busy with other processes meanwhile.
    others: f64,
    /// The child's resident memory after the warm-up, in KiB.
    rss_idle_kib: f64,
    /// The same after the round's last event.
    rss_after_kib: f64,
    /// The child's peak resident memory, in KiB.
    rss_peak_kib: f64,
}

fn main() -> Result<(), Error> {
    if let Ok(endpoint) = std::env::var(COUNT_ENV) {
        let events = std::env::var(EVENTS_ENV)?.parse()?;
        return count(&endpoint, std::env::var_os(GUARDED_ENV).is_some(), events);
    }
    let plan = Plan::from_args()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let origin = Origin::starting_now(PUBLISHER);
    let plain = messages(&Codec::default(), &origin, plan.events);
    let keyed = messages(&Codec::new(Some(key()?)), &origin, plan.events);
    let size: usize = plain[1].iter().map(Bytes::len).sum();
    let (load, _) = std::fs::read_to_string("/proc/loadavg")?
        .split_once(' ')
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
        .unwrap_or_default();
    println!(
        "{} events of {size} B (+32 B tag with a key) per round, {} interleaved rounds, load {load}",
        plan.events, plan.rounds
    );
    let scratch = tempfile::tempdir()?;
    let mut results: Vec<Vec<Measured>> = vec![Vec::new(); plan.targets.len()];
    for round in 0..plan.rounds {
        let mut order: Vec<usize> = (0..plan.targets.len()).collect();
        if round % 2 == 1 {
            order.reverse();
        }
        for index in order {
            let target = plan.targets[index];
            let messages = if target.keyed() { &keyed } else { &plain };
            let dir = scratch.path().join(format!("{}-{round}", target.name()));
            std::fs::create_dir_all(&dir)?;
            let perf = plan
                .perf
                .as_ref()
                .map(|d| d.join(format!("{}-{round}.data", target.name())));
            let measured = runtime
                .block_on(run(target, &plan, messages, &dir, perf.as_deref()))
                .map_err(|e| format!("{} round {round}: {e}", target.name()))?;
            std::fs::remove_dir_all(&dir)?;
            results[index].push(measured);
        }
    }
    report(&plan.targets, &results, plan.events);
    Ok(())
}

fn key() -> Result<SharedKey, Error> {
    SharedKey::from_bytes(KEY).map_err(|len| format!("a key of {len} B is too short").into())
}

/// Message 0 is the warm-up event (seq 1), then events 2..=events + 1.
fn messages(codec: &Codec, origin: &Origin, events: u64) -> Vec<ZmqMessage> {
    (1..=events + 1)
        .map(|seq| codec.encode(&origin.envelope(seq, event(seq))))
        .collect()
}

fn event(seq: u64) -> Broadcast {
    Broadcast::Event(Event::Downcase(Downcase {
        param: param(seq),
        result: param(seq).to_lowercase(),
    }))
}

fn param(seq: u64) -> String {
    format!("HeLLo-{seq:08}")
}

/// Binds a PUB, starts the target's child, warms it up (until its first message is taken),
/// then feeds the events and measures until all are taken.
async fn run(
    target: Target,
    plan: &Plan,
    messages: &[ZmqMessage],
    dir: &Path,
    perf: Option<&Path>,
) -> Result<Measured, Error> {
    let mut publisher = PubSocket::new();
    let endpoint = publisher.bind("tcp://127.0.0.1:0").await?.to_string();
    let progress = Arc::new(Progress::default());
    let log = dir.join("subscriber.log");
    let child = match target {
        Target::Raw | Target::Guarded => {
            let n = messages.len() as u64 - 1;
            Receiver::Counter(Counter(start_counter(&endpoint, target, n, &progress)?))
        }
        _ => {
            let mut env = vec![
                ("EVENTS_CONNECT", endpoint.clone()),
                ("REPLAY_CONNECT", String::new()),
                ("LOG_FILE", log.display().to_string()),
            ];
            if target.keyed() {
                let key_file = dir.join("shared.key");
                std::fs::write(&key_file, KEY)?;
                env.push(("SHARED_KEY_FILE", key_file.display().to_string()));
            }
            let program = match &plan.other {
                Some(other) if target.other() => other.as_path(),
                _ => Path::new(env!("CARGO_BIN_EXE_subscriber")),
            };
            let process = Process::start(program, dir, &env);
            let tail = tail_lines(log.clone(), Arc::clone(&progress));
            Receiver::Subscriber { process, log, tail }
        }
    };
    // The warm-up: the counting SUB takes heartbeats as such, the subscriber logs event 1 once.
    let warmup = match target {
        Target::Raw | Target::Guarded => Codec::default().encode(
            &Origin {
                id: PUBLISHER.into(),
                epoch: 1,
            }
            .envelope(
                0,
                Broadcast::Heartbeat(Heartbeat {
                    last_seq: 0,
                    replay: false,
                }),
            ),
        ),
        _ => messages[0].clone(),
    };
    let started = Instant::now();
    while progress.taken() == 0 {
        if started.elapsed() > STALL {
            return Err("the receiver never took the warm-up message".into());
        }
        publisher.send(warmup.clone()).await?;
        let _ = tokio::time::timeout(Duration::from_millis(20), progress.notify.notified()).await;
    }
    let pid = child.id();
    let rss_idle_kib = memory_kib(pid, "VmRSS")?;
    let recording = perf.map(|path| record(path, pid)).transpose()?;
    let before = (
        Instant::now(),
        cpu_us(pid)?,
        machine_busy_us()?,
        cpu_us(std::process::id())?,
    );
    let events = &messages[1..];
    for (sent, message) in (0u64..).zip(events) {
        while sent >= progress.done() + WINDOW {
            progress.wait().await?;
        }
        publisher.send(message.clone()).await?;
    }
    let n = events.len() as u64;
    while progress.done() < n {
        progress.wait().await?;
    }
    let (rss_after_kib, rss_peak_kib) = (memory_kib(pid, "VmRSS")?, memory_kib(pid, "VmHWM")?);
    let after = (
        Instant::now(),
        cpu_us(pid)?,
        machine_busy_us()?,
        cpu_us(std::process::id())?,
    );
    if let Some(mut perf) = recording {
        signal(perf.id(), "INT")?;
        perf.wait()?;
    }
    let wall = (after.0 - before.0).as_secs_f64();
    let child_us = after.1 - before.1;
    let others = ((after.2 - before.2) - child_us - (after.3 - before.3)) / 1e6 / wall;
    let finished = child.finish(n);
    progress.stop.store(true, Ordering::Relaxed);
    finished?;
    Ok(Measured {
        events_per_second: n as f64 / wall,
        cpu_us_per_event: child_us / n as f64,
        others: others.max(0.0),
        rss_idle_kib,
        rss_after_kib,
        rss_peak_kib,
    })
}

/// What the receiver has taken, as this process learns it.
#[derive(Default)]
struct Progress {
    /// The warm-up message and the events taken (lines in the log, messages counted).
    taken: AtomicU64,
    notify: Notify,
    stop: AtomicBool,
}

impl Progress {
    fn taken(&self) -> u64 {
        self.taken.load(Ordering::Relaxed)
    }

    /// Events taken, the warm-up message not counted.
    fn done(&self) -> u64 {
        self.taken().saturating_sub(1)
    }

    fn set(&self, taken: u64) {
        self.taken.store(taken, Ordering::Relaxed);
        self.notify.notify_one();
    }

    /// Until the next report of progress; an error after [`STALL`] without one.
    async fn wait(&self) -> Result<(), Error> {
        let before = self.taken();
        tokio::time::timeout(STALL, self.notify.notified())
            .await
            .map_err(|_| format!("no progress for {STALL:?} at {before} taken"))?;
        Ok(())
    }
}

/// A counting SUB, killed when dropped (a failed round leaves nothing behind).
struct Counter(Child);

impl Drop for Counter {
    fn drop(&mut self) {
        // Fails only when it has exited already.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The child that takes the events.
enum Receiver {
    Counter(Counter),
    Subscriber {
        process: Process,
        log: PathBuf,
        /// Counts the log's lines into the progress until it is told to stop.
        tail: std::thread::JoinHandle<()>,
    },
}

impl Receiver {
    fn id(&self) -> u32 {
        match self {
            Receiver::Counter(counter) => counter.0.id(),
            Receiver::Subscriber { process, .. } => process.id(),
        }
    }

    /// Stops the child; for the subscriber, checks that its log holds the warm-up event and
    /// then events 2..=n + 1, each once, in order, and nothing else.
    fn finish(self, n: u64) -> Result<(), Error> {
        match self {
            Receiver::Counter(counter) => {
                drop(counter);
                Ok(())
            }
            Receiver::Subscriber {
                mut process,
                log,
                tail,
            } => {
                signal(process.id(), "TERM")?;
                let started = Instant::now();
                let status = loop {
                    if let Some(status) = process.exited() {
                        break status;
                    }
                    if started.elapsed() > STALL {
                        return Err("the subscriber did not stop after SIGTERM".into());
                    }
                    std::thread::sleep(Duration::from_millis(10));
                };
                if !status.success() {
                    return Err(format!("the subscriber exited with {status}").into());
                }
                let lines = test_support::read_log(&log);
                if lines.len() as u64 != n + 1 {
                    return Err(format!("{} lines in the log, not {}", lines.len(), n + 1).into());
                }
                for (line, seq) in lines.iter().zip(1..) {
                    let own = line.topic == "downcase"
                        && line.publisher == PUBLISHER
                        && line.seq == seq
                        && line.param() == Some(param(seq).as_str());
                    if !own {
                        return Err(format!("line {seq} is not event {seq}: {line:?}").into());
                    }
                }
                drop(tail);
                Ok(())
            }
        }
    }
}

/// Starts this bench binary as a counting SUB connected to `endpoint`; its reports of
/// progress (stdout lines) go into `progress`.
fn start_counter(
    endpoint: &str,
    target: Target,
    events: u64,
    progress: &Arc<Progress>,
) -> Result<Child, Error> {
    let mut command = Command::new(std::env::current_exe()?);
    command
        .env(COUNT_ENV, endpoint)
        .env(EVENTS_ENV, events.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    if target == Target::Guarded {
        command.env(GUARDED_ENV, "1");
    }
    let mut child = command.spawn()?;
    let stdout = child.stdout.take().ok_or("the counter has no stdout")?;
    let progress = Arc::clone(progress);
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(Ok(taken)) = line.map(|l| l.parse::<u64>()) else {
                return;
            };
            progress.set(taken);
        }
    });
    Ok(child)
}

/// Events between two reports of a counting SUB.
const REPORT_EVERY: u64 = 1024;

/// The counting SUB (this binary as a child): takes every message, reports `1` on the first
/// heartbeat (the warm-up) and then 1 + the events taken every [`REPORT_EVERY`] of them and
/// at the round's last, `events`.
fn count(endpoint: &str, guarded: bool, events_per_round: u64) -> Result<(), Error> {
    use std::io::Write;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let limits = guarded.then(|| guard::Limits {
            max_message_bytes: 4 * 1024 * 1024,
            outbound_budget_bytes: Some(1024 * 1024),
            ..guard::Limits::default()
        });
        let guarded = plumbing::guard_remote(endpoint, limits, "events-in").await?;
        let mut socket = SubSocket::new();
        socket.connect(&guarded.endpoint).await?;
        socket.subscribe("").await?;
        let mut out = std::io::stdout().lock();
        let mut events = 0u64;
        let mut warm = false;
        loop {
            let message = socket.recv().await?;
            let beat = message
                .get(0)
                .is_some_and(|t| &t[..] == wire::HEARTBEAT_TOPIC.as_bytes());
            if beat {
                if !warm {
                    warm = true;
                    writeln!(out, "1")?;
                    out.flush()?;
                }
                continue;
            }
            events += 1;
            if events % REPORT_EVERY == 0 || events == events_per_round {
                writeln!(out, "{}", events + 1)?;
                out.flush()?;
            }
        }
    })
}

/// Counts the lines of the log at `path` into `progress` as they appear, until told to stop.
fn tail_lines(path: PathBuf, progress: Arc<Progress>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut lines = 0u64;
        let mut file = None;
        let mut buffer = vec![0u8; 1 << 20];
        while !progress.stop.load(Ordering::Relaxed) {
            let read = match &mut file {
                None => {
                    file = std::fs::File::open(&path).ok();
                    0
                }
                Some(file) => file.read(&mut buffer).unwrap_or(0),
            };
            if read == 0 {
                std::thread::sleep(Duration::from_millis(1));
                continue;
            }
            lines += buffer[..read].iter().filter(|&&b| b == b'\n').count() as u64;
            progress.set(lines);
        }
    })
}

/// utime + stime of process `pid`, in µs.
fn cpu_us(pid: u32) -> Result<f64, Error> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let (_, fields) = stat.rsplit_once(')').ok_or("no ) in /proc/PID/stat")?;
    // After the command: state is field 3, utime 14 and stime 15.
    let fields: Vec<&str> = fields.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>()? + fields[12].parse::<f64>()?;
    Ok(ticks * 1e6 / clock_ticks())
}

/// Clock ticks per second of `/proc`'s times (`getconf CLK_TCK`; 100 on Linux).
fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// The `field` (`VmRSS`, `VmHWM`) of process `pid`'s `/proc` status, in KiB.
fn memory_kib(pid: u32, field: &str) -> Result<f64, Error> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let value = status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .ok_or_else(|| format!("no {field} in /proc/{pid}/status"))?;
    let kib = value.trim().trim_end_matches("kB").trim();
    Ok(kib.parse()?)
}

/// CPU the whole machine spent, neither idle nor waiting for I/O, in µs.
fn machine_busy_us() -> Result<f64, Error> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    let first = stat.lines().next().ok_or("empty /proc/stat")?;
    // user nice system idle iowait irq softirq steal
    let ticks: Vec<f64> = first
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    let busy: f64 = ticks.iter().sum::<f64>() - ticks[3] - ticks[4];
    Ok(busy * 1e6 / clock_ticks())
}

/// `perf record -g` of process `pid` into `path`, until it gets SIGINT.
fn record(path: &Path, pid: u32) -> Result<Child, Error> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let child = Command::new("perf")
        .args(["record", "-g", "-q", "-o"])
        .arg(path)
        .args(["-p", &pid.to_string()])
        .stdin(Stdio::null())
        .spawn()?;
    // perf attaches in a moment; what it misses of the start is a few events of many.
    std::thread::sleep(Duration::from_millis(200));
    Ok(child)
}

fn signal(pid: u32, signal: &str) -> Result<(), Error> {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()?;
    if !status.success() {
        return Err(format!("kill -{signal} {pid} failed").into());
    }
    Ok(())
}

fn report(targets: &[Target], results: &[Vec<Measured>], events: u64) {
    let baseline = targets
        .iter()
        .position(|&t| t == Target::Raw)
        .map(|i| &results[i]);
    let base_rate = baseline.map(|r| median(r, |m| m.events_per_second));
    let base_cpu = baseline.map(|r| median(r, |m| m.cpu_us_per_event));
    println!(
        "{:<15} {:<26} {:>6}  {:<20} {:>6}  {:>6}  {:>20}",
        "target", "events/s", "ratio", "CPU µs/event", "ratio", "others", "RSS MiB idle/after/peak"
    );
    for (target, rounds) in targets.iter().zip(results) {
        let rate = median(rounds, |m| m.events_per_second);
        let cpu = median(rounds, |m| m.cpu_us_per_event);
        let ratio = |value: f64, base: Option<f64>| {
            base.map_or_else(|| "-".to_owned(), |b| format!("{:.2}", value / b))
        };
        let mib = |value: fn(&Measured) -> f64| median(rounds, value) / 1024.0;
        println!(
            "{:<15} {:<26} {:>6}  {:<20} {:>6}  {:>6.2}  {:>20}",
            target.name(),
            spread(rounds, |m| m.events_per_second, 0),
            ratio(rate, base_rate),
            spread(rounds, |m| m.cpu_us_per_event, 2),
            ratio(cpu, base_cpu),
            median(rounds, |m| m.others),
            format!(
                "{:.1} / {:.1} / {:.1}",
                mib(|m| m.rss_idle_kib),
                mib(|m| m.rss_after_kib),
                mib(|m| m.rss_peak_kib)
            )
        );
    }
    for (target, rounds) in targets.iter().zip(results) {
        let grown = median(rounds, |m| m.rss_after_kib - m.rss_idle_kib);
        println!(
            "{}: resident memory {:+.1} MiB over the round, {:+.2} B per event",
            target.name(),
            grown / 1024.0,
            grown * 1024.0 / events as f64
        );
    }
}

fn sorted(rounds: &[Measured], value: impl Fn(&Measured) -> f64) -> Vec<f64> {
    let mut values: Vec<f64> = rounds.iter().map(value).collect();
    values.sort_by(f64::total_cmp);
    values
}

fn median(rounds: &[Measured], value: impl Fn(&Measured) -> f64) -> f64 {
    let values = sorted(rounds, value);
    values[values.len() / 2]
}

/// `median (slowest–fastest)` with `digits` decimals.
fn spread(rounds: &[Measured], value: impl Fn(&Measured) -> f64, digits: usize) -> String {
    let values = sorted(rounds, value);
    let (low, mid, high) = (
        values[0],
        values[values.len() / 2],
        values[values.len() - 1],
    );
    format!("{mid:.digits$} ({low:.digits$}–{high:.digits$})")
}
