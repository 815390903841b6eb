//! Admission of client connections: `max.connections` for the whole broker and
//! `max.connections.per.ip`. The broker-wide count is one process-wide atomic counter touched
//! twice per connection (accept and close) — an admission count, never waited or spun on, and
//! not on the data path. The per-IP counts live on the shard that owns each address (a hash of
//! it), reached over the mesh, so they are exact without a lock; nothing is asked when the
//! per-IP limit is off (Kafka's default).

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::IpAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::futures::LocalFuture;
use crate::ids::ShardId;
use crate::shard::request::Request;
use crate::shard::Shard;

/// Client connections open in this process.
static OPEN_CONNECTIONS: AtomicU32 = AtomicU32::new(0);

/// Per-IP connection counts of the addresses this shard owns (a registered service).
#[derive(Default)]
pub struct IpConnections {
    counts: RefCell<HashMap<IpAddr, u32>>,
}

/// Take (`open`) or give back a connection slot of `ip` on the shard that owns it; answers
/// whether the slot was granted.
#[derive(Debug)]
pub struct CountIp {
    pub ip: IpAddr,
    pub open: bool,
    pub limit: u32,
}

impl Request for CountIp {
    type Reply = bool;
    fn serve(self, shard: Rc<Shard>) -> LocalFuture<'static, bool> {
        let service = shard.service::<IpConnections>();
        let mut counts = service.counts.borrow_mut();
        let granted = if self.open {
            let count = counts.entry(self.ip).or_insert(0);
            if *count >= self.limit {
                false
            } else {
                *count += 1;
                true
            }
        } else {
            if let Some(count) = counts.get_mut(&self.ip) {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    counts.remove(&self.ip);
                }
            }
            true
        };
        Box::pin(async move { granted })
    }
}

/// A connection let in; give it back with `release` when it closes.
pub struct Admission {
    ip: Option<IpAddr>,
}

fn ip_owner(shard: &Shard, ip: &IpAddr) -> ShardId {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    ip.hash(&mut hasher);
    ShardId::from_index((hasher.finish() % shard.shard_count as u64) as usize)
}

/// Lets a new connection in, or refuses it (None) with a rate-limited log line.
pub async fn admit(shard: &Rc<Shard>, ip: Option<IpAddr>) -> Option<Admission> {
    let max = shard.config.max_connections;
    let before = OPEN_CONNECTIONS.fetch_add(1, Ordering::AcqRel);
    if before >= max {
        OPEN_CONNECTIONS.fetch_sub(1, Ordering::AcqRel);
        crate::warn_limited!(
            "refusing a connection from {ip:?}: {before} open, max.connections is {max}"
        );
        return None;
    }
    let per_ip = shard.config.max_connections_per_ip;
    let counted_ip = match ip {
        Some(ip) if per_ip > 0 => {
            let request = CountIp {
                ip,
                open: true,
                limit: per_ip,
            };
            if !shard
                .call(ip_owner(shard, &ip), request)
                .await
                .unwrap_or(false)
            {
                OPEN_CONNECTIONS.fetch_sub(1, Ordering::AcqRel);
                crate::warn_limited!(
                    "refusing a connection from {ip}: max.connections.per.ip ({per_ip}) reached"
                );
                return None;
            }
            Some(ip)
        }
        _ => None,
    };
    Some(Admission { ip: counted_ip })
}

impl Admission {
    pub async fn release(self, shard: &Rc<Shard>) {
        OPEN_CONNECTIONS.fetch_sub(1, Ordering::AcqRel);
        if let Some(ip) = self.ip {
            let request = CountIp {
                ip,
                open: false,
                limit: 0,
            };
            let _ = shard.call(ip_owner(shard, &ip), request).await;
        }
    }
}

/// Connections open in this process (a metric; tests read it through behaviour).
pub fn open_connections() -> u32 {
    OPEN_CONNECTIONS.load(Ordering::Acquire)
}
