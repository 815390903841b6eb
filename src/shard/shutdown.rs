//! Graceful shutdown on SIGTERM and SIGINT (systemd, rolling restarts and operators send them).
//!
//! Signals: `block_termination_signals` blocks both in the main thread before any other thread
//! exists, so every thread started later (executors, glommio's blocking pool) inherits the mask
//! and no shard is ever interrupted. One plain thread waits for them (`sigwaitinfo`):
//! - the first sets a process-wide flag (a control-plane flag read by each shard's shutdown task
//!   every `SIGNAL_POLL_MS`, never on the data path);
//! - a second one exits at once (status 128 + signal), without a clean-shutdown marker;
//! - if the process is still alive `SHUTDOWN_EXIT_MS_MAX` after the first, it exits with status 1.
//!
//! Each shard then (`run`): runs the hooks layers above registered (`on_drain`: the controller
//! and the partition groups hand their leadership over, at most `SHUTDOWN_HOOK_MS_MAX`) while
//! its connections are still served, then stops accepting, stops reading new requests on its connections
//! (a request already read is answered: its handler runs and its response is written), waits
//! for its connections to finish (at most `SHUTDOWN_DRAIN_MS_MAX`), waits for every shard to get
//! that far (a connection on one shard may still append to a partition of another), then closes
//! every hosted partition log: flush, fdatasync, indexes, trim. The executors return and the
//! main thread writes the clean-shutdown marker if every log closed cleanly, then exits 0.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use glommio::sync::Semaphore;

use super::Shard;

/// How often a shard looks at the process-wide shutdown flag: a bound on how late draining
/// starts, at a cost of a timer wake-up per shard per period.
const SIGNAL_POLL_MS: u64 = 50;
/// Time for in-flight requests (long polls, parked group joins) to finish before the logs are
/// closed regardless.
pub const SHUTDOWN_DRAIN_MS_MAX: u64 = 10_000;
/// Time after the first signal by which the process has exited, cleanly or not (well inside
/// systemd's default `TimeoutStopSec` of 90 s).
pub const SHUTDOWN_EXIT_MS_MAX: u64 = 30_000;

static REQUESTED: AtomicBool = AtomicBool::new(false);
static DRAINED_SHARDS: AtomicUsize = AtomicUsize::new(0);

/// SIGTERM and SIGINT, blocked in every thread.
pub struct TerminationSignals(libc::sigset_t);

/// Call first in `serve`, while the main thread is the only thread.
pub fn block_termination_signals() -> std::io::Result<TerminationSignals> {
    // SAFETY: sigset_t is plain data initialized by sigemptyset; pthread_sigmask changes only
    // this thread's mask (inherited by threads started later).
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        match libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) {
            0 => Ok(TerminationSignals(set)),
            error => Err(std::io::Error::from_raw_os_error(error)),
        }
    }
}

/// Starts the thread that waits for the signals.
pub fn spawn_signal_thread(signals: TerminationSignals) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let first = wait_for_signal(&signals.0, None);
            log::info!(
                "received {}: shutting down (in-flight requests get up to {SHUTDOWN_DRAIN_MS_MAX} ms; \
                 a second signal exits at once)",
                signal_name(first.unwrap_or(0))
            );
            REQUESTED.store(true, Ordering::Release);
            let deadline = Instant::now() + Duration::from_millis(SHUTDOWN_EXIT_MS_MAX);
            match wait_for_signal(&signals.0, Some(deadline)) {
                Some(signal) => exit_now(128 + signal, signal_name(signal)),
                None => exit_now(1, "shutdown took too long"),
            }
        })?;
    Ok(())
}

/// The next blocked signal, or None at the deadline.
fn wait_for_signal(set: &libc::sigset_t, deadline: Option<Instant>) -> Option<i32> {
    loop {
        // SAFETY: `set` is initialized; a null info pointer is allowed.
        let signal = match deadline {
            None => unsafe { libc::sigwaitinfo(set, std::ptr::null_mut()) },
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return None;
                }
                let timeout = libc::timespec {
                    tv_sec: left.as_secs() as libc::time_t,
                    tv_nsec: left.subsec_nanos() as libc::c_long,
                };
                // SAFETY: as above, with a timeout we own.
                unsafe { libc::sigtimedwait(set, std::ptr::null_mut(), &timeout) }
            }
        };
        if signal > 0 {
            return Some(signal);
        }
        // EINTR or EAGAIN (timeout): look at the deadline again.
    }
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        libc::SIGTERM => "SIGTERM",
        libc::SIGINT => "SIGINT",
        _ => "a signal",
    }
}

fn exit_now(status: i32, reason: &str) -> ! {
    eprintln!("sluice: {reason}: exiting now, without a clean shutdown (status {status})");
    // SAFETY: _exit ends the process at once; nothing is flushed, which is the point.
    unsafe { libc::_exit(status) }
}

/// Work a layer above runs when its shard starts draining, before the logs close (the
/// controller hands its leadership over); bounded by `SHUTDOWN_HOOK_MS_MAX`.
pub type ShutdownHook = Box<dyn Fn() -> crate::futures::LocalFuture<'static, ()>>;

/// Time the shutdown hooks get, together.
pub const SHUTDOWN_HOOK_MS_MAX: u64 = 3_000;

/// A shard's shutdown state: what its listener, connections and long waits watch.
pub struct ShutdownState {
    hooks: std::cell::RefCell<Vec<ShutdownHook>>,
    draining: Cell<bool>,
    /// Closed when draining starts: an acquire on a closed semaphore fails at once and closing
    /// wakes every waiter, so it works as a broadcast.
    drain_started: Semaphore,
    connections: Cell<usize>,
    /// Signalled when the last connection closes while draining.
    connections_gone: Semaphore,
}

impl Default for ShutdownState {
    fn default() -> Self {
        ShutdownState {
            hooks: std::cell::RefCell::new(Vec::new()),
            draining: Cell::new(false),
            drain_started: Semaphore::new(0),
            connections: Cell::new(0),
            connections_gone: Semaphore::new(0),
        }
    }
}

impl ShutdownState {
    /// Registers `hook` to run (concurrently with the connections draining) once draining starts.
    pub fn on_drain(&self, hook: ShutdownHook) {
        self.hooks.borrow_mut().push(hook);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.get()
    }

    /// Resolves once draining started (at once if it has).
    pub async fn draining(&self) {
        let _ = self.drain_started.acquire(1).await;
    }

    pub fn connection_count(&self) -> usize {
        self.connections.get()
    }

    /// Counts a connection until the guard drops.
    pub fn connection_opened(self: &Rc<Self>) -> OpenConnection {
        self.connections.set(self.connections.get() + 1);
        OpenConnection(self.clone())
    }

    fn start_draining(&self) {
        self.draining.set(true);
        self.drain_started.close();
    }

    async fn connections_closed(&self) {
        if self.connections.get() > 0 {
            let _ = self.connections_gone.acquire(1).await;
        }
    }
}

pub struct OpenConnection(Rc<ShutdownState>);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        let state = &self.0;
        assert!(state.connections.get() > 0, "connection count underflow");
        state.connections.set(state.connections.get() - 1);
        if state.connections.get() == 0 && state.draining.get() {
            state.connections_gone.signal(1);
        }
    }
}

/// The shard's side of a shutdown; returns once its logs are closed, with whether every one
/// closed cleanly.
pub async fn run(shard: &Rc<Shard>) -> bool {
    while !REQUESTED.load(Ordering::Acquire) {
        glommio::timer::sleep(Duration::from_millis(SIGNAL_POLL_MS)).await;
    }
    let state = &shard.shutdown;
    log::info!(
        "shard {}: draining {} connections",
        shard.id,
        state.connection_count()
    );
    // The hooks (leadership hand-overs) run first, while connections are still served: a
    // client whose partition moved gets NOT_LEADER_OR_FOLLOWER naming the new leader (KIP-951)
    // instead of a closed connection and a Metadata round trip that may not know it yet (Kafka's
    // controlled shutdown also moves leaders before it stops its socket server).
    let hooks: Vec<_> = state.hooks.borrow().iter().map(|hook| hook()).collect();
    let hook_time = Duration::from_millis(SHUTDOWN_HOOK_MS_MAX);
    futures_lite::future::or(
        async {
            crate::futures::join_all(hooks).await;
        },
        glommio::timer::sleep(hook_time),
    )
    .await;
    state.start_draining();
    let drain = Duration::from_millis(SHUTDOWN_DRAIN_MS_MAX);
    let started = Instant::now();
    let drained = futures_lite::future::or(
        async {
            state.connections_closed().await;
            true
        },
        async {
            glommio::timer::sleep(drain).await;
            false
        },
    )
    .await;
    if !drained {
        log::warn!(
            "shard {}: {} connections still open after {} ms; closing the logs anyway",
            shard.id,
            state.connection_count(),
            drain.as_millis()
        );
    }
    DRAINED_SHARDS.fetch_add(1, Ordering::AcqRel);
    while DRAINED_SHARDS.load(Ordering::Acquire) < shard.shard_count && started.elapsed() < drain {
        glommio::timer::sleep(Duration::from_millis(SIGNAL_POLL_MS / 5)).await;
    }
    let clean = shard.partitions.close_all().await;
    log::info!(
        "shard {}: partition logs closed{}",
        shard.id,
        if clean { "" } else { " (not all cleanly)" }
    );
    clean
}
