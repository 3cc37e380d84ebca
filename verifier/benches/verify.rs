//! How fast the verifier verifies, against OpenSSL on the same machine in the same run.
//!
//! 1. Single core: the verifier's own verification path ([`verifier::verify_task`], the
//!    function every worker thread runs) in a loop, against `openssl speed -seconds 3 -mr
//!    rsa2048` verify/s. `openssl speed` counts CPU time, so this loop is timed by the CPU
//!    time of its thread too (wall-clock figures are printed beside it). Target ratio ≥ 0.8.
//! 2. The worker pool: the same tasks, and empty jobs, through the dedicated-thread [`Pool`]
//!    and through tokio's `spawn_blocking` with as many threads, submitted from async code and
//!    collected over a channel as a link does. The empty jobs show the hand-off cost per task.
//!
//! Run with `cargo bench -p verifier`.

use std::hint::black_box;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};
use test_support::openssl::KeyFolder;
use verifier::{KeyRing, Pool, verify_task};
use wire::{SignatureStatus, VerifyTask};

/// How long the single-core loop runs (as long as `openssl speed -seconds 3`).
const SINGLE_CORE_TIME: Duration = Duration::from_secs(3);
/// Verifications pushed through each pool variant.
const POOL_VERIFICATIONS: usize = 60_000;
/// Empty jobs pushed through each pool variant.
const POOL_EMPTY_JOBS: usize = 200_000;

fn main() {
    let folder = KeyFolder::new();
    let private = folder.key("bench");
    let keys = Arc::new(KeyRing::load(&folder.keys_dir()).expect("the bench key loads"));
    let document = b"The quick brown fox jumps over the lazy dog; a typical short document.";
    let task = Arc::new(VerifyTask {
        task_id: 1,
        key: "bench".into(),
        sha256: wire::sha256(document),
        signature: folder.sign(&private, document),
        attempt: 1,
    });
    assert_eq!(verify_task(&keys, &task).status, SignatureStatus::Valid);

    println!("== single core, RSA-2048, PKCS#1 v1.5 / SHA-256 verify ==");
    let ours = single_core(&keys, &task);
    println!(
        "verifier::verify_task       {:>9.0} verify/s (thread CPU time; {:.0}/s wall clock)",
        ours.per_cpu_second, ours.per_wall_second
    );
    match openssl_speed() {
        Ok(openssl) => {
            println!("openssl speed rsa2048       {openssl:>9.0} verify/s (CPU time)");
            println!(
                "ratio verifier / openssl    {:>9.2}   (target >= 0.80)",
                ours.per_cpu_second / openssl
            );
        }
        Err(why) => println!("openssl speed: not measured ({why})"),
    }

    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("\n== worker pool, {workers} threads, submitted from async code ==");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .max_blocking_threads(workers)
        .enable_all()
        .build()
        .expect("a runtime");
    let verify = {
        let (keys, task) = (Arc::clone(&keys), Arc::clone(&task));
        move || verify_task(&keys, &task).status == SignatureStatus::Valid
    };
    let pool = Pool::new(workers).expect("pool threads start");
    let pooled = runtime.block_on(through_pool(&pool, POOL_VERIFICATIONS, verify.clone()));
    let blocking = runtime.block_on(through_spawn_blocking(POOL_VERIFICATIONS, verify));
    println!(
        "verifications/s             pool {:>9.0}   spawn_blocking {:>9.0}",
        POOL_VERIFICATIONS as f64 / pooled.as_secs_f64(),
        POOL_VERIFICATIONS as f64 / blocking.as_secs_f64()
    );
    let pooled = runtime.block_on(through_pool(&pool, POOL_EMPTY_JOBS, || true));
    let blocking = runtime.block_on(through_spawn_blocking(POOL_EMPTY_JOBS, || true));
    println!(
        "hand-off per empty job      pool {:>7.2} µs   spawn_blocking {:>7.2} µs",
        pooled.as_secs_f64() * 1e6 / POOL_EMPTY_JOBS as f64,
        blocking.as_secs_f64() * 1e6 / POOL_EMPTY_JOBS as f64
    );
    pool.shutdown();
}

struct Rate {
    per_cpu_second: f64,
    per_wall_second: f64,
}

/// Runs the verification path on this thread for [`SINGLE_CORE_TIME`] of wall time.
fn single_core(keys: &KeyRing, task: &VerifyTask) -> Rate {
    // Warm-up: caches, page faults, CPU frequency.
    let warm_up = Instant::now();
    while warm_up.elapsed() < Duration::from_millis(300) {
        black_box(verify_task(keys, black_box(task)));
    }
    let (wall_start, cpu_start) = (Instant::now(), thread_cpu_time());
    let mut count: u64 = 0;
    while wall_start.elapsed() < SINGLE_CORE_TIME {
        for _ in 0..100 {
            black_box(verify_task(keys, black_box(task)));
        }
        count += 100;
    }
    let wall = wall_start.elapsed().as_secs_f64();
    let cpu = (thread_cpu_time() - cpu_start).as_secs_f64();
    Rate {
        per_cpu_second: count as f64 / cpu,
        per_wall_second: count as f64 / wall,
    }
}

/// CPU time of the calling thread, from the scheduler's own count (nanoseconds).
fn thread_cpu_time() -> Duration {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .map(Duration::from_nanos)
        .expect("/proc/thread-self/schedstat is readable (Linux)")
}

/// Verify/s of `openssl speed -seconds 3 -mr rsa2048`, from its `+F2:<n>:2048:<sign/s>:<verify/s>`
/// line.
fn openssl_speed() -> Result<f64, String> {
    let output = Command::new("openssl")
        .args(["speed", "-seconds", "3", "-mr", "rsa2048"])
        .output()
        .map_err(|e| format!("cannot run openssl: {e}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    stdout
        .lines()
        .filter_map(|line| line.strip_prefix("+F2:"))
        .map(|rest| rest.split(':').collect::<Vec<_>>())
        .find(|fields| fields.get(1) == Some(&"2048"))
        .and_then(|fields| fields.get(3)?.parse().ok())
        .ok_or_else(|| format!("no +F2 line for 2048 bits in its output:\n{stdout}"))
}

/// Submits `jobs` jobs to the pool and waits for all their answers, as a link does.
async fn through_pool(
    pool: &Pool,
    jobs: usize,
    job: impl Fn() -> bool + Clone + Send + 'static,
) -> Duration {
    let started = Instant::now();
    let (done, mut answers) = tokio::sync::mpsc::unbounded_channel();
    for _ in 0..jobs {
        let (job, done) = (job.clone(), done.clone());
        pool.execute(move || {
            let _ = done.send(job());
        });
    }
    for _ in 0..jobs {
        assert_eq!(answers.recv().await, Some(true));
    }
    started.elapsed()
}

/// The same through `tokio::task::spawn_blocking` (the runtime caps its blocking threads).
async fn through_spawn_blocking(
    jobs: usize,
    job: impl Fn() -> bool + Clone + Send + 'static,
) -> Duration {
    let started = Instant::now();
    let (done, mut answers) = tokio::sync::mpsc::unbounded_channel();
    for _ in 0..jobs {
        let (job, done) = (job.clone(), done.clone());
        tokio::task::spawn_blocking(move || {
            let _ = done.send(job());
        });
    }
    for _ in 0..jobs {
        assert_eq!(answers.recv().await, Some(true));
    }
    started.elapsed()
}
