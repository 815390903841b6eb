//! Starts the shards: one glommio `LocalExecutor` per core, pinned to CPU `i`, each joining the
//! request and response meshes, serving mesh requests, running the retention task in a
//! low-share background queue, and then running what the layers above start on every shard
//! (`ShardStart`: metadata, groups, the Kafka listener).

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::time::Duration;

use glommio::channels::channel_mesh::MeshBuilder;
use glommio::{CpuSet, LocalExecutorBuilder, Placement, PoolPlacement, Shares};

use super::mesh::{Mesh, MeshRequest, MeshResponse, MESH_CHANNEL_CAPACITY};
use super::Shard;
use crate::config::Config;
use crate::ids::ShardId;
use crate::storage::Recovery;

/// What the layers above run on each shard once it joined the mesh (services, partitions, the
/// listener); it returns once the shard serves. The shard then runs until a shutdown signal
/// (`shutdown.rs`).
pub type ShardStart = std::sync::Arc<
    dyn Fn(Rc<Shard>) -> Pin<Box<dyn Future<Output = Result<(), StartError>>>> + Send + Sync,
>;

/// glommio refuses to start below this locked-memory limit (its io_uring rings need it).
pub const MEMLOCK_BYTES_MIN: u64 = 512 << 10;
/// Per-shard io_uring registered-buffer memory we ask for when the limit allows.
pub const IO_MEMORY_BYTES_MAX: u64 = 10 << 20;
/// Shares of the background (retention, roll) task queue against 1000 for the data path.
const BACKGROUND_SHARES: usize = 50;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(
        "locked-memory limit is {limit_bytes} bytes; glommio needs at least {MEMLOCK_BYTES_MIN} \
         (run `ulimit -l unlimited` as root or raise memlock in /etc/security/limits.conf)"
    )]
    MemlockTooLow { limit_bytes: u64 },
    #[error("cannot start shard {shard}: {message}")]
    Executor { shard: usize, message: String },
    #[error("cannot listen on {address}: {source}")]
    Listen {
        address: std::net::SocketAddr,
        source: std::io::Error,
    },
    /// A layer above could not start its part of a shard.
    #[error("{0}")]
    Other(String),
}

/// Reads RLIMIT_MEMLOCK and decides how much io_uring buffer memory each shard may register.
pub fn io_memory_per_shard(cores: usize) -> Result<usize, StartError> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    let result = unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut limit) };
    let limit_bytes = if result == 0 { limit.rlim_cur } else { 0 };
    if limit_bytes < MEMLOCK_BYTES_MIN {
        return Err(StartError::MemlockTooLow { limit_bytes });
    }
    let share = (limit_bytes / cores.max(1) as u64 / 2).min(IO_MEMORY_BYTES_MAX);
    if share < IO_MEMORY_BYTES_MAX {
        log::info!(
            "memlock limit {limit_bytes} bytes: registering {share} bytes of io_uring buffers per shard \
             (raise `ulimit -l` for the full {IO_MEMORY_BYTES_MAX})"
        );
    }
    Ok(share.max(64 << 10) as usize)
}

/// Raises the soft open-file limit to the hard one (as the JVM does by default), so connections
/// and segment files get what the administrator allowed; `max.connections` is derived from it.
pub fn raise_open_file_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write a struct we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                log::warn!(
                    "cannot raise the open-file limit to {}: {}",
                    limit.rlim_max,
                    std::io::Error::last_os_error()
                );
            }
        }
    }
}

/// The CPUs this process may run on (its affinity mask), in order: shard `i` is pinned to the
/// `i`-th, so the broker works inside a cpuset or under `taskset`.
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity fills it for this process.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let result =
        unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if result != 0 {
        return Vec::new();
    }
    (0..libc::CPU_SETSIZE as usize)
        // SAFETY: index is below CPU_SETSIZE.
        .filter(|cpu| unsafe { libc::CPU_ISSET(*cpu, &set) })
        .collect()
}

/// Where a shard's blocking thread runs: on any CPU the process may use, not pinned to the
/// shard's own. Its calls are kernel work that a kernel without preemption (this machine boots
/// with `Dynamic Preempt: none`) does not interrupt for the shard: trimming a rolled segment's
/// preallocated tail frees blocks for up to 8 ms, and on the shard's CPU that stalls the shard
/// as if it ran there (perf/RESULTS.md, session 14). Falls back to the shard's CPU if the CPU
/// list is unreadable.
fn blocking_pool_placement(allowed: &[usize], shard_cpu: usize) -> PoolPlacement {
    match CpuSet::online().map(|online| online.filter(|location| allowed.contains(&location.cpu))) {
        Ok(set) if !set.is_empty() => PoolPlacement::Fenced(1, set),
        _ => PoolPlacement::from(Placement::Fixed(shard_cpu)),
    }
}

/// Runs the broker until a shutdown signal stops it; Ok(true) if every shard closed every
/// partition log cleanly. Partitions open with `recovery`.
pub fn run(config: Config, recovery: Recovery, start: ShardStart) -> Result<bool, StartError> {
    let io_memory = io_memory_per_shard(config.cores)?;
    let requests = MeshBuilder::<MeshRequest, _>::full(config.cores, MESH_CHANNEL_CAPACITY);
    let responses = MeshBuilder::<MeshResponse, _>::full(config.cores, MESH_CHANNEL_CAPACITY);
    let cpus = allowed_cpus();
    // Before the shards pin themselves: the closing thread may run on any allowed CPU.
    crate::storage::closer::start();
    let mut handles = Vec::with_capacity(config.cores);
    for shard_id in 0..config.cores {
        let cpu = cpus.get(shard_id).copied().unwrap_or(shard_id);
        let config = config.clone();
        let start = start.clone();
        let requests = requests.clone();
        let responses = responses.clone();
        let handle = LocalExecutorBuilder::new(Placement::Fixed(cpu))
            .blocking_thread_pool_placement(blocking_pool_placement(&cpus, cpu))
            .name(&format!("shard-{shard_id}"))
            .io_memory(io_memory)
            .spin_before_park(Duration::from_micros(config.shard_spin_before_park_us))
            .spawn(move || async move {
                let outcome =
                    run_shard(shard_id, config, recovery, start, requests, responses).await;
                if let Err(error) = &outcome {
                    // One shard down means its partitions are unreachable: stop the process
                    // rather than serve a partial broker.
                    eprintln!("sluice: shard {shard_id} stopped: {error}");
                    std::process::exit(1);
                }
                outcome
            })
            .map_err(|error| StartError::Executor {
                shard: shard_id,
                message: error.to_string(),
            })?;
        handles.push(handle);
    }
    let mut first_error = None;
    let mut clean = true;
    for (shard, handle) in handles.into_iter().enumerate() {
        let outcome = handle.join().map_err(|error| StartError::Executor {
            shard,
            message: format!("{error:?}"),
        });
        match outcome {
            Ok(Ok(shard_clean)) => clean &= shard_clean,
            Ok(Err(error)) | Err(error) => {
                first_error.get_or_insert(error);
            }
        }
    }
    first_error.map_or(Ok(clean), Err)
}

async fn run_shard(
    shard_id: usize,
    config: Config,
    recovery: Recovery,
    start: ShardStart,
    requests: MeshBuilder<MeshRequest, glommio::channels::channel_mesh::Full>,
    responses: MeshBuilder<MeshResponse, glommio::channels::channel_mesh::Full>,
) -> Result<bool, StartError> {
    let mesh_error = |what: &str| StartError::Executor {
        shard: shard_id,
        message: format!("joining the {what} mesh failed"),
    };
    let (request_senders, request_receivers) =
        requests.join().await.map_err(|_| mesh_error("request"))?;
    let (response_senders, response_receivers) =
        responses.join().await.map_err(|_| mesh_error("response"))?;
    assert_eq!(request_senders.peer_id(), shard_id, "mesh peer id");
    let id = ShardId::from_index(shard_id);
    let mesh = Mesh::new(id, request_senders, response_senders);
    let shard = Rc::new(Shard::with_recovery(id, config, mesh, recovery));
    let mut request_receivers = request_receivers;
    for (peer, receiver) in request_receivers.streams() {
        let shard = shard.clone();
        glommio::spawn_local(async move {
            while let Some(message) = receiver.recv().await {
                let Ok(permit) = shard.mesh_handlers.acquire_static_permit(1).await else {
                    break;
                };
                let shard = shard.clone();
                glommio::spawn_local(async move {
                    let _permit = permit;
                    let reply = message.request.serve_erased(shard.clone()).await;
                    shard.mesh.respond(message.origin, message.id, reply).await;
                })
                .detach();
            }
            log::debug!("shard {:?}: request stream from {peer} closed", shard.id);
        })
        .detach();
    }
    let mut response_receivers = response_receivers;
    for (_peer, receiver) in response_receivers.streams() {
        let shard = shard.clone();
        glommio::spawn_local(async move {
            while let Some(message) = receiver.recv().await {
                shard.mesh.on_response(message);
            }
        })
        .detach();
    }
    start_background(&shard);
    let watching = shard.clone();
    glommio::spawn_local(async move {
        let floor = watching.config.log_dir_free_bytes_min;
        watching.partitions.watch_free_space(floor).await;
    })
    .detach();
    start(shard.clone()).await?;
    Ok(super::shutdown::run(&shard).await)
}

/// Retention and time-based rolls, in a background queue with low shares.
fn start_background(shard: &Rc<Shard>) {
    let queue = glommio::executor().create_task_queue(
        Shares::Static(BACKGROUND_SHARES),
        glommio::Latency::NotImportant,
        "background",
    );
    let shard_id = shard.id;
    let shard = shard.clone();
    let interval = Duration::from_millis(shard.config.log_retention_check_interval_ms);
    let task = glommio::spawn_local_into(
        async move {
            loop {
                glommio::timer::sleep(interval).await;
                let now_ms = now_ms();
                for partition in shard.partitions.all() {
                    let log = partition.log();
                    let name = &partition.topic_partition;
                    if log.is_offline() {
                        continue;
                    }
                    if let Err(error) = log.maybe_roll(now_ms).await {
                        log::error!("roll {name}: {error}");
                    }
                    match log.enforce_retention(now_ms).await {
                        Ok(0) => {}
                        Ok(bytes) => {
                            log::info!("retention removed {bytes} bytes of {name}");
                            if let Err(error) = partition.on_log_start_moved().await {
                                log::error!("epoch cache of {name}: {error}");
                            }
                        }
                        Err(error) => log::error!("retention {name}: {error}"),
                    }
                }
            }
        },
        queue,
    );
    match task {
        Ok(task) => {
            task.detach();
        }
        Err(error) => log::error!("shard {shard_id:?}: no background queue: {error}"),
    }
}

pub fn now_ms() -> i64 {
    crate::storage::wall_clock_ms()
}
