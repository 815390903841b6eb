//! Works around glommio 0.9's detection of polled I/O (IOPOLL) support.
//!
//! glommio decides once per device and thread, on the first `DmaFile` opened there, whether
//! the device supports polled I/O, by reading the file's first block on the poll ring. If that
//! file is empty the read stops at end of file and "succeeds" even on devices without poll
//! queues (virtio, and NVMe without `nvme.poll_queues`), and every later DMA read on the
//! device then fails with EOPNOTSUPP. A partition's first open often creates an empty segment,
//! so before any segment file is opened on a device we open a one-block probe file there.
//!
//! Start-up only: uses `std::fs` for the probe file (once per device per shard thread).

use std::cell::RefCell;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::{io_error, StorageError, DMA_ALIGNMENT_BYTES};

/// Name of the probe file, created and removed inside the partition directory.
const PROBE_FILE_NAME: &str = ".sluice-dma-probe";

thread_local! {
    /// Devices (st_dev) already probed on this thread.
    static PROBED_DEVICES: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
}

/// Makes glommio probe `dir`'s device with a non-empty file, once per device and thread.
pub(crate) async fn probe_device(dir: &Path) -> Result<(), StorageError> {
    let io = |op, source| StorageError::Io {
        op,
        path: dir.to_path_buf(),
        source,
    };
    let device = std::fs::metadata(dir)
        .map_err(|error| io("stat partition dir", error))?
        .dev();
    if PROBED_DEVICES.with(|probed| probed.borrow().contains(&device)) {
        return Ok(());
    }
    let path = dir.join(PROBE_FILE_NAME);
    let mut file = std::fs::File::create(&path).map_err(|error| io("create probe", error))?;
    file.write_all(&[0u8; DMA_ALIGNMENT_BYTES as usize])
        .and_then(|()| file.sync_all())
        .map_err(|error| io("write probe", error))?;
    drop(file);
    let opened = glommio::io::DmaFile::open(&path).await;
    let closed = match opened {
        Ok(dma_file) => dma_file.close().await,
        Err(error) => Err(error),
    };
    let removed = std::fs::remove_file(&path);
    closed.map_err(|error| io_error("open probe", &path, error))?;
    removed.map_err(|error| io("remove probe", error))?;
    PROBED_DEVICES.with(|probed| probed.borrow_mut().push(device));
    Ok(())
}
