//! Cross-shard message round trip: two glommio executors (the caller on this thread, the answerer
//! on its own thread, pinned to different CPUs when two are allowed, as `sluice serve` pins shards)
//! joined by the same pair of `channel_mesh` full meshes the broker builds (`shard::pool::run`:
//! one for requests, one for responses, `MESH_CHANNEL_CAPACITY` each) and driven through the
//! broker's own `shard::mesh::Mesh` (`call` -> request mesh -> peer spawns a handler task ->
//! `respond` -> response mesh -> `on_response` -> the caller's one-shot channel).
//!
//! The message is the smallest typed request (`Echo(1)`, a `shard::request::Request` answered
//! with its own number without touching any state), so this is the transport cost alone: the
//! answerer is a real `Shard` serving the type-erased request as `shard::pool` does.
//! - `round_trip`: one call at a time; the time per iteration is the request->response latency,
//!   including waking the parked peer executor twice (an idle broker's case).
//! - `pipelined_64`: 64 calls in flight at once; time per iteration is per message (a busy
//!   broker's case, where executors find messages without sleeping).
//!
//! Timing: criterion's `iter_custom`; each sample runs N calls inside shard 0's executor and
//! returns the elapsed time.
//!
//! Run: `cargo bench --bench mesh`.

use std::rc::Rc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use glommio::channels::channel_mesh::{Full, MeshBuilder, Receivers};
use glommio::{LocalExecutor, LocalExecutorBuilder, Placement};
use sluice::futures::{join_all, LocalFuture};
use sluice::ids::ShardId;
use sluice::shard::mesh::{Mesh, MeshRequest, MeshResponse, MESH_CHANNEL_CAPACITY};
use sluice::shard::pool::allowed_cpus;
use sluice::shard::request::Request;
use sluice::shard::Shard;

/// The smallest request: answered with its own number.
struct Echo(u32);

impl Request for Echo {
    type Reply = u32;
    fn serve(self, _shard: Rc<Shard>) -> LocalFuture<'static, u32> {
        Box::pin(async move { self.0 })
    }
}

const PIPELINE_DEPTH: usize = 64;
const SHARDS: usize = 2;
/// Index into the allowed CPUs of the calling and the answering executor.
const CALLER_CPU_INDEX: usize = 0;
const ANSWERER_CPU_INDEX: usize = 1;

type Meshes = (
    MeshBuilder<MeshRequest, Full>,
    MeshBuilder<MeshResponse, Full>,
);

fn placement(cpu_index: usize) -> Placement {
    let cpus = allowed_cpus();
    if cpus.len() >= SHARDS {
        Placement::Fixed(cpus[cpu_index])
    } else {
        Placement::Unbound
    }
}

/// Joins both meshes and starts the loop that routes answers to waiting callers. glommio numbers
/// peers by executor, so the shard id is whatever the mesh assigned (the same in both meshes).
async fn join((requests, responses): Meshes) -> (Rc<Shard>, usize, Receivers<MeshRequest>) {
    let (request_senders, request_receivers) = requests.join().await.expect("request mesh");
    let (response_senders, mut response_receivers) = responses.join().await.expect("response mesh");
    let shard = request_senders.peer_id();
    assert_eq!(response_senders.peer_id(), shard, "mesh peer ids differ");
    let id = ShardId::from_index(shard);
    let mesh = Mesh::new(id, request_senders, response_senders);
    let config = sluice::config::Config {
        cores: SHARDS,
        cache_bytes_per_shard: 1 << 20,
        ..Default::default()
    };
    let shard_state = Rc::new(Shard::new(id, config, mesh));
    for (_peer, receiver) in response_receivers.streams() {
        let shard_state = shard_state.clone();
        glommio::spawn_local(async move {
            while let Some(message) = receiver.recv().await {
                shard_state.mesh.on_response(message);
            }
        })
        .detach();
    }
    (shard_state, shard, request_receivers)
}

/// The answering shard: answers every request in its own task, as `shard::pool::run_shard` does.
fn spawn_answerer(meshes: Meshes) {
    LocalExecutorBuilder::new(placement(ANSWERER_CPU_INDEX))
        .name("shard-1")
        .io_memory(512 << 10)
        .spawn(move || async move {
            let (shard, _index, mut request_receivers) = join(meshes).await;
            let mut serving = Vec::new();
            for (_peer, receiver) in request_receivers.streams() {
                let shard = shard.clone();
                serving.push(glommio::spawn_local(async move {
                    while let Some(message) = receiver.recv().await {
                        let shard = shard.clone();
                        glommio::spawn_local(async move {
                            let reply = message.request.serve_erased(shard.clone()).await;
                            shard.mesh.respond(message.origin, message.id, reply).await;
                        })
                        .detach();
                    }
                }));
            }
            join_all(serving).await;
        })
        .expect("shard-1 executor (needs 512 KiB of locked memory)");
}

async fn call(mesh: &Mesh, target: ShardId) {
    let pending = mesh.send(target, Echo(1)).await.expect("answerer alive");
    assert_eq!(pending.answer().await.expect("answered"), 1);
}

async fn round_trips(mesh: &Mesh, target: ShardId, iterations: u64) -> Duration {
    let started = Instant::now();
    for _ in 0..iterations {
        call(mesh, target).await;
    }
    started.elapsed()
}

async fn pipelined(mesh: &Mesh, target: ShardId, iterations: u64) -> Duration {
    let started = Instant::now();
    let mut remaining = iterations as usize;
    while remaining > 0 {
        let depth = remaining.min(PIPELINE_DEPTH);
        remaining -= depth;
        join_all((0..depth).map(|_| call(mesh, target)).collect()).await;
    }
    started.elapsed()
}

fn mesh_round_trip(criterion: &mut Criterion) {
    let requests = MeshBuilder::<MeshRequest, _>::full(SHARDS, MESH_CHANNEL_CAPACITY);
    let responses = MeshBuilder::<MeshResponse, _>::full(SHARDS, MESH_CHANNEL_CAPACITY);
    spawn_answerer((requests.clone(), responses.clone()));
    let executor: LocalExecutor = LocalExecutorBuilder::new(placement(CALLER_CPU_INDEX))
        .name("shard-0")
        .io_memory(512 << 10)
        .make()
        .expect("shard-0 executor (needs 512 KiB of locked memory)");
    // Shard 0 never receives requests; its receivers stay alive so shard 1 can join and exit.
    let (shard_state, shard, _request_receivers) = executor.run(join((requests, responses)));
    let target = ShardId::from_index(SHARDS - 1 - shard);
    let mesh = &shard_state.mesh;
    let mut group = criterion.benchmark_group("mesh");
    group.throughput(Throughput::Elements(1));
    group.bench_function("round_trip", |b| {
        b.iter_custom(|iterations| executor.run(round_trips(mesh, target, iterations)))
    });
    group.bench_function("pipelined_64", |b| {
        b.iter_custom(|iterations| executor.run(pipelined(mesh, target, iterations)))
    });
    group.finish();
}

criterion_group!(benches, mesh_round_trip);
criterion_main!(benches);
