//! Network checks: the listen backlog (`net.core.somaxconn`) and socket buffer ceilings
//! (`net.core.rmem_max`/`wmem_max`, the maximum of `net.ipv4.tcp_rmem`/`tcp_wmem`).

use super::check::{write_all, Check, Status};
use super::root::{describe, Root};

/// Connection storms (every client reconnecting after a restart) overflow a 128/1024 backlog.
pub const SOMAXCONN_MIN: u64 = 4096;
/// A 10 Gb/s stream at 1 ms RTT needs ~1.25 MB in flight; 16 MiB leaves room for 100 Gb/s
/// links and longer paths.
pub const SOCKET_BUFFER_BYTES_MIN: u64 = 16 << 20;

const SOMAXCONN: &str = "proc/sys/net/core/somaxconn";

/// A single-number sysctl that must be at least `minimum`.
fn at_least(root: &Root, setting: &'static str, path: &str, minimum: u64, reason: &str) -> Check {
    let recommended = format!(">= {minimum}");
    let text = match root.read(path) {
        Ok(text) => text,
        Err(error) => return Check::unknown(setting, &recommended, describe(&error)),
    };
    let Ok(value) = text.parse::<u64>() else {
        return Check::unknown(setting, &recommended, format!("not a number: `{text}`"));
    };
    let check = Check::new(setting, text.as_str(), &recommended);
    if value >= minimum {
        return check;
    }
    check
        .verdict(Status::Warn, reason)
        .fixed_by(write_all(&[path.to_string()], &minimum.to_string()))
}

pub fn somaxconn(root: &Root) -> Check {
    at_least(
        root,
        "net.core.somaxconn",
        SOMAXCONN,
        SOMAXCONN_MIN,
        "reconnect storms overflow the listen backlog (SYNs dropped, 1 s retries)",
    )
}

pub fn rmem_max(root: &Root) -> Check {
    at_least(
        root,
        "net.core.rmem_max",
        "proc/sys/net/core/rmem_max",
        SOCKET_BUFFER_BYTES_MIN,
        "caps receive windows: produce throughput per connection",
    )
}

pub fn wmem_max(root: &Root) -> Check {
    at_least(
        root,
        "net.core.wmem_max",
        "proc/sys/net/core/wmem_max",
        SOCKET_BUFFER_BYTES_MIN,
        "caps send buffers: fetch throughput per connection",
    )
}

/// `tcp_rmem`/`tcp_wmem` (`min default max`): the autotuning maximum must reach 16 MiB. The
/// fix keeps min and default and raises only the maximum.
fn tcp_memory(root: &Root, setting: &'static str, path: &str) -> Check {
    let recommended = format!("max >= {SOCKET_BUFFER_BYTES_MIN}");
    let text = match root.read(path) {
        Ok(text) => text,
        Err(error) => return Check::unknown(setting, &recommended, describe(&error)),
    };
    let fields: Vec<u64> = text
        .split_whitespace()
        .filter_map(|f| f.parse().ok())
        .collect();
    let [min, default, max] = fields[..] else {
        return Check::unknown(
            setting,
            &recommended,
            format!("expected 3 numbers: `{text}`"),
        );
    };
    let check = Check::new(setting, format!("{min} {default} {max}"), &recommended);
    if max >= SOCKET_BUFFER_BYTES_MIN {
        return check;
    }
    let value = format!("{min} {default} {SOCKET_BUFFER_BYTES_MIN}");
    check
        .verdict(
            Status::Warn,
            "TCP autotuning stops below the bandwidth-delay product",
        )
        .fixed_by(write_all(&[path.to_string()], &value))
}

pub fn tcp_rmem(root: &Root) -> Check {
    tcp_memory(root, "net.ipv4.tcp_rmem", "proc/sys/net/ipv4/tcp_rmem")
}

pub fn tcp_wmem(root: &Root) -> Check {
    tcp_memory(root, "net.ipv4.tcp_wmem", "proc/sys/net/ipv4/tcp_wmem")
}

#[cfg(test)]
mod tests {
    use super::super::fixture::Fixture;
    use super::*;
    use crate::tune::check::{Fix, Write};

    #[test]
    fn somaxconn_below_4096_warns() {
        let fixture = Fixture::new();
        fixture.file(SOMAXCONN, "4096");
        assert_eq!(somaxconn(&fixture.root()).status, Status::Ok);
        fixture.file(SOMAXCONN, "128");
        let check = somaxconn(&fixture.root());
        assert_eq!(check.status, Status::Warn);
        let write = Write {
            path: SOMAXCONN.to_string(),
            value: "4096".to_string(),
        };
        assert_eq!(check.fix, Fix::Write(vec![write]));
    }

    #[test]
    fn buffer_maxima() {
        let fixture = Fixture::new();
        fixture
            .file("proc/sys/net/core/rmem_max", "212992")
            .file("proc/sys/net/core/wmem_max", "16777216");
        assert_eq!(rmem_max(&fixture.root()).status, Status::Warn);
        assert_eq!(wmem_max(&fixture.root()).status, Status::Ok);
    }

    #[test]
    fn tcp_memory_raises_only_the_maximum() {
        let fixture = Fixture::new();
        fixture
            .file("proc/sys/net/ipv4/tcp_rmem", "4096\t131072\t6291456")
            .file("proc/sys/net/ipv4/tcp_wmem", "4096 16384 33554432");
        let check = tcp_rmem(&fixture.root());
        assert_eq!(check.status, Status::Warn);
        let write = Write {
            path: "proc/sys/net/ipv4/tcp_rmem".to_string(),
            value: "4096 131072 16777216".to_string(),
        };
        assert_eq!(check.fix, Fix::Write(vec![write]));
        assert_eq!(tcp_wmem(&fixture.root()).status, Status::Ok);
        fixture.file("proc/sys/net/ipv4/tcp_wmem", "4096 16384");
        assert_eq!(tcp_wmem(&fixture.root()).status, Status::Unknown);
    }
}
