//! The Kafka-protocol server: per-shard listeners (`listener.rs`), admission of new connections
//! against `max.connections` and `max.connections.per.ip` (`admission.rs`), connections with
//! pipelined requests answered in order (`connection.rs`), and one handler file per Kafka API
//! (`handlers/`). Handlers decode with `kafka-protocol`, call the partition owners through the
//! shard layer (split by owning shard, dispatched over the mesh, reassembled in request order)
//! and encode. `run` composes a shard: cluster state, consumer groups, then the listener (and on
//! shard 0 the metrics endpoint, `metrics.rs`).

pub mod admission;
pub mod authorize;
pub mod connection;
pub mod handlers;
pub mod listener;
pub mod metrics;
pub mod session;

use std::rc::Rc;

use crate::replication::replicas::{HostedReplicas, LocalLeaders, NodeLinks};
use std::sync::atomic::AtomicI32;
use std::sync::{Arc, Mutex};

use crate::cluster::controller_log::ControllerNode;
use crate::cluster::metadata::ClusterMetadata;
use crate::cluster::state::ClusterState;
use crate::config::Config;
use crate::shard::pool::{self, StartError};
use crate::storage::Recovery;

/// The active controller's node id (-1: none known), published by shard 0's controller driver.
pub struct ControllerLeader(pub Arc<AtomicI32>);

/// Runs the broker until a shutdown signal stops it; Ok(true) if every partition log closed
/// cleanly. `recovery` is how much the logs are checked as they open.
pub fn run(
    config: Config,
    metadata: ClusterMetadata,
    controller: ControllerNode,
    recovery: Recovery,
) -> Result<bool, StartError> {
    if config
        .listeners
        .listeners
        .iter()
        .any(|listener| listener.protocol.is_some_and(|protocol| protocol.tls()))
    {
        crate::security::tls::install(&config.ssl).map_err(StartError::Other)?;
    }
    let sasl_listener = config
        .listeners
        .listeners
        .iter()
        .any(|listener| listener.protocol.is_some_and(|protocol| protocol.sasl()));
    if sasl_listener
        && config
            .sasl
            .enabled_mechanisms
            .iter()
            .any(|name| name == "OAUTHBEARER")
    {
        crate::security::oauth::install(&config.sasl.oauth).map_err(StartError::Other)?;
    }
    let bootstrap_user = match std::env::var(crate::cluster::users::BOOTSTRAP_USER_VARIABLE) {
        Ok(value) => {
            Some(crate::cluster::users::parse_bootstrap_user(&value).map_err(StartError::Other)?)
        }
        Err(_) => None,
    };
    // Handed to shard 0 once, at start (its driver owns it from then on): the only use of this
    // lock.
    let controller = Arc::new(Mutex::new(Some(controller)));
    // The active controller's node id as shard 0 sees it, for every shard's Metadata answers.
    let leader = Arc::new(AtomicI32::new(-1));
    // The node's partition groups' view of their leaders, shared by its shards.
    let local_leaders = Arc::new(LocalLeaders::default());
    // Shards whose services are all registered: no shard takes clients before every shard
    // can serve the mesh requests a client's request turns into (a CreateTopics reaching shard
    // 0 before its controller is registered would be a programmer error there).
    let set_up = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let start: pool::ShardStart = Arc::new(move |shard| {
        let metadata = metadata.clone();
        let controller = controller.clone();
        let leader = leader.clone();
        let local_leaders = local_leaders.clone();
        let set_up = set_up.clone();
        let bootstrap_user = bootstrap_user.clone();
        Box::pin(async move {
            shard.register(Rc::new(ClusterState::new(ClusterMetadata::default())));
            shard.register(Rc::new(HostedReplicas::default()));
            shard.register(Rc::new(local_leaders));
            if shard.id == crate::cluster::admin::METADATA_SHARD {
                let node = controller
                    .lock()
                    .expect("controller hand-off lock")
                    .take()
                    .expect("shard 0 starts once");
                shard.register(Rc::new(crate::cluster::forward::Forwarder::default()));
                let frames = crate::cluster::forward::frame_handler(shard.clone());
                crate::cluster::controller_log::start(&shard, node, leader.clone(), frames)
                    .map_err(StartError::Other)?;
                let links = shard
                    .service::<crate::cluster::controller_log::Controller>()
                    .transport
                    .clone();
                shard.register(Rc::new(NodeLinks {
                    send: Box::new(move |to, frame| {
                        links.as_ref().is_some_and(|links| links.send(to, frame))
                    }),
                }));
                crate::cluster::controller::keep_registered(&shard);
                crate::cluster::controller::watch_broker_sessions(&shard);
                if let Some((user, password)) = bootstrap_user {
                    crate::cluster::users::create_bootstrap_user(&shard, user, password);
                }
            }
            shard.register(Rc::new(ControllerLeader(leader.clone())));
            shard.register(Rc::new(admission::IpConnections::default()));
            shard.register(Rc::new(crate::security::tls::ShardTls::default()));
            shard.register(Rc::new(authorize::ShardAcls::default()));
            shard.register(Rc::new(crate::security::oauth::ShardJwks::default()));
            shard.register(Rc::new(handlers::sasl_authenticate::AuthFailures::default()));
            crate::cluster::leaders::install(&shard);
            // Controlled shutdown: leadership of this shard's partitions moves to in-sync
            // followers before the node goes.
            let handing = Rc::downgrade(&shard);
            shard.shutdown.on_drain(Box::new(move || {
                let shard = handing.upgrade();
                Box::pin(async move {
                    if let Some(shard) = shard {
                        crate::replication::replicas::hand_over_all(&shard).await;
                    }
                })
            }));
            crate::group::install(&shard);
            crate::cluster::apply::apply_metadata(&shard, metadata).await;
            if shard.id.index() == 0 {
                if let Some(address) = shard.config.metrics_listen {
                    glommio::spawn_local(metrics::serve(shard.clone(), address)).detach();
                }
            }
            set_up.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
            while set_up.load(std::sync::atomic::Ordering::Acquire) < shard.shard_count {
                glommio::timer::sleep(std::time::Duration::from_millis(2)).await;
            }
            listener::start(shard).await
        })
    });
    pool::run(config, recovery, start)
}
