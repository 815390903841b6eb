//! The clean-shutdown marker (Kafka's `.kafka_cleanshutdown`): `<log.dirs>/.sluice_clean_shutdown`
//! exists only between a shutdown that closed every partition log cleanly (flushed, fdatasynced,
//! indexes written, last segments trimmed) and the next start. The next start takes it — reads
//! and durably removes it before any partition opens, so a crash during that run is never
//! mistaken for a clean stop — and recovers with `Recovery::AfterCleanShutdown`.
//!
//! Both functions run outside any executor (before the shards start, after they stopped), so
//! they use `std::fs`.

use std::io::Write;
use std::path::Path;

pub const FILE_NAME: &str = ".sluice_clean_shutdown";

/// Writes the marker durably (file, then directory).
pub fn write(data_dir: &Path) -> std::io::Result<()> {
    let mut file = std::fs::File::create(data_dir.join(FILE_NAME))?;
    file.write_all(b"clean\n")?;
    file.sync_all()?;
    std::fs::File::open(data_dir)?.sync_all()
}

/// True if the last run stopped cleanly; the marker is gone (durably) when this returns.
pub fn take(data_dir: &Path) -> std::io::Result<bool> {
    match std::fs::remove_file(data_dir.join(FILE_NAME)) {
        Ok(()) => {
            std::fs::File::open(data_dir)?.sync_all()?;
            Ok(true)
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(error) => Err(error),
    }
}
