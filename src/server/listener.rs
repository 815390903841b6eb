//! The Kafka listeners of one shard (one per client listener of `listeners`, each with its
//! security protocol). Every shard binds the same addresses with SO_REUSEPORT
//! (and SO_REUSEADDR, for restarts), so the kernel spreads connections over shards; a
//! connection stays on the shard that accepted it.

use std::rc::Rc;

use super::session::ListenerContext;
use crate::shard::pool::StartError;
use crate::shard::Shard;

/// Pending connections per shard listener (the kernel caps it at `net.core.somaxconn`).
const LISTEN_BACKLOG: i32 = 1024;

/// `bind`, trying an address in use again for up to `BIND_RETRY_MS`, 20 ms apart, before
/// the error stands: a process killed a moment ago can still hold its listener, because
/// io_uring tears its ring down after the process is reaped (here 10-25 ms) and the ring holds
/// the socket. `sleep` is how to wait: a timer on a shard that already serves, a blocking sleep
/// where nothing runs yet.
pub async fn bind_retrying<F: std::future::Future<Output = ()>>(
    address: std::net::SocketAddr,
    share_port: bool,
    sleep: impl Fn(std::time::Duration) -> F,
) -> std::io::Result<glommio::net::TcpListener> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(BIND_RETRY_MS);
    loop {
        match bind(address, share_port) {
            Err(error)
                if error.kind() == std::io::ErrorKind::AddrInUse
                    && std::time::Instant::now() < deadline =>
            {
                sleep(std::time::Duration::from_millis(20)).await;
            }
            outcome => return outcome,
        }
    }
}

/// How long `bind_retrying` tries again an address in use.
const BIND_RETRY_MS: u64 = 2_000;

/// Binds a listening socket with SO_REUSEADDR, so a restarted process can bind while
/// connections of the one before it (killed, say) linger in TIME_WAIT; with `share_port` also
/// SO_REUSEPORT (every shard on one client address). Without it a second listener on the
/// address fails to bind, as it should (the metrics and node-to-node listeners, one per
/// process; glommio's own `bind` sets SO_REUSEPORT and not SO_REUSEADDR, the wrong pair for
/// those).
pub fn bind(
    address: std::net::SocketAddr,
    share_port: bool,
) -> std::io::Result<glommio::net::TcpListener> {
    use std::os::fd::{FromRawFd, IntoRawFd};
    let domain = socket2::Domain::for_address(address);
    let socket = socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(share_port)?;
    socket.bind(&address.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    // SAFETY: the fd is a listening TCP socket we own; glommio takes ownership of it.
    Ok(unsafe { glommio::net::TcpListener::from_raw_fd(socket.into_raw_fd()) })
}

/// Binds this shard's client listeners and starts accepting; connections are served until
/// shutdown starts draining, when the listeners close.
pub async fn start(shard: Rc<Shard>) -> Result<(), StartError> {
    let mut bound = Vec::new();
    for configured in &shard.config.listeners.listeners {
        let address = configured.address;
        let protocol = configured.protocol.ok_or_else(|| {
            StartError::Other(format!(
                "listener {} has no security protocol (listener.security.protocol.map)",
                configured.name
            ))
        })?;
        let listener =
            bind(address, true).map_err(|source| StartError::Listen { address, source })?;
        let local = listener.local_addr().map_err(|error| StartError::Listen {
            address,
            source: std::io::Error::other(error.to_string()),
        })?;
        log::info!(
            "shard {} listening on {local} ({} {})",
            shard.id,
            configured.name,
            protocol.name()
        );
        let context = Rc::new(ListenerContext {
            name: configured.name.clone(),
            protocol,
        });
        bound.push((listener, local, context));
    }
    if shard.id == crate::shard::METADATA_SHARD {
        // Machine-readable lines for scripts and tests: every listener, then the readiness
        // line with the first one.
        for (_, local, context) in &bound {
            println!("sluice: listener {} on {local}", context.name);
        }
        if let Some((_, local, _)) = bound.first() {
            println!("sluice: listening on {local}");
        }
    }
    for (listener, _, context) in bound {
        glommio::spawn_local(accept(shard.clone(), listener, context)).detach();
    }
    Ok(())
}

async fn accept(
    shard: Rc<Shard>,
    listener: glommio::net::TcpListener,
    context: Rc<ListenerContext>,
) {
    loop {
        let accepted = futures_lite::future::or(async { Some(listener.accept().await) }, async {
            shard.shutdown.draining().await;
            None
        })
        .await;
        match accepted {
            None => {
                log::info!("shard {}: listener {} closed", shard.id, context.name);
                return;
            }
            Some(Ok(stream)) => {
                let shard = shard.clone();
                glommio::spawn_local(super::connection::serve(shard, stream, context.clone()))
                    .detach();
            }
            Some(Err(error)) => {
                crate::warn_limited!("shard {}: accept failed: {error}", shard.id);
                glommio::timer::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    }
}
