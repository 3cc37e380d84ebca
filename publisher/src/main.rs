//! `publisher`: the HTTP front service. Parses its configuration and runs until SIGTERM/Ctrl-C.

use clap::Parser;
use publisher::{Command, Config, Publisher};

// mimalloc, not the system's malloc: README, "Where a signature request's time goes".
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    if let Some(Command::Healthcheck(check)) = &config.command {
        return check.run(&config.http_addr);
    }
    config.common.init_tracing();
    Publisher::bind(config)
        .await?
        .run(plumbing::shutdown_signal())
        .await
}
