//! Block-device checks for NVMe drives: I/O scheduler `none` and `nomerges` 2.

use super::check::{bracketed, summarise, write_all, Check, Status};
use super::root::{describe, Root};

const BLOCK_DIR: &str = "sys/block";
/// `nomerges` 2: the block layer does not even try to merge requests.
pub const NOMERGES_RECOMMENDED: &str = "2";

/// NVMe namespaces under /sys/block that have a request queue (`nvme0n1`; not the hidden
/// multipath `nvme0c0n1` nodes, which have no scheduler file).
fn nvme_devices(root: &Root) -> Vec<String> {
    root.list(BLOCK_DIR)
        .into_iter()
        .filter(|name| name.starts_with("nvme"))
        .filter(|name| root.path(&queue_file(name, "scheduler")).exists())
        .collect()
}

fn queue_file(device: &str, file: &str) -> String {
    format!("{BLOCK_DIR}/{device}/queue/{file}")
}

/// Reads `queue/<file>` of every NVMe device, takes its value with `current_of`, and wants
/// `recommended` on each; the fix writes only the devices that differ.
fn check_queues(
    root: &Root,
    setting: &'static str,
    file: &str,
    recommended: &str,
    current_of: fn(&str) -> Option<&str>,
    reason: &str,
) -> Check {
    let devices = nvme_devices(root);
    if devices.is_empty() {
        return Check::unknown(setting, recommended, "no NVMe devices");
    }
    let mut values = Vec::with_capacity(devices.len());
    let mut wrong = Vec::new();
    for device in &devices {
        let path = queue_file(device, file);
        let text = match root.read(&path) {
            Ok(text) => text,
            Err(error) => return Check::unknown(setting, recommended, describe(&error)),
        };
        let Some(current) = current_of(&text) else {
            return Check::unknown(setting, recommended, format!("{device}: `{text}`"));
        };
        if current != recommended {
            wrong.push(path);
        }
        values.push(current.to_string());
    }
    let check = Check::new(setting, summarise(&values), recommended);
    if wrong.is_empty() {
        return check;
    }
    check
        .verdict(
            Status::Warn,
            format!(
                "{} of {} NVMe devices: {reason}",
                wrong.len(),
                devices.len()
            ),
        )
        .fixed_by(write_all(&wrong, recommended))
}

/// A file whose whole contents are the value.
fn whole(text: &str) -> Option<&str> {
    Some(text)
}

/// `queue/scheduler` → `none`: NVMe has deep hardware queues; a scheduler adds CPU and latency.
pub fn scheduler(root: &Root) -> Check {
    check_queues(
        root,
        "nvme scheduler",
        "scheduler",
        "none",
        bracketed,
        "a software scheduler adds CPU work and latency",
    )
}

/// `queue/nomerges` → 2: the broker already writes large, aligned, sequential blocks.
pub fn nomerges(root: &Root) -> Check {
    check_queues(
        root,
        "nvme nomerges",
        "nomerges",
        NOMERGES_RECOMMENDED,
        whole,
        "merge attempts cost CPU for writes that are already large",
    )
}

#[cfg(test)]
mod tests {
    use super::super::fixture::Fixture;
    use super::*;
    use crate::tune::check::{Fix, Write};

    fn two_drives(scheduler_1: &str, nomerges_1: &str) -> Fixture {
        let fixture = Fixture::new();
        fixture
            .file(
                "sys/block/nvme0n1/queue/scheduler",
                "[none] mq-deadline kyber",
            )
            .file("sys/block/nvme0n1/queue/nomerges", "2")
            .file("sys/block/nvme1n1/queue/scheduler", scheduler_1)
            .file("sys/block/nvme1n1/queue/nomerges", nomerges_1)
            .file("sys/block/sda/queue/scheduler", "[mq-deadline] none");
        fixture
    }

    #[test]
    fn none_and_nomerges_2_are_ok() {
        let fixture = two_drives("[none] mq-deadline", "2");
        assert_eq!(scheduler(&fixture.root()).status, Status::Ok);
        assert_eq!(nomerges(&fixture.root()).status, Status::Ok);
    }

    #[test]
    fn wrong_drive_warns_and_is_the_only_one_fixed() {
        let fixture = two_drives("none [mq-deadline]", "0");
        let check = scheduler(&fixture.root());
        assert_eq!(check.status, Status::Warn);
        assert_eq!(check.current, "none ×1, mq-deadline ×1");
        let write = Write {
            path: "sys/block/nvme1n1/queue/scheduler".to_string(),
            value: "none".to_string(),
        };
        assert_eq!(check.fix, Fix::Write(vec![write]));
        assert_eq!(nomerges(&fixture.root()).status, Status::Warn);
    }

    #[test]
    fn no_nvme_is_unknown() {
        let fixture = Fixture::new();
        fixture.file("sys/block/vda/queue/scheduler", "[none]");
        assert_eq!(scheduler(&fixture.root()).status, Status::Unknown);
        assert_eq!(nomerges(&fixture.root()).status, Status::Unknown);
    }
}
