//! The task and result sockets, each owned by a task of its own so no decision ever waits on
//! one: sending may wait on a slow verifier (PUSH), and receiving decodes and checks every
//! reply's tag (PULL) and hands it straight to the dispatcher's shared state.

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use wire::{Codec, Envelope, Reply};
use zeromq::{PullSocket, PushSocket, Socket, SocketRecv, SocketSend, ZmqMessage};

/// The two sockets, bound, with the guards in front of them.
pub struct Bound {
    push: PushSocket,
    pull: PullSocket,
    guards: [Option<guard::Guard>; 2],
    /// The resolved tasks and results endpoints.
    pub endpoints: [String; 2],
}

/// Binds the PUSH socket tasks go out on and the PULL socket replies come in on.
pub async fn bind(
    tasks_bind: &str,
    results_bind: &str,
    limits: &Option<guard::Limits>,
) -> anyhow::Result<Bound> {
    let mut push = PushSocket::new();
    let tasks =
        plumbing::bind_guarded(&mut push, tasks_bind, limits.clone(), "tasks", "TASKS_BIND")
            .await?;
    let mut pull = PullSocket::new();
    let results = plumbing::bind_guarded(
        &mut pull,
        results_bind,
        limits.clone(),
        "results",
        "RESULTS_BIND",
    )
    .await?;
    Ok(Bound {
        push,
        pull,
        guards: [tasks.guard, results.guard],
        endpoints: [tasks.endpoint, results.endpoint],
    })
}

impl Bound {
    /// Starts the owner tasks. Returns the outbox for encoded tasks, which holds at most
    /// `outbox_capacity` (whoever sends into it decides what a full outbox means), and the
    /// PULL task, which hands each reply as it is decoded to `receive` until `stop` is
    /// cancelled. The PUSH task ends once the outbox is dropped.
    pub fn start(
        self,
        codec: Codec,
        outbox_capacity: usize,
        receive: impl FnMut(Envelope<Reply>) + Send + 'static,
        stop: CancellationToken,
    ) -> (mpsc::Sender<ZmqMessage>, JoinHandle<()>) {
        let (outbox, outbox_rx) = mpsc::channel(outbox_capacity);
        let [push_guard, pull_guard] = self.guards;
        tokio::spawn(async move {
            push_tasks(self.push, outbox_rx).await;
            drop(push_guard);
        });
        let replies = tokio::spawn(async move {
            pull_replies(self.pull, codec, receive, stop).await;
            drop(pull_guard);
        });
        (outbox, replies)
    }
}

/// Sends every task handed to the outbox until the outbox is closed.
async fn push_tasks(mut push: PushSocket, mut outbox: mpsc::Receiver<ZmqMessage>) {
    while let Some(message) = outbox.recv().await {
        // With no verifier connected the send fails at once; the task's deadline re-sends it.
        if let Err(e) = push.send(message).await {
            tracing::debug!(cause = %e, "task not sent");
        }
    }
}

/// Decodes what arrives on the PULL socket and hands valid replies to `receive` until `stop`.
/// Anything that does not decode is counted and dropped. `receive` never waits, so neither
/// does reading.
async fn pull_replies(
    mut pull: PullSocket,
    codec: Codec,
    mut receive: impl FnMut(Envelope<Reply>),
    stop: CancellationToken,
) {
    let rejects = plumbing::Rejects::new("a message that could not be decoded");
    loop {
        let message = tokio::select! {
            () = stop.cancelled() => break,
            message = pull.recv() => message,
        };
        match message {
            Ok(message) => match codec.decode::<Reply>(&message) {
                Ok(envelope) => receive(envelope),
                Err(e) => {
                    rejects.record("results socket", &e);
                }
            },
            Err(e) => tracing::debug!(cause = %e, "result receive interrupted"),
        }
    }
}
