//! The `verifier` binary: parse flags, log to stderr, verify until SIGTERM or Ctrl-C.
//! `verifier healthcheck` asks a running one's `/healthz`.

use anyhow::Context;
use clap::Parser;
use plumbing::health::Command;

// mimalloc, not the system's malloc: README, "Where a signature request's time goes".
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

// One runtime thread: the verifier's async side moves bytes (its sockets, their guards, the
// link) and verifies the tasks that arrive a few at a time; only what queues beyond goes to the
// pool's threads. On one thread the link, the ZMQ library's reader and writer and the guards
// hand messages to each other without waking another thread, and what queues while one runs
// goes out in one write (`bench/signatures.py`: the verifier's CPU per request beyond the RSA
// arithmetic).
#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let config = verifier::Config::parse();
    if let Some(Command::Healthcheck(check)) = &config.command {
        return check.run(&config.health_addr);
    }
    config.common.init_tracing();
    verifier::run(config, plumbing::shutdown_signal())
        .await
        .context("verifier failed")
}
