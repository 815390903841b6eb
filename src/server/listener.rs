//! The Kafka listener of one shard. Every shard binds the same address with SO_REUSEPORT
//! (glommio's `TcpListener::bind` sets it), so the kernel spreads connections over shards; a
//! connection stays on the shard that accepted it.

use std::rc::Rc;

use crate::shard::pool::StartError;
use crate::shard::Shard;

pub async fn serve(shard: Rc<Shard>) -> Result<(), StartError> {
    let address = shard.config.listen;
    let listener =
        glommio::net::TcpListener::bind(address).map_err(|error| StartError::Listen {
            address,
            source: std::io::Error::other(error.to_string()),
        })?;
    let local = listener.local_addr().map_err(|error| StartError::Listen {
        address,
        source: std::io::Error::other(error.to_string()),
    })?;
    log::info!("shard {} listening on {local}", shard.id);
    if shard.id == 0 {
        // Machine-readable readiness line for scripts and tests.
        println!("sluice: listening on {local}");
    }
    loop {
        match listener.accept().await {
            Ok(stream) => {
                let shard = shard.clone();
                glommio::spawn_local(super::connection::serve(shard, stream)).detach();
            }
            Err(error) => {
                log::warn!("shard {}: accept failed: {error}", shard.id);
                glommio::timer::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    }
}
