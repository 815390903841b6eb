//! Kernel TLS (kTLS): whether this kernel can take a TLS session's keys (`TCP_ULP "tls"`), so
//! that records are encrypted in the kernel and Fetch responses keep their zero-copy path.
//!
//! The probe runs once at start, on a loopback connection made for it (std::net: no shard runs
//! yet), and its result is logged with the TLS mode in use. Handing the keys over after the
//! handshake is not built: the kernels Sluice has been developed and tested on so far have no
//! TLS upper-layer protocol (`CONFIG_TLS` unset; the probe answers ENOENT), so the offload could
//! not be exercised, and every session is encrypted by rustls in user space (one copy of the
//! record bytes into TLS records, and the encryption pass). `sluice_tls_sessions_total{mode}`
//! counts sessions by mode.

use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;

/// Ok if the kernel accepts the TLS upper-layer protocol on a TCP socket; Err says why not.
pub fn probe() -> Result<(), String> {
    let listener =
        TcpListener::bind("127.0.0.1:0").map_err(|error| format!("probe socket: {error}"))?;
    let address = listener
        .local_addr()
        .map_err(|error| format!("probe socket: {error}"))?;
    let client = TcpStream::connect(address).map_err(|error| format!("probe connect: {error}"))?;
    let (_server, _) = listener
        .accept()
        .map_err(|error| format!("probe accept: {error}"))?;
    let name = b"tls";
    // SAFETY: setsockopt on a connected TCP socket we own, with a valid buffer and length.
    let result = unsafe {
        libc::setsockopt(
            client.as_raw_fd(),
            libc::SOL_TCP,
            libc::TCP_ULP,
            name.as_ptr().cast(),
            name.len() as libc::socklen_t,
        )
    };
    if result == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error().to_string())
    }
}

/// Logs which TLS mode sessions use, with the probe's answer.
pub fn log_mode(wanted: bool) {
    if !wanted {
        log::info!("TLS: rustls in user space (ssl.ktls.enable=false)");
        return;
    }
    match probe() {
        Ok(()) => log::info!(
            "TLS: rustls in user space; this kernel offers kTLS, but handing sessions to it is \
             not built yet"
        ),
        Err(reason) => log::info!("TLS: rustls in user space (kernel TLS unavailable: {reason})"),
    }
}

#[cfg(test)]
mod tests {
    /// The probe answers either way without panicking, and closes what it opened.
    #[test]
    fn probe_answers() {
        let _ = super::probe();
    }
}
