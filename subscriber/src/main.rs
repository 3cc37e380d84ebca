//! `subscriber`: logs every event of the publishers it connects to. Runs until SIGTERM/Ctrl-C;
//! SIGHUP reopens the log file. `subscriber healthcheck` asks a running one's `/healthz`.

use clap::Parser;
use plumbing::health::Command;
use subscriber::Config;

/// mimalloc rather than the system allocator: an event's strings are allocated on the socket's
/// task and freed on the writer's thread, a pattern glibc's serves poorly (the writer's frees
/// overflow its thread cache into a locked arena, the socket's thread allocates from the arena
/// afresh); mimalloc gives such a free back to the allocating thread's page cheaply. Built
/// without transparent huge pages (`no_thp`): with them its arenas held ~10 MiB more resident
/// memory at idle (README, "CPU and memory per event").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    if let Some(Command::Healthcheck(check)) = &config.command {
        return check.run(&config.health_addr);
    }
    config.common.init_tracing();
    subscriber::run(config, plumbing::shutdown_signal()).await
}
