//! Works around glommio 0.9's detection of polled I/O (IOPOLL) support.
//!
//! glommio decides once per device and thread, on the first `DmaFile` opened there, whether
//! the device supports polled I/O, by reading the file's first block on the poll ring. If that
//! file is empty the read stops at end of file and "succeeds" even on devices without poll
//! queues (virtio, and NVMe without `nvme.poll_queues`), and every later DMA read on the
//! device then fails with EOPNOTSUPP. A partition's first open often creates an empty segment,
//! so before any segment file is opened on a device we open a one-block probe file there.
//!
//! The probe file is written off the shard (`blocking.rs`), once per device per shard thread.

use std::cell::RefCell;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::{blocking, io_error, StorageError, DMA_ALIGNMENT_BYTES};

/// Name of the probe file, created and removed inside the partition directory.
const PROBE_FILE_NAME: &str = ".sluice-dma-probe";

thread_local! {
    /// Devices (st_dev) already probed on this thread.
    static PROBED_DEVICES: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
}

/// Makes glommio probe `dir`'s device with a non-empty file, once per device and thread.
pub(crate) async fn probe_device(dir: &Path) -> Result<(), StorageError> {
    let owned = dir.to_path_buf();
    let device = blocking::run("stat partition dir", dir, move || {
        std::fs::metadata(&owned).map(|metadata| metadata.dev())
    })
    .await?;
    if PROBED_DEVICES.with(|probed| probed.borrow().contains(&device)) {
        return Ok(());
    }
    let path = dir.join(PROBE_FILE_NAME);
    let probe = path.clone();
    blocking::run("write probe", &path, move || {
        let mut file = std::fs::File::create(&probe)?;
        file.write_all(&[0u8; DMA_ALIGNMENT_BYTES as usize])?;
        file.sync_all()
    })
    .await?;
    let opened = glommio::io::DmaFile::open(&path).await;
    let closed = match opened {
        Ok(dma_file) => dma_file.close().await,
        Err(error) => Err(error),
    };
    let probe = path.clone();
    let removed = blocking::run("remove probe", &path, move || std::fs::remove_file(&probe)).await;
    closed.map_err(|error| io_error("open probe", &path, error))?;
    removed?;
    PROBED_DEVICES.with(|probed| probed.borrow_mut().push(device));
    Ok(())
}
