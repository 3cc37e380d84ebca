//! The latency benchmark's client (`python3 bench/latency.py`): an open-loop load at a fixed
//! rate of `GET /downcase?param=<prefix><i>`, request `i` sent at `start + i / rate` whatever
//! the answers before it did, over keep-alive connections — and, in the same process and on the
//! same clock, a reader following the subscriber's log as it grows, noting when each param's
//! line appears. Prints one `BENCH {json}` line: percentiles of (line seen − sent), of the HTTP
//! answer time and of the pacing error, every event accounted for.
//!
//! Plain threads and blocking sockets rather than an async runtime: a thread's sleep ends
//! within tens of microseconds, where tokio's timer counts whole milliseconds. Connection `k`
//! sends requests `k, k + c, k + 2c …`; one that is still waiting for an answer when its next
//! request is due sends it late, and the lateness is reported (`lag`).
//!
//! The reader polls the file (no inotify): it reads what was appended, and when nothing was,
//! sleeps `--poll-us`. A line is seen at most one poll period (plus the read) after it was
//! written; the measured period is reported (`poll_us`).

use clap::Parser;
use serde_json::json;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Quantiles printed for each distribution, also drawn by `bench/plot.py`.
const QUANTILES: [f64; 9] = [0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 0.999, 1.0];

#[derive(Parser)]
struct Args {
    /// The publisher's HTTP address (host:port).
    #[arg(long, env = "HTTP_ADDR")]
    addr: String,
    /// The subscriber's log file to follow.
    #[arg(long, env = "LOG_FILE")]
    log: PathBuf,
    /// Requests per second.
    #[arg(long, env = "RATE")]
    rate: f64,
    /// Seconds of load.
    #[arg(long, env = "SECONDS", default_value_t = 5.0)]
    seconds: f64,
    /// Keep-alive connections, one thread each.
    #[arg(long, env = "CONNECTIONS", default_value_t = 32)]
    connections: usize,
    /// What every param starts with (unique per run).
    #[arg(long, env = "PREFIX", default_value = "lat-")]
    prefix: String,
    /// The reader's sleep when the log has not grown, in microseconds.
    #[arg(long, env = "POLL_US", default_value_t = 50)]
    poll_us: u64,
    /// Seconds to wait after the load for the last lines.
    #[arg(long, env = "SETTLE_SECONDS", default_value_t = 10.0)]
    settle_seconds: f64,
}

/// Nanoseconds since the run's start per request; 0: not yet.
struct Times(Vec<AtomicU64>);

impl Times {
    fn new(n: usize) -> Self {
        Times((0..n).map(|_| AtomicU64::new(0)).collect())
    }

    fn set(&self, i: usize, start: Instant) {
        // Never 0, which means "not yet".
        let ns = start.elapsed().as_nanos().max(1) as u64;
        self.0[i].store(ns, Ordering::Release);
    }

    fn get(&self, i: usize) -> Option<u64> {
        Some(self.0[i].load(Ordering::Acquire)).filter(|&ns| ns != 0)
    }
}

struct Run {
    start: Instant,
    sent: Times,
    answered: Times,
    seen: Times,
    /// Nanoseconds each request went out after its due time.
    lag: Vec<AtomicU64>,
    failures: AtomicU64,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let n = (args.rate * args.seconds).round() as usize;
    let run = Arc::new(Run {
        start: Instant::now() + Duration::from_millis(200),
        sent: Times::new(n),
        answered: Times::new(n),
        seen: Times::new(n),
        lag: (0..n).map(|_| AtomicU64::new(0)).collect(),
        failures: AtomicU64::new(0),
    });
    let mut log = File::open(&args.log)?;
    log.seek(SeekFrom::End(0))?;
    let reader = {
        let (run, prefix) = (Arc::clone(&run), args.prefix.clone());
        let (poll, settle) = (
            Duration::from_micros(args.poll_us),
            Duration::from_secs_f64(args.seconds + args.settle_seconds),
        );
        std::thread::spawn(move || follow(log, &run, &prefix, poll, settle))
    };
    let senders: Vec<_> = (0..args.connections)
        .map(|k| {
            let (run, addr, prefix) = (Arc::clone(&run), args.addr.clone(), args.prefix.clone());
            let (rate, c) = (args.rate, args.connections);
            std::thread::spawn(move || send(&run, &addr, &prefix, k, c, rate, n))
        })
        .collect();
    for sender in senders {
        if let Err(e) = sender.join().expect("a sender thread panicked") {
            eprintln!("paced_load: connection failed: {e:#}");
            run.failures.fetch_add(1, Ordering::Relaxed);
        }
    }
    let polls = reader.join().expect("the reader thread panicked")?;
    println!("BENCH {}", summary(&run, &args, n, polls));
    Ok(())
}

/// One connection's share: requests `k, k + c, …` each at its due time.
fn send(
    run: &Run,
    addr: &str,
    prefix: &str,
    k: usize,
    c: usize,
    rate: f64,
    n: usize,
) -> anyhow::Result<()> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_nodelay(true)?;
    let mut buf = Vec::with_capacity(4096);
    for i in (k..n).step_by(c) {
        let due = run.start + Duration::from_secs_f64(i as f64 / rate);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let request = format!("GET /downcase?param={prefix}{i} HTTP/1.1\r\nHost: {addr}\r\n\r\n");
        run.sent.set(i, run.start);
        run.lag[i].store(
            Instant::now().saturating_duration_since(due).as_nanos() as u64,
            Ordering::Relaxed,
        );
        stream.write_all(request.as_bytes())?;
        if read_answer(&mut stream, &mut buf)? {
            run.answered.set(i, run.start);
        } else {
            run.failures.fetch_add(1, Ordering::Relaxed);
        }
    }
    Ok(())
}

/// Reads one HTTP/1.1 answer (headers, then Content-Length bytes); true for a 200.
fn read_answer(stream: &mut TcpStream, buf: &mut Vec<u8>) -> anyhow::Result<bool> {
    buf.clear();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = std::str::from_utf8(&buf[..end])?;
            let length: usize = head
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse().ok())?
                })
                .ok_or_else(|| anyhow::anyhow!("an answer without Content-Length"))?;
            let ok = head.starts_with("HTTP/1.1 200");
            while buf.len() < end + 4 + length {
                let got = stream.read(&mut chunk)?;
                anyhow::ensure!(got > 0, "connection closed mid-answer");
                buf.extend_from_slice(&chunk[..got]);
            }
            return Ok(ok);
        }
        let got = stream.read(&mut chunk)?;
        anyhow::ensure!(got > 0, "connection closed before an answer");
        buf.extend_from_slice(&chunk[..got]);
    }
}

/// Follows the log until every request's line is seen or `until` has passed since the start;
/// returns the measured poll periods (ns) of the sleeps it took.
fn follow(
    mut log: File,
    run: &Run,
    prefix: &str,
    poll: Duration,
    until: Duration,
) -> anyhow::Result<Vec<u64>> {
    let needle = format!("param=\"{prefix}");
    let n = run.seen.0.len();
    let (mut pending, mut seen) = (Vec::<u8>::new(), 0usize);
    let mut chunk = vec![0u8; 1 << 16];
    let mut polls = Vec::new();
    while seen < n && run.start.elapsed() < until {
        let got = log.read(&mut chunk)?;
        if got == 0 {
            let before = Instant::now();
            std::thread::sleep(poll);
            polls.push(before.elapsed().as_nanos() as u64);
            continue;
        }
        pending.extend_from_slice(&chunk[..got]);
        let complete = pending
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |p| p + 1);
        for line in pending[..complete].split(|&b| b == b'\n') {
            let Some(i) = index(line, needle.as_bytes()) else {
                continue;
            };
            if i < n && run.seen.get(i).is_none() {
                run.seen.set(i, run.start);
                seen += 1;
            }
        }
        pending.drain(..complete);
    }
    Ok(polls)
}

/// The request number in a line holding `param="<prefix><i>"`.
fn index(line: &[u8], needle: &[u8]) -> Option<usize> {
    let at = line.windows(needle.len()).position(|w| w == needle)? + needle.len();
    let digits = line[at..].iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&line[at..at + digits])
        .ok()?
        .parse()
        .ok()
}

/// Quantiles (ms) of `values` (ns), by nearest rank.
fn quantiles(mut values: Vec<u64>) -> serde_json::Value {
    values.sort_unstable();
    let at = |q: f64| {
        let rank = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len().max(1));
        values.get(rank - 1).map_or(0.0, |&ns| ns as f64 / 1e6)
    };
    json!({
        "quantiles": QUANTILES,
        "ms": QUANTILES.map(at),
        "p50_ms": at(0.5), "p99_ms": at(0.99), "p999_ms": at(0.999), "max_ms": at(1.0),
        "mean_ms": values.iter().sum::<u64>() as f64 / values.len().max(1) as f64 / 1e6,
    })
}

fn summary(run: &Run, args: &Args, n: usize, polls: Vec<u64>) -> serde_json::Value {
    let pairs = |to: &Times| -> Vec<u64> {
        (0..n)
            .filter_map(|i| Some(to.get(i)?.saturating_sub(run.sent.get(i)?)))
            .collect()
    };
    let line = pairs(&run.seen);
    let answer = pairs(&run.answered);
    let lag: Vec<u64> = run.lag.iter().map(|l| l.load(Ordering::Relaxed)).collect();
    let sent = (0..n).filter(|&i| run.sent.get(i).is_some()).count();
    let last = (0..n).filter_map(|i| run.sent.get(i)).max().unwrap_or(0);
    json!({
        "rate": args.rate, "connections": args.connections, "requests": n, "sent": sent,
        "answered": answer.len(), "logged": line.len(), "missing": n - line.len(),
        "failures": run.failures.load(Ordering::Relaxed),
        "achieved_rate": sent as f64 / (last as f64 / 1e9).max(1e-9),
        "line": quantiles(line), "answer": quantiles(answer), "lag": quantiles(lag),
        "poll_us": {
            "set": args.poll_us,
            "mean": polls.iter().sum::<u64>() as f64 / polls.len().max(1) as f64 / 1e3,
            "p99": quantiles(polls)["p99_ms"].as_f64().unwrap_or(0.0) * 1e3,
        },
    })
}
