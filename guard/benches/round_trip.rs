//! What the guards cost a request and its reply: one message at a time around the signature
//! path's loop — PUSH bound → PULL connected, then PUSH connected → PULL bound, as the
//! publisher's tasks and results and the verifier's two links are — straight over loopback
//! TCP and through four guards (bind side on the two bound sockets, connect side on the two
//! connected), in interleaved rounds of the same run, with the ratio.
//!
//! Each figure is per round trip: the time it took, and the CPU the whole process (all four
//! sockets, the guards and the runtime) spent on it, from `/proc/self/stat`. Run with
//! `cargo bench -p guard --bench round_trip`; arguments (after `--`): `--trips 20000`,
//! `--rounds 3`, `--threads 2` (tokio worker threads; 1 runs a current-thread runtime).

use guard::{Guard, InnerAddr, Limits};
use std::time::Instant;
use zeromq::{Socket, SocketRecv, SocketSend, ZmqMessage};

/// About the size of a verification task.
const MESSAGE_BYTES: usize = 300;
/// Round trips before measuring, for connections and buffers to settle.
const WARM_UP: usize = 1000;

type Error = Box<dyn std::error::Error>;

/// The process's CPU time so far, in seconds (user and system, in clock ticks of 1/100 s).
fn cpu_seconds() -> Result<f64, Error> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    // The fields after the command name, which is in parentheses and may hold spaces.
    let after_name = stat.rsplit_once(") ").ok_or("no command name")?.1;
    let fields: Vec<&str> = after_name.split(' ').collect();
    let ticks =
        |i: usize| -> Result<f64, Error> { Ok(fields.get(i).ok_or("short stat")?.parse::<f64>()?) };
    // utime and stime are the 14th and 15th fields, the 12th and 13th after the name.
    Ok((ticks(11)? + ticks(12)?) / 100.0)
}

/// Binds `socket` where its peer connects: loopback TCP, or an internal address behind a
/// bind-side guard on loopback TCP. Returns the address to connect to.
async fn bind(
    socket: &mut impl Socket,
    guarded: bool,
    name: &'static str,
) -> Result<(String, Option<Guard>), Error> {
    if !guarded {
        return Ok((socket.bind("tcp://127.0.0.1:0").await?.to_string(), None));
    }
    let inner = InnerAddr::new(name);
    socket.bind(&inner.endpoint()).await?;
    let guard = Guard::bind("127.0.0.1:0", &inner, Limits::default(), name).await?;
    Ok((guard.local_endpoint(), Some(guard)))
}

/// Connects `socket` to `remote`, through a connect-side guard when `guarded`.
async fn connect(
    socket: &mut impl Socket,
    remote: &str,
    guarded: bool,
    name: &'static str,
) -> Result<Option<Guard>, Error> {
    if !guarded {
        socket.connect(remote).await?;
        return Ok(None);
    }
    let guard = Guard::connect_side(remote, Limits::default(), name).await?;
    socket.connect(&guard.local_endpoint()).await?;
    Ok(Some(guard))
}

/// Microseconds per round trip: (time, process CPU).
async fn measure(trips: usize, guarded: bool) -> Result<(f64, f64), Error> {
    let mut tasks = zeromq::PushSocket::new();
    let (tasks_at, _tasks_guard) = bind(&mut tasks, guarded, "tasks").await?;
    let mut results = zeromq::PullSocket::new();
    let (results_at, _results_guard) = bind(&mut results, guarded, "results").await?;
    let mut echo_in = zeromq::PullSocket::new();
    let _in_guard = connect(&mut echo_in, &tasks_at, guarded, "tasks-in").await?;
    let mut echo_out = zeromq::PushSocket::new();
    let _out_guard = connect(&mut echo_out, &results_at, guarded, "results-out").await?;
    let echo = tokio::spawn(async move {
        while let Ok(message) = echo_in.recv().await {
            if echo_out.send(message).await.is_err() {
                return;
            }
        }
    });
    let message = ZmqMessage::from(vec![b'x'; MESSAGE_BYTES]);
    for _ in 0..WARM_UP {
        tasks.send(message.clone()).await?;
        results.recv().await?;
    }
    let (start, cpu_before) = (Instant::now(), cpu_seconds()?);
    for _ in 0..trips {
        tasks.send(message.clone()).await?;
        results.recv().await?;
    }
    let (elapsed, cpu) = (start.elapsed().as_secs_f64(), cpu_seconds()? - cpu_before);
    echo.abort();
    let per_trip = |seconds: f64| seconds / trips as f64 * 1e6;
    Ok((per_trip(elapsed), per_trip(cpu)))
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() -> Result<(), Error> {
    let (mut trips, mut rounds, mut threads) = (20_000usize, 3usize, 2usize);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = |args: &mut dyn Iterator<Item = String>| -> Result<usize, Error> {
            Ok(args.next().ok_or("a value")?.parse()?)
        };
        match arg.as_str() {
            "--trips" => trips = value(&mut args)?,
            "--rounds" => rounds = value(&mut args)?,
            "--threads" => threads = value(&mut args)?,
            // cargo bench passes --bench.
            "--bench" => {}
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    if trips == 0 || rounds == 0 || threads == 0 {
        return Err("--trips, --rounds and --threads must be at least 1".into());
    }
    let runtime = if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(threads);
        builder
    }
    .enable_all()
    .build()?;
    let (mut direct, mut guarded) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        direct.push(runtime.block_on(measure(trips, false))?);
        guarded.push(runtime.block_on(measure(trips, true))?);
    }
    println!(
        "{trips} round trips of {MESSAGE_BYTES} B, {threads} runtime thread(s), median of {rounds} interleaved rounds"
    );
    println!("run       µs per trip  CPU µs per trip");
    let time = |runs: &[(f64, f64)]| median(runs.iter().map(|r| r.0).collect());
    let cpu = |runs: &[(f64, f64)]| median(runs.iter().map(|r| r.1).collect());
    for (name, runs) in [("direct", &direct), ("guarded", &guarded)] {
        println!("{name:<9} {:>11.1}  {:>15.1}", time(runs), cpu(runs));
    }
    println!(
        "guarded / direct: time {:.2}, CPU {:.2}",
        time(&guarded) / time(&direct),
        cpu(&guarded) / cpu(&direct)
    );
    Ok(())
}
