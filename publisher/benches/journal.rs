//! Events through the journal alone: the writer task fed as fast as its queue takes events
//! (every batch shares one `fdatasync`), and fed one event at a time, each waited for (one
//! `fdatasync` per event, as a single client would see it), against bare `write` +
//! `fdatasync` of the same size measured in the same run.
//!
//! `cargo bench -p publisher --bench journal -- [--events N] [--dir PATH]` (default: 200 000
//! events, in a temporary directory under the target directory).

use publisher::journal::writer::{self, Durable, Entry, Files};
use publisher::journal::{Settings, SyncPolicy};
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use wire::{Broadcast, Downcase, Event, Origin};

fn event(origin: &Origin, seq: u64) -> Entry {
    let body = Broadcast::Event(Event::Downcase(Downcase {
        param: format!("HeLLo-{seq:08}"),
        result: format!("hello-{seq:08}"),
    }));
    Entry {
        envelope: origin.envelope(seq, body),
        accepted: None,
    }
}

/// Events per second of one run.
fn rate(events: u64, started: Instant) -> f64 {
    events as f64 / started.elapsed().as_secs_f64()
}

/// Feeds `n` events to a journal in `dir` with `sync`; `one_by_one` waits for each.
async fn through_journal(dir: &Path, n: u64, sync: SyncPolicy, one_by_one: bool) -> f64 {
    let origin = Origin::starting_now("bench");
    let settings = Settings {
        dir: dir.to_owned(),
        sync,
        max_bytes: u64::MAX,
        max_age: Duration::from_secs(86_400),
        segment_bytes: 64 * 1024 * 1024,
    };
    std::fs::create_dir_all(dir).expect("the journal directory");
    let files = Files::new(settings, &origin, Vec::new());
    let (queue, entries) = mpsc::channel(8192);
    let (durable_tx, mut durable) = watch::channel(Durable::default());
    let (forward, mut sent) = mpsc::channel(8192);
    let drain = tokio::spawn(async move { while sent.recv().await.is_some() {} });
    let writer = tokio::spawn(writer::run(files, entries, durable_tx, forward));
    let started = Instant::now();
    for seq in 1..=n {
        queue
            .send(event(&origin, seq))
            .await
            .expect("the writer runs");
        if one_by_one {
            durable.wait_for(|d| d.seq >= seq).await.expect("written");
        }
    }
    durable.wait_for(|d| d.seq >= n).await.expect("written");
    let events_per_second = rate(n, started);
    drop(queue);
    writer.await.expect("the writer ends");
    drain.await.expect("the drain ends");
    events_per_second
}

/// Bare appends of `record` bytes, each followed by `fdatasync`.
fn bare_fdatasync(dir: &Path, n: u64, record: usize) -> f64 {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("bare"))
        .expect("a file");
    let bytes = vec![7u8; record];
    let started = Instant::now();
    for _ in 0..n {
        file.write_all(&bytes).expect("written");
        file.sync_data().expect("synced");
    }
    rate(n, started)
}

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    let at = args.iter().position(|a| a == name)?;
    args.get(at + 1).cloned()
}

#[tokio::main]
async fn main() {
    let n: u64 = arg("--events")
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let scratch = match arg("--dir") {
        Some(dir) => tempfile::tempdir_in(dir),
        None => tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")),
    }
    .expect("a scratch directory");
    let single = (n / 50).max(200);
    let bare = bare_fdatasync(scratch.path(), single, 120);
    let dir = |name: &str| scratch.path().join(name);
    let one = through_journal(&dir("one"), single, SyncPolicy::Always, true).await;
    let grouped = through_journal(&dir("grouped"), n, SyncPolicy::Always, false).await;
    let never = through_journal(&dir("never"), n, SyncPolicy::Never, false).await;
    println!(
        "journal alone, events of about 120 bytes, in {}",
        scratch.path().display()
    );
    println!("  bare write + fdatasync, one at a time:  {bare:>10.0} /s");
    println!(
        "  journal, always, one event at a time:   {one:>10.0} events/s  ({:.2} of bare fdatasync)",
        one / bare
    );
    println!(
        "  journal, always, as fast as it takes:   {grouped:>10.0} events/s  ({:.1}x bare fdatasync)",
        grouped / bare
    );
    println!("  journal, never (no fdatasync):          {never:>10.0} events/s");
    println!(
        "BENCH {{\"bare_fdatasync_s\": {bare:.0}, \"one_by_one_events_s\": {one:.0}, \
         \"grouped_events_s\": {grouped:.0}, \"never_events_s\": {never:.0}}}"
    );
}
