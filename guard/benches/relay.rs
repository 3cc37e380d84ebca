//! What the guard costs: messages per second over loopback, straight to the zeromq socket and
//! through a bind-side guard, measured in the same run in interleaved rounds, with the ratio.
//!
//! - PUB→SUB (the events path): the guard's outbound pump, PUB bound behind the guard.
//! - PUSH→PULL (the results path): the guard's inbound inspector, PULL bound behind the guard.
//!
//! PUB drops what a subscriber cannot take, so the publisher here stays at most [`WINDOW_BYTES`]
//! bytes ahead of what the subscriber has received: the pipe stays full and nothing is
//! lost. Run with `cargo bench -p guard`.
//!
//! Arguments (after `--`) pick a part of it, for a driver that needs one baseline:
//! `--sizes 100,1024` (bytes, one frame each), `--paths pub-sub,push-pull`, `--rounds 3`, and
//! `--json`, which adds a line `BENCH {"path": .., "size": .., "direct": [..], "guarded": [..]}`
//! (messages/s of each round) after each row. `bench/replay.py` runs
//! `--paths pub-sub --sizes <its event size> --json` for its raw PUB→SUB rate.

use guard::{Guard, InnerAddr, Limits};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use zeromq::{Socket, SocketRecv, SocketSend, ZmqMessage};

const SIZES: [usize; 2] = [32, 1024];
const ROUNDS: usize = 5;
const PATHS: [Path; 2] = [Path::PubSub, Path::PushPull];
/// How long each measurement receives.
const MEASURE: Duration = Duration::from_millis(1500);
/// How far, in bytes, the publisher may run ahead of the subscriber: well inside the
/// guard's default outbound budget (8 MiB), which would otherwise cut the subscriber as a
/// slow peer, and inside PUB's own queue of 100 000 messages.
const WINDOW_BYTES: usize = 2 * 1024 * 1024;

type Error = Box<dyn std::error::Error>;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Path {
    PubSub,
    PushPull,
}

impl Path {
    fn name(self) -> &'static str {
        match self {
            Path::PubSub => "PUB→SUB",
            Path::PushPull => "PUSH→PULL",
        }
    }
}

/// What to measure: everything by default, or the part the arguments name.
struct Plan {
    paths: Vec<Path>,
    sizes: Vec<usize>,
    rounds: usize,
    json: bool,
}

impl Plan {
    /// Reads the arguments; `--bench`, which `cargo bench` passes, is ignored.
    fn from_args() -> Result<Plan, Error> {
        let mut plan = Plan {
            paths: PATHS.to_vec(),
            sizes: SIZES.to_vec(),
            rounds: ROUNDS,
            json: false,
        };
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            let mut value = || args.next().ok_or_else(|| format!("{arg} needs a value"));
            match arg.as_str() {
                "--bench" => {}
                "--json" => plan.json = true,
                "--rounds" => plan.rounds = value()?.parse()?,
                "--sizes" => {
                    plan.sizes = value()?
                        .split(',')
                        .map(str::parse)
                        .collect::<Result<_, _>>()?;
                }
                "--paths" => {
                    plan.paths = value()?
                        .split(',')
                        .map(|p| match p {
                            "pub-sub" => Ok(Path::PubSub),
                            "push-pull" => Ok(Path::PushPull),
                            other => Err(format!("unknown path {other:?}")),
                        })
                        .collect::<Result<_, _>>()?;
                }
                other => return Err(format!("unknown argument {other:?}").into()),
            }
        }
        if plan.rounds == 0 || plan.sizes.contains(&0) {
            return Err("--rounds and every size must be at least 1".into());
        }
        Ok(plan)
    }
}

fn main() -> Result<(), Error> {
    let plan = Plan::from_args()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let rounds = plan.rounds;
        println!("messages/s, median of {rounds} interleaved rounds (slowest–fastest)");
        println!(
            "{:<10} {:>6}  {:<26} {:<26} {:>5}",
            "path", "size", "direct", "guarded", "ratio"
        );
        for &path in &plan.paths {
            for &size in &plan.sizes {
                let mut direct = Vec::new();
                let mut guarded = Vec::new();
                for _ in 0..rounds {
                    for (guard, rates) in [(false, &mut direct), (true, &mut guarded)] {
                        let rate = measure(path, size, guard)
                            .await
                            .map_err(|e| format!("{path:?} {size} B guarded={guard}: {e}"))?;
                        rates.push(rate);
                    }
                }
                println!(
                    "{:<10} {:>6}  {:<26} {:<26} {:>5.2}",
                    path.name(),
                    format!("{size} B"),
                    spread(&direct),
                    spread(&guarded),
                    median(&guarded) / median(&direct)
                );
                if plan.json {
                    println!(
                        "BENCH {{\"path\": \"{}\", \"size\": {size}, \"direct\": {}, \"guarded\": {}}}",
                        path.name(),
                        list(&direct),
                        list(&guarded)
                    );
                }
            }
        }
        Ok(())
    })
}

fn sorted(rates: &[f64]) -> Vec<f64> {
    let mut rates = rates.to_vec();
    rates.sort_by(f64::total_cmp);
    rates
}

fn median(rates: &[f64]) -> f64 {
    let rates = sorted(rates);
    rates[rates.len() / 2]
}

/// `[r1, r2, ..]`, whole messages per second: a JSON array.
fn list(rates: &[f64]) -> String {
    let rates: Vec<String> = rates.iter().map(|r| format!("{r:.0}")).collect();
    format!("[{}]", rates.join(", "))
}

/// `median (slowest–fastest)`, in messages per second.
fn spread(rates: &[f64]) -> String {
    let all = sorted(rates);
    let (low, high) = (all[0], all[all.len() - 1]);
    format!("{:.0} ({low:.0}–{high:.0})", median(rates))
}

/// Messages per second received over one [`MEASURE`] period.
async fn measure(path: Path, size: usize, guarded: bool) -> Result<f64, Error> {
    match path {
        Path::PubSub => pub_sub(size, guarded).await,
        Path::PushPull => push_pull(size, guarded).await,
    }
}

/// Binds `socket` on loopback TCP, or when `guarded` on an internal address behind a guard
/// listening on loopback TCP; says where to connect.
async fn front(socket: &mut impl Socket, guarded: bool) -> Result<(String, Option<Guard>), Error> {
    if !guarded {
        return Ok((socket.bind("tcp://127.0.0.1:0").await?.to_string(), None));
    }
    let inner = InnerAddr::new("bench");
    socket.bind(&inner.endpoint()).await?;
    let guard = Guard::bind("127.0.0.1:0", &inner, Limits::default(), "bench").await?;
    Ok((guard.local_endpoint(), Some(guard)))
}

async fn pub_sub(size: usize, guarded: bool) -> Result<f64, Error> {
    let mut publisher = zeromq::PubSocket::new();
    let (endpoint, _guard) = front(&mut publisher, guarded).await?;
    let mut subscriber = zeromq::SubSocket::new();
    subscriber.connect(&endpoint).await?;
    subscriber.subscribe("").await?;
    // Until the subscription has reached the PUB, what it sends is dropped.
    loop {
        publisher.send(ZmqMessage::from(vec![0; size])).await?;
        if tokio::time::timeout(Duration::from_millis(20), subscriber.recv())
            .await
            .is_ok()
        {
            break;
        }
    }

    let received = Arc::new(AtomicU64::new(0));
    let progress = Arc::new(Notify::new());
    let sender = tokio::spawn({
        let (received, progress) = (Arc::clone(&received), Arc::clone(&progress));
        async move {
            let message = ZmqMessage::from(vec![b'x'; size]);
            let window = (WINDOW_BYTES / size).min(50_000) as u64;
            let mut sent = 0u64;
            loop {
                while sent.saturating_sub(received.load(Ordering::Relaxed)) >= window {
                    progress.notified().await;
                }
                if publisher.send(message.clone()).await.is_err() {
                    return;
                }
                sent += 1;
            }
        }
    });
    let rate = count_for(&mut subscriber, |n| {
        received.store(n, Ordering::Relaxed);
        if n % 256 == 0 {
            progress.notify_one();
        }
    })
    .await;
    sender.abort();
    rate
}

async fn push_pull(size: usize, guarded: bool) -> Result<f64, Error> {
    let mut pull = zeromq::PullSocket::new();
    let (endpoint, _guard) = front(&mut pull, guarded).await?;
    let mut push = zeromq::PushSocket::new();
    push.connect(&endpoint).await?;
    // PUSH waits for room, so it needs no window of its own.
    let sender = tokio::spawn(async move {
        let message = ZmqMessage::from(vec![b'x'; size]);
        while push.send(message.clone()).await.is_ok() {}
    });
    pull.recv().await?;
    let rate = count_for(&mut pull, |_| {}).await;
    sender.abort();
    rate
}

/// Receives for [`MEASURE`] and returns messages per second; `on_count` sees each running
/// total.
async fn count_for(
    socket: &mut impl SocketRecv,
    mut on_count: impl FnMut(u64),
) -> Result<f64, Error> {
    let start = Instant::now();
    let mut count = 0u64;
    while start.elapsed() < MEASURE {
        socket.recv().await?;
        count += 1;
        on_count(count);
    }
    Ok(count as f64 / start.elapsed().as_secs_f64())
}
