//! Limits: the process's locked-memory and open-file limits (RLIMIT_MEMLOCK, RLIMIT_NOFILE),
//! the kernel's AIO event limit and whether io_uring is allowed at all.
//!
//! Resource limits are read with `getrlimit` (or passed in, by tests and by `--memlock` /
//! `--nofile` to check a service's configured limits). A process cannot raise its parent's
//! limits, so `--apply` only explains how to set them.

use super::check::{write_all, Check, Fix, Status};
use super::root::{describe, Root};
use crate::shard::pool::{IO_MEMORY_BYTES_MAX, MEMLOCK_BYTES_MIN};

/// Each partition holds three files per segment and each connection a socket: a broker with
/// thousands of partitions and clients needs far more than the usual 1024.
pub const NOFILE_MIN: u64 = 1 << 20;
/// Kernel-wide AIO events: Sluice uses io_uring, but storage software sharing the host often
/// uses Linux AIO and fails with EAGAIN once the default 65536 is exhausted.
pub const AIO_MAX_NR_MIN: u64 = 1 << 20;

const AIO_MAX_NR: &str = "proc/sys/fs/aio-max-nr";
const IO_URING_DISABLED: &str = "proc/sys/kernel/io_uring_disabled";

/// A resource limit's soft value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    Unlimited,
    Value(u64),
}

impl Limit {
    /// `unlimited` or a number.
    pub fn parse(text: &str) -> Option<Limit> {
        match text {
            "unlimited" | "infinity" => Some(Limit::Unlimited),
            _ => text.parse().ok().map(Limit::Value),
        }
    }

    fn at_least(self, minimum: u64) -> bool {
        match self {
            Limit::Unlimited => true,
            Limit::Value(value) => value >= minimum,
        }
    }

    fn show(self) -> String {
        match self {
            Limit::Unlimited => "unlimited".to_string(),
            Limit::Value(value) => value.to_string(),
        }
    }
}

/// The limits checked; `None` means unreadable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessLimits {
    pub memlock_bytes: Option<Limit>,
    pub nofile: Option<Limit>,
}

impl ProcessLimits {
    /// This process's soft limits.
    pub fn read() -> ProcessLimits {
        ProcessLimits {
            memlock_bytes: soft_limit(libc::RLIMIT_MEMLOCK),
            nofile: soft_limit(libc::RLIMIT_NOFILE),
        }
    }
}

fn soft_limit(resource: libc::__rlimit_resource_t) -> Option<Limit> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(resource, &mut limit) } != 0 {
        return None;
    }
    if limit.rlim_cur == libc::RLIM_INFINITY {
        return Some(Limit::Unlimited);
    }
    Some(Limit::Value(limit.rlim_cur))
}

/// RLIMIT_MEMLOCK: below 512 KiB glommio refuses to start (FAIL); below what every shard's
/// registered buffers want (2 × 10 MiB per CPU) the broker registers less (WARN).
pub fn memlock(limits: &ProcessLimits, cpus: usize) -> Check {
    const SETTING: &str = "memlock (ulimit -l)";
    let Some(limit) = limits.memlock_bytes else {
        return Check::unknown(SETTING, "unlimited", "getrlimit failed");
    };
    let wanted = 2 * IO_MEMORY_BYTES_MAX * cpus.max(1) as u64;
    let check = Check::new(SETTING, limit.show(), "unlimited");
    let how = Fix::Manual(
        "`* - memlock unlimited` in /etc/security/limits.conf (log in again), \
         LimitMEMLOCK=infinity in a systemd unit, or `ulimit -l unlimited` as root"
            .to_string(),
    );
    if !limit.at_least(MEMLOCK_BYTES_MIN) {
        let reason = format!("glommio needs at least {MEMLOCK_BYTES_MIN} bytes");
        return check.verdict(Status::Fail, reason).fixed_by(how);
    }
    if !limit.at_least(wanted) {
        let reason = format!("shards register fewer io_uring buffers (want {wanted} bytes)");
        return check.verdict(Status::Warn, reason).fixed_by(how);
    }
    check
}

/// RLIMIT_NOFILE ≥ 1048576.
pub fn open_files(limits: &ProcessLimits) -> Check {
    const SETTING: &str = "open files (ulimit -n)";
    let recommended = format!(">= {NOFILE_MIN}");
    let Some(limit) = limits.nofile else {
        return Check::unknown(SETTING, &recommended, "getrlimit failed");
    };
    let check = Check::new(SETTING, limit.show(), &recommended);
    if limit.at_least(NOFILE_MIN) {
        return check;
    }
    check
        .verdict(
            Status::Warn,
            "segments and connections run out of file descriptors",
        )
        .fixed_by(Fix::Manual(format!(
            "`* - nofile {NOFILE_MIN}` in /etc/security/limits.conf, LimitNOFILE={NOFILE_MIN} \
             in a systemd unit, or `ulimit -n {NOFILE_MIN}`"
        )))
}

/// `fs.aio-max-nr` ≥ 1048576.
pub fn aio_max_nr(root: &Root) -> Check {
    const SETTING: &str = "fs.aio-max-nr";
    let recommended = format!(">= {AIO_MAX_NR_MIN}");
    let text = match root.read(AIO_MAX_NR) {
        Ok(text) => text,
        Err(error) => return Check::unknown(SETTING, &recommended, describe(&error)),
    };
    let Ok(value) = text.parse::<u64>() else {
        return Check::unknown(SETTING, &recommended, format!("not a number: `{text}`"));
    };
    let check = Check::new(SETTING, text.as_str(), &recommended);
    if value >= AIO_MAX_NR_MIN {
        return check;
    }
    check
        .verdict(
            Status::Warn,
            "io_setup fails with EAGAIN once the host runs out",
        )
        .fixed_by(write_all(
            &[AIO_MAX_NR.to_string()],
            &AIO_MAX_NR_MIN.to_string(),
        ))
}

/// `kernel.io_uring_disabled` = 0 (absent before Linux 6.6, where io_uring is always on).
/// 1 allows only root and `kernel.io_uring_group`; 2 disables it: glommio cannot run.
pub fn io_uring(root: &Root) -> Check {
    const SETTING: &str = "kernel.io_uring_disabled";
    let text = match root.read(IO_URING_DISABLED) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return Check::new(SETTING, "absent (enabled)", "0");
        }
        Err(error) => return Check::unknown(SETTING, "0", describe(&error)),
    };
    let check = Check::new(SETTING, text.as_str(), "0");
    let fix = write_all(&[IO_URING_DISABLED.to_string()], "0");
    match text.as_str() {
        "0" => check,
        "1" => check
            .verdict(
                Status::Warn,
                "io_uring only for root and kernel.io_uring_group",
            )
            .fixed_by(fix),
        _ => check
            .verdict(Status::Fail, "io_uring is disabled: glommio cannot run")
            .fixed_by(fix),
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixture::Fixture;
    use super::*;

    fn limits(memlock_bytes: Option<Limit>, nofile: Option<Limit>) -> ProcessLimits {
        ProcessLimits {
            memlock_bytes,
            nofile,
        }
    }

    #[test]
    fn limits_parse() {
        assert_eq!(Limit::parse("unlimited"), Some(Limit::Unlimited));
        assert_eq!(Limit::parse("65536"), Some(Limit::Value(65536)));
        assert_eq!(Limit::parse("lots"), None);
    }

    #[test]
    fn memlock_fails_below_glommio_minimum_and_warns_below_buffers() {
        let low = limits(Some(Limit::Value(64 << 10)), None);
        let check = memlock(&low, 4);
        assert_eq!(check.status, Status::Fail);
        assert!(matches!(check.fix, Fix::Manual(_)));
        let middling = limits(Some(Limit::Value(8 << 20)), None);
        assert_eq!(memlock(&middling, 4).status, Status::Warn);
        let enough = limits(Some(Limit::Value(80 << 20)), None);
        assert_eq!(memlock(&enough, 4).status, Status::Ok);
        assert_eq!(
            memlock(&limits(Some(Limit::Unlimited), None), 64).status,
            Status::Ok
        );
        assert_eq!(memlock(&limits(None, None), 4).status, Status::Unknown);
    }

    #[test]
    fn the_real_limits_are_readable() {
        let real = ProcessLimits::read();
        assert!(
            real.memlock_bytes.is_some() && real.nofile.is_some(),
            "{real:?}"
        );
    }

    #[test]
    fn open_files_below_a_million_warns() {
        let check = open_files(&limits(None, Some(Limit::Value(1024))));
        assert_eq!(
            (check.status, check.current.as_str()),
            (Status::Warn, "1024")
        );
        let check = open_files(&limits(None, Some(Limit::Value(NOFILE_MIN))));
        assert_eq!(check.status, Status::Ok);
    }

    #[test]
    fn aio_max_nr_below_minimum_warns() {
        let fixture = Fixture::new();
        fixture.file(AIO_MAX_NR, "65536");
        assert_eq!(aio_max_nr(&fixture.root()).status, Status::Warn);
        fixture.file(AIO_MAX_NR, "1048576");
        assert_eq!(aio_max_nr(&fixture.root()).status, Status::Ok);
        assert_eq!(aio_max_nr(&Fixture::new().root()).status, Status::Unknown);
    }

    #[test]
    fn io_uring_disabled_values() {
        let fixture = Fixture::new();
        assert_eq!(
            io_uring(&fixture.root()).status,
            Status::Ok,
            "absent = enabled"
        );
        fixture.file(IO_URING_DISABLED, "0");
        assert_eq!(io_uring(&fixture.root()).status, Status::Ok);
        fixture.file(IO_URING_DISABLED, "1");
        assert_eq!(io_uring(&fixture.root()).status, Status::Warn);
        fixture.file(IO_URING_DISABLED, "2");
        assert_eq!(io_uring(&fixture.root()).status, Status::Fail);
    }
}
