//! IRQ checks: the affinity of NVMe and NIC queue interrupts (spread one queue per CPU, so no
//! single shard's core absorbs every completion) and whether irqbalance is running.

use super::check::{Check, Fix, Status, Write};
use super::cpu::{online_cpus, parse_cpu_list};
use super::root::{describe, Root};

const INTERRUPTS: &str = "proc/interrupts";

/// Which device a queue interrupt belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Device {
    Nvme,
    Nic,
}

/// `(irq, name)` for every numbered line of /proc/interrupts; the name is the last column.
pub fn parse_interrupts(text: &str) -> Vec<(u32, String)> {
    text.lines()
        .filter_map(|line| {
            let mut columns = line.split_whitespace();
            let irq = columns.next()?.strip_suffix(':')?.parse().ok()?;
            let name = columns.next_back()?;
            Some((irq, name.to_string()))
        })
        .collect()
}

/// `nvme0q1` (not `nvme0q0`, the admin queue); `eth0-TxRx-3`, `ens1f0-rx-2`,
/// `virtio2-input.0` (virtio-net), `mlx5_comp4@pci:...`.
pub fn classify(name: &str) -> Option<Device> {
    if let Some(rest) = name.strip_prefix("nvme") {
        let (controller, queue) = rest.split_once('q')?;
        let numeric = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        return (numeric(controller) && numeric(queue) && queue != "0").then_some(Device::Nvme);
    }
    let lower = name.to_ascii_lowercase();
    let nic_queue = ["-txrx-", "-rx-", "-tx-", "mlx5_comp"]
        .iter()
        .any(|marker| lower.contains(marker));
    let virtio_net =
        lower.starts_with("virtio") && (lower.contains("-input.") || lower.contains("-output."));
    (nic_queue || virtio_net).then_some(Device::Nic)
}

fn affinity_path(irq: u32) -> String {
    format!("proc/irq/{irq}/smp_affinity_list")
}

/// Queue IRQs of `device` are spread when they use as many distinct CPU sets as there are
/// queues (or CPUs, if fewer). The fix pins queue `i` to the `i`-th online CPU, round robin.
pub fn affinity(root: &Root, device: Device) -> Check {
    let (setting, label) = match device {
        Device::Nvme => ("irq affinity nvme", "NVMe"),
        Device::Nic => ("irq affinity nic", "NIC"),
    };
    const RECOMMENDED: &str = "spread, 1 CPU per queue";
    let text = match root.read(INTERRUPTS) {
        Ok(text) => text,
        Err(error) => return Check::unknown(setting, RECOMMENDED, describe(&error)),
    };
    let irqs: Vec<u32> = parse_interrupts(&text)
        .into_iter()
        .filter(|(_, name)| classify(name) == Some(device))
        .map(|(irq, _)| irq)
        .collect();
    if irqs.is_empty() {
        return Check::unknown(setting, RECOMMENDED, format!("no {label} queue IRQs"));
    }
    let cpus = online_cpus(root);
    if cpus.is_empty() {
        return Check::unknown(setting, RECOMMENDED, "cannot read the online CPUs");
    }
    let mut lists = Vec::with_capacity(irqs.len());
    for &irq in &irqs {
        let list = root.read(&affinity_path(irq));
        match list.as_deref().ok().and_then(parse_cpu_list) {
            Some(cpus) => lists.push(cpus),
            None => return Check::unknown(setting, RECOMMENDED, format!("irq {irq}: {list:?}")),
        }
    }
    spread_verdict(setting, &irqs, &lists, &cpus)
}

fn spread_verdict(setting: &'static str, irqs: &[u32], lists: &[Vec<u32>], cpus: &[u32]) -> Check {
    assert_eq!(irqs.len(), lists.len(), "one affinity list per irq");
    let mut distinct: Vec<&Vec<u32>> = lists.iter().collect();
    distinct.sort();
    distinct.dedup();
    let current = match distinct.as_slice() {
        [only] => format!("{} IRQs on CPUs {}", irqs.len(), show_cpu_list(only)),
        _ => format!("{} IRQs on {} CPU sets", irqs.len(), distinct.len()),
    };
    let check = Check::new(setting, current, "spread, 1 CPU per queue");
    if distinct.len() >= irqs.len().min(cpus.len()) {
        return check;
    }
    let writes = irqs
        .iter()
        .zip(cpus.iter().cycle())
        .map(|(irq, cpu)| Write {
            path: affinity_path(*irq),
            value: cpu.to_string(),
        })
        .collect();
    let reason = format!(
        "{} queue IRQs share {} CPU set(s): their cores serve every completion",
        irqs.len(),
        distinct.len()
    );
    check
        .verdict(Status::Warn, reason)
        .fixed_by(Fix::Write(writes))
}

/// `0-3,8` style, for display.
fn show_cpu_list(cpus: &[u32]) -> String {
    let mut ranges: Vec<(u32, u32)> = Vec::new();
    for &cpu in cpus {
        match ranges.last_mut() {
            Some((_, last)) if *last + 1 == cpu => *last = cpu,
            _ => ranges.push((cpu, cpu)),
        }
    }
    let parts: Vec<String> = ranges
        .iter()
        .map(|(first, last)| match first == last {
            true => first.to_string(),
            false => format!("{first}-{last}"),
        })
        .collect();
    parts.join(",")
}

/// irqbalance moves queue IRQs onto the shards' cores and undoes pinning: WARN if running.
pub fn irqbalance(root: &Root) -> Check {
    const SETTING: &str = "irqbalance";
    let running = root
        .list("proc")
        .into_iter()
        .filter(|name| name.bytes().all(|b| b.is_ascii_digit()))
        .find(|pid| {
            root.read(&format!("proc/{pid}/comm"))
                .is_ok_and(|c| c == "irqbalance")
        });
    let Some(pid) = running else {
        return Check::new(SETTING, "not running", "not running");
    };
    Check::new(SETTING, format!("running (pid {pid})"), "not running")
        .verdict(Status::Warn, "it moves queue IRQs and undoes `--apply`")
        .fixed_by(Fix::Manual(
            "`systemctl disable --now irqbalance`, or set IRQBALANCE_BANNED_CPULIST to the \
             shard CPUs"
                .to_string(),
        ))
}

#[cfg(test)]
mod tests {
    use super::super::fixture::Fixture;
    use super::*;

    const INTERRUPTS_TEXT: &str = "\
           CPU0       CPU1       CPU2       CPU3
  0:         20          0          0          0   IO-APIC   2-edge      timer
 40:          0          0          0          0  PCI-MSIX-0000:01:00.0   0-edge      nvme0q0
 41:        100          0          0          0  PCI-MSIX-0000:01:00.0   1-edge      nvme0q1
 42:          0        200          0          0  PCI-MSIX-0000:01:00.0   2-edge      nvme0q2
 50:        300          0          0          0  PCI-MSIX-0000:02:00.0   0-edge      eth0-TxRx-0
 51:        400          0          0          0  PCI-MSIX-0000:02:00.0   1-edge      eth0-TxRx-1
 52:        500          0          0          0  PCI-MSIX-0000:02:00.0   2-edge      eth0-TxRx-2
 53:          1          0          0          0  PCI-MSIX-0000:02:00.0   3-edge      eth0
NMI:          0          0          0          0   Non-maskable interrupts
";

    fn machine() -> Fixture {
        let fixture = Fixture::new();
        fixture
            .file("proc/interrupts", INTERRUPTS_TEXT)
            .file("sys/devices/system/cpu/online", "0-3")
            .file("proc/irq/41/smp_affinity_list", "0-1")
            .file("proc/irq/42/smp_affinity_list", "2-3")
            .file("proc/irq/50/smp_affinity_list", "0-3")
            .file("proc/irq/51/smp_affinity_list", "0-3")
            .file("proc/irq/52/smp_affinity_list", "0-3");
        fixture
    }

    #[test]
    fn queue_names_are_classified() {
        assert_eq!(classify("nvme0q1"), Some(Device::Nvme));
        assert_eq!(classify("nvme12q33"), Some(Device::Nvme));
        assert_eq!(classify("nvme0q0"), None, "admin queue");
        assert_eq!(classify("eth0-TxRx-0"), Some(Device::Nic));
        assert_eq!(classify("ens1f0-rx-2"), Some(Device::Nic));
        assert_eq!(classify("virtio2-input.0"), Some(Device::Nic));
        assert_eq!(
            classify("virtio4-input"),
            None,
            "virtio-rng, not a NIC queue"
        );
        assert_eq!(classify("virtio0-config"), None);
        assert_eq!(classify("eth0"), None);
        assert_eq!(classify("timer"), None);
    }

    #[test]
    fn interrupts_parse_numbered_lines_only() {
        let parsed = parse_interrupts(INTERRUPTS_TEXT);
        assert_eq!(parsed.len(), 8);
        assert_eq!(parsed[2], (41, "nvme0q1".to_string()));
    }

    #[test]
    fn nvme_queues_on_disjoint_cpu_sets_are_ok() {
        let check = affinity(&machine().root(), Device::Nvme);
        assert_eq!(check.status, Status::Ok, "{check:?}");
        assert_eq!(check.current, "2 IRQs on 2 CPU sets");
    }

    #[test]
    fn nic_queues_sharing_one_set_warn_and_fix_round_robin() {
        let check = affinity(&machine().root(), Device::Nic);
        assert_eq!(check.status, Status::Warn);
        assert_eq!(check.current, "3 IRQs on CPUs 0-3");
        let Fix::Write(writes) = check.fix else {
            panic!("expected writes, got {:?}", check.fix);
        };
        let values: Vec<(&str, &str)> = writes
            .iter()
            .map(|w| (w.path.as_str(), w.value.as_str()))
            .collect();
        assert_eq!(
            values,
            [
                ("proc/irq/50/smp_affinity_list", "0"),
                ("proc/irq/51/smp_affinity_list", "1"),
                ("proc/irq/52/smp_affinity_list", "2"),
            ]
        );
    }

    #[test]
    fn no_queue_irqs_is_unknown() {
        let fixture = Fixture::new();
        fixture.file("proc/interrupts", "  0:  1  IO-APIC 2-edge timer");
        assert_eq!(
            affinity(&fixture.root(), Device::Nic).status,
            Status::Unknown
        );
    }

    #[test]
    fn irqbalance_running_warns() {
        let fixture = Fixture::new();
        fixture.file("proc/1/comm", "systemd");
        assert_eq!(irqbalance(&fixture.root()).status, Status::Ok);
        fixture.file("proc/812/comm", "irqbalance");
        let check = irqbalance(&fixture.root());
        assert_eq!(check.status, Status::Warn);
        assert_eq!(check.current, "running (pid 812)");
    }

    #[test]
    fn cpu_lists_display_as_ranges() {
        assert_eq!(show_cpu_list(&[0, 1, 2, 3, 8, 10, 11]), "0-3,8,10-11");
    }
}
