//! The `verifier` binary: parse flags, log to stderr, verify until SIGTERM or Ctrl-C.
//! `verifier healthcheck` asks a running one's `/healthz`.

use anyhow::Context;
use clap::Parser;
use plumbing::health::Command;

#[tokio::main]
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
