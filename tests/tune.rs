//! `sluice tune` end to end: the real binary against fixture trees standing in for /sys and
//! /proc (`--root`), with the resource limits given on the command line so the outcome does
//! not depend on the machine running the test.

use std::path::Path;
use std::process::{Command, Output};

fn write(root: &Path, relative: &str, contents: &str) {
    let path = root.join(relative);
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, format!("{contents}\n")).expect("write fixture");
}

fn read(root: &Path, relative: &str) -> String {
    let text = std::fs::read_to_string(root.join(relative)).expect("read fixture");
    text.trim().to_string()
}

/// A one-CPU machine with one NVMe drive, tuned except for `swappiness` and `io_uring`.
fn machine(swappiness: &str, io_uring_disabled: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let files = [
        ("sys/devices/system/cpu/online", "0"),
        (
            "sys/devices/system/cpu/cpu0/cpufreq/scaling_governor",
            "performance",
        ),
        (
            "sys/devices/system/clocksource/clocksource0/current_clocksource",
            "tsc",
        ),
        (
            "sys/devices/system/clocksource/clocksource0/available_clocksource",
            "tsc hpet",
        ),
        (
            "sys/kernel/mm/transparent_hugepage/enabled",
            "always madvise [never]",
        ),
        ("proc/sys/vm/swappiness", swappiness),
        ("proc/sys/fs/aio-max-nr", "1048576"),
        ("proc/sys/kernel/io_uring_disabled", io_uring_disabled),
        ("sys/block/nvme0n1/queue/scheduler", "[none] mq-deadline"),
        ("sys/block/nvme0n1/queue/nomerges", "2"),
        (
            "proc/interrupts",
            "  CPU0\n 41: 7 PCI-MSIX 1-edge nvme0q1\n 50: 9 PCI-MSIX 0-edge eth0-TxRx-0",
        ),
        ("proc/irq/41/smp_affinity_list", "0"),
        ("proc/irq/50/smp_affinity_list", "0"),
        ("proc/sys/net/core/somaxconn", "4096"),
        ("proc/sys/net/core/rmem_max", "16777216"),
        ("proc/sys/net/core/wmem_max", "16777216"),
        ("proc/sys/net/ipv4/tcp_rmem", "4096 131072 16777216"),
        ("proc/sys/net/ipv4/tcp_wmem", "4096 16384 16777216"),
        ("proc/self/mounts", "/dev/nvme0n1 /srv ext4 rw,noatime 0 0"),
    ];
    for (relative, contents) in files {
        write(dir.path(), relative, contents);
    }
    dir
}

fn tune(root: &Path, extra: &[&str]) -> (i32, String) {
    let output: Output = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("tune")
        .arg("--root")
        .arg(root)
        .args(["--memlock", "unlimited", "--nofile", "unlimited"])
        .args(["--data-dir", "/srv/sluice/data"])
        .args(extra)
        .output()
        .expect("run sluice tune");
    let stdout = String::from_utf8(output.stdout).expect("utf-8 stdout");
    (output.status.code().expect("exit code"), stdout)
}

/// The row of `setting` split into cells.
fn row<'a>(table: &'a str, setting: &str) -> Vec<&'a str> {
    let line = table
        .lines()
        .find(|line| line.starts_with(setting))
        .unwrap_or_else(|| panic!("no row {setting} in\n{table}"));
    line[setting.len()..]
        .split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect()
}

#[test]
fn a_tuned_machine_passes_with_exit_0() {
    let root = machine("1", "0");
    let (code, table) = tune(root.path(), &[]);
    assert_eq!(code, 0, "{table}");
    let header: Vec<&str> = table
        .lines()
        .next()
        .expect("header")
        .split_whitespace()
        .collect();
    assert_eq!(header, ["setting", "current", "recommended", "status"]);
    assert_eq!(row(&table, "vm.swappiness"), ["1", "1", "OK"]);
    assert_eq!(row(&table, "nvme scheduler"), ["none", "none", "OK"]);
    assert_eq!(
        row(&table, "transparent huge pages"),
        ["never", "madvise or never", "OK"]
    );
    assert!(
        table.contains("19 settings: 19 OK, 0 WARN, 0 FAIL, 0 UNKNOWN"),
        "{table}"
    );
}

#[test]
fn a_failing_setting_exits_1_and_nothing_changes_without_apply() {
    let root = machine("60", "2");
    let (code, table) = tune(root.path(), &[]);
    assert_eq!(code, 1, "{table}");
    assert_eq!(row(&table, "vm.swappiness"), ["60", "1", "WARN"]);
    assert_eq!(row(&table, "kernel.io_uring_disabled"), ["2", "0", "FAIL"]);
    assert!(
        table.contains("--apply writes `1` to /proc/sys/vm/swappiness"),
        "{table}"
    );
    assert_eq!(read(root.path(), "proc/sys/vm/swappiness"), "60");
    assert_eq!(read(root.path(), "proc/sys/kernel/io_uring_disabled"), "2");
}

#[test]
fn apply_writes_the_recommended_values_then_passes() {
    let root = machine("60", "2");
    let (code, report) = tune(root.path(), &["--apply"]);
    assert_eq!(code, 0, "{report}");
    assert!(
        report.contains("changed     kernel.io_uring_disabled"),
        "{report}"
    );
    assert_eq!(read(root.path(), "proc/sys/vm/swappiness"), "1");
    assert_eq!(read(root.path(), "proc/sys/kernel/io_uring_disabled"), "0");
    let (code, table) = tune(root.path(), &[]);
    assert_eq!(code, 0, "{table}");
}

#[test]
fn json_output_and_bad_usage() {
    let root = machine("60", "0");
    let (code, json) = tune(root.path(), &["--json"]);
    assert_eq!(code, 0);
    assert!(json.starts_with("{\"checks\":["), "{json}");
    assert!(
        json.contains("{\"setting\":\"vm.swappiness\",\"current\":\"60\""),
        "{json}"
    );
    assert_eq!(tune(root.path(), &["--frobnicate"]).0, 2);
}
