//! The replay benchmark's event source (`python3 bench/replay.py`, its `live` run): the
//! publisher's own publishing path — a [`Publisher`] bound and run as the `publisher` binary
//! does, configured from the same environment — with no HTTP in front. Tasks publish
//! `/downcase` events through [`publisher::Events`] as fast as the path takes them, so what
//! reaches `subscriber.log` measures publisher → subscriber → log, not the HTTP front (which,
//! with wrk on the same cores, takes ten times the CPU per event).
//!
//! Driven over stdin, one command per line:
//! - `warm NAME`: publishes one event whose param is `warmup-NAME`;
//! - `flood N`: `--tasks` tasks publish N events between them, params `<task>-<i, 7 digits>`
//!   (the size of bench/replay.py's wrk params), then prints one line
//!   `BENCH {"events": N, "seconds": S, "first_seq": A, "last_seq": B}`: S is the time until
//!   the last of them was on the publishing path, A..=B their sequence numbers.
//!
//! End of input stops the publisher as SIGTERM does: every event queued goes out first.

use anyhow::Context;
use clap::Parser;
use publisher::{Config, Events, Publisher};
use serde_json::json;
use std::io::{BufRead, Write};
use std::time::Instant;
use wire::{Downcase, Event};

// mimalloc, not the system's malloc: README, "Where a signature request's time goes".
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
struct Args {
    /// Tasks publishing at once (1–9: a param is `<task>-<7 digits>`).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=9))]
    tasks: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // The publisher's own settings come from the environment alone, as in a container.
    let config = Config::parse_from(["publisher"]);
    config.common.init_tracing();
    let publisher = Publisher::bind(config).await?;
    let events = publisher.events();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(publisher.run(async {
        let _ = stopped.await;
    }));

    let (lines_tx, mut lines) = tokio::sync::mpsc::channel::<String>(16);
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if lines_tx.blocking_send(line).is_err() {
                break;
            }
        }
    });
    while let Some(line) = lines.recv().await {
        match line.trim().split_once(' ') {
            Some(("warm", name)) => {
                events.publish(downcase(format!("warmup-{name}"))).await?;
            }
            Some(("flood", count)) => {
                let count = count
                    .parse()
                    .with_context(|| format!("flood takes a count, not {count:?}"))?;
                let report = flood(&events, args.tasks, count).await?;
                let mut stdout = std::io::stdout().lock();
                writeln!(stdout, "BENCH {report}")?;
                stdout.flush()?;
            }
            _ => anyhow::bail!("unknown command {line:?} (warm NAME, flood N)"),
        }
    }
    // The run ends once every handle on the publishing path is gone.
    drop(events);
    let _ = stop.send(());
    running.await.context("the publisher task failed")?
}

/// Publishes `count` events from `tasks` tasks; reports the time taken and their numbers.
async fn flood(events: &Events, tasks: u64, count: u64) -> anyhow::Result<serde_json::Value> {
    let started = Instant::now();
    let publishing: Vec<_> = (1..=tasks)
        .map(|task| {
            let events = events.clone();
            // Task t publishes the t-th share, the first ones one more when it does not divide.
            let share = count / tasks + u64::from(task <= count % tasks);
            tokio::spawn(async move {
                let (mut first, mut last) = (u64::MAX, 0);
                for i in 1..=share {
                    let seq = events
                        .publish(downcase(format!("{task}-{i:07}")))
                        .await?
                        .seq;
                    (first, last) = (first.min(seq), last.max(seq));
                }
                anyhow::Ok((first, last))
            })
        })
        .collect();
    let (mut first, mut last) = (u64::MAX, 0);
    for task in publishing {
        let (a, b) = task.await.context("a publishing task failed")??;
        (first, last) = (first.min(a), last.max(b));
    }
    Ok(json!({
        "events": count,
        "seconds": started.elapsed().as_secs_f64(),
        "first_seq": first,
        "last_seq": last,
    }))
}

/// The event `GET /downcase?param=…` publishes.
fn downcase(param: String) -> Event {
    let result = param.to_lowercase();
    Event::Downcase(Downcase { param, result })
}
