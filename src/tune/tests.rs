//! Whole-run tests against a fixture tree: check-only changes nothing; `--apply` writes the
//! recommended values and a re-check passes.

use std::collections::BTreeMap;
use std::path::Path;

use super::fixture::Fixture;
use super::*;

const DATA_DIR: &str = "/srv/sluice";
const MOUNTS_DISCARD: &str = "/dev/nvme0n1 / ext4 rw,relatime,discard 0 0";

/// A two-CPU machine with one NVMe drive and a NIC where every setting needs tuning.
fn untuned() -> Fixture {
    let fixture = Fixture::new();
    fixture
        .file("sys/devices/system/cpu/online", "0-1")
        .file(
            "sys/devices/system/cpu/cpu0/cpufreq/scaling_governor",
            "powersave",
        )
        .file(
            "sys/devices/system/cpu/cpu1/cpufreq/scaling_governor",
            "powersave",
        )
        .file(
            "sys/devices/system/clocksource/clocksource0/current_clocksource",
            "hpet",
        )
        .file(
            "sys/devices/system/clocksource/clocksource0/available_clocksource",
            "tsc hpet",
        )
        .file(
            "sys/kernel/mm/transparent_hugepage/enabled",
            "[always] madvise never",
        )
        .file("proc/sys/vm/swappiness", "60")
        .file("proc/sys/fs/aio-max-nr", "65536")
        .file("proc/sys/kernel/io_uring_disabled", "2")
        .file("sys/block/nvme0n1/queue/scheduler", "none [mq-deadline]")
        .file("sys/block/nvme0n1/queue/nomerges", "0")
        .file(
            "proc/interrupts",
            "  CPU0 CPU1\n 41: 1 0 PCI-MSIX 1-edge nvme0q1\n 42: 1 0 PCI-MSIX 2-edge nvme0q2\n \
             50: 1 0 PCI-MSIX 0-edge eth0-TxRx-0\n 51: 1 0 PCI-MSIX 1-edge eth0-TxRx-1",
        )
        .file("proc/irq/41/smp_affinity_list", "0-1")
        .file("proc/irq/42/smp_affinity_list", "0-1")
        .file("proc/irq/50/smp_affinity_list", "0")
        .file("proc/irq/51/smp_affinity_list", "0")
        .file("proc/1/comm", "systemd")
        .file("proc/sys/net/core/somaxconn", "128")
        .file("proc/sys/net/core/rmem_max", "212992")
        .file("proc/sys/net/core/wmem_max", "212992")
        .file("proc/sys/net/ipv4/tcp_rmem", "4096 131072 6291456")
        .file("proc/sys/net/ipv4/tcp_wmem", "4096 16384 4194304")
        .file("proc/self/mounts", MOUNTS_DISCARD);
    fixture
}

fn unlimited() -> ProcessLimits {
    ProcessLimits {
        memlock_bytes: Some(Limit::Unlimited),
        nofile: Some(Limit::Unlimited),
    }
}

/// Runs `sluice tune` on the fixture; returns the exit status and the report.
fn tune(fixture: &Fixture, extra: &[&str]) -> (u8, String) {
    let mut out = Vec::new();
    let code = run(&args(fixture, extra), &mut out);
    (code, String::from_utf8(out).expect("utf-8 report"))
}

fn args(fixture: &Fixture, extra: &[&str]) -> Vec<String> {
    let root = fixture.path().display().to_string();
    let mut args: Vec<String> = [
        "--root",
        &root,
        "--memlock",
        "unlimited",
        "--nofile",
        "unlimited",
        "--data-dir",
        DATA_DIR,
    ]
    .iter()
    .map(|arg| arg.to_string())
    .collect();
    args.extend(extra.iter().map(|arg| arg.to_string()));
    args
}

/// Every file under `dir` with its contents.
fn snapshot(dir: &Path) -> BTreeMap<String, String> {
    let mut files = BTreeMap::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(next) = pending.pop() {
        for entry in std::fs::read_dir(&next).expect("read_dir").flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else {
                let text = std::fs::read_to_string(&path).expect("read");
                files.insert(path.display().to_string(), text);
            }
        }
    }
    files
}

#[test]
fn every_setting_of_the_untuned_machine_is_flagged() {
    let fixture = untuned();
    let checks = check_all(&fixture.root(), &unlimited(), Path::new(DATA_DIR));
    let not_ok: Vec<&str> = checks
        .iter()
        .filter(|check| check.status != Status::Ok)
        .map(|check| check.setting)
        .collect();
    let expected_ok = [
        "memlock (ulimit -l)",
        "open files (ulimit -n)",
        "irqbalance",
    ];
    assert_eq!(not_ok.len() + expected_ok.len(), checks.len(), "{not_ok:?}");
    assert_eq!(exit_code(&checks), 1, "io_uring_disabled=2 fails");
}

#[test]
fn check_only_changes_nothing_and_apply_fixes_everything() {
    let fixture = untuned();
    let before = snapshot(fixture.path());
    let (code, text) = tune(&fixture, &[]);
    assert_eq!(code, 1);
    assert!(
        text.contains("19 settings: 3 OK, 15 WARN, 1 FAIL, 0 UNKNOWN"),
        "{text}"
    );
    assert_eq!(tune(&fixture, &["--json"]).0, 1);
    assert_eq!(snapshot(fixture.path()), before, "no write without --apply");

    let (code, text) = tune(&fixture, &["--apply"]);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("changed     vm.swappiness: wrote `1` to"),
        "{text}"
    );
    assert!(text.contains("after:"), "{text}");
    assert!(
        text.contains("by hand     data dir discard: mount -o remount,nodiscard /,"),
        "{text}"
    );
    // What the operator does by hand: remount without discard.
    fixture.file("proc/self/mounts", &MOUNTS_DISCARD.replace(",discard", ""));
    let checks = check_all(&fixture.root(), &unlimited(), Path::new(DATA_DIR));
    for check in &checks {
        assert_eq!(check.status, Status::Ok, "{check:?}");
    }
    let cpu1 = "sys/devices/system/cpu/cpu1/cpufreq/scaling_governor";
    assert_eq!(fixture.read(cpu1), "performance");
    assert_eq!(fixture.read("proc/sys/vm/swappiness"), "1");
    assert_eq!(fixture.read("sys/block/nvme0n1/queue/scheduler"), "none");
    assert_eq!(fixture.read("proc/irq/51/smp_affinity_list"), "1");
    assert_eq!(
        fixture.read("proc/sys/net/ipv4/tcp_rmem"),
        "4096 131072 16777216"
    );
    let (code, text) = tune(&fixture, &[]);
    assert_eq!(code, 0);
    assert!(
        text.contains("19 settings: 19 OK, 0 WARN, 0 FAIL, 0 UNKNOWN"),
        "{text}"
    );
}

#[test]
fn apply_reports_manual_fixes_and_files_it_cannot_write() {
    let fixture = untuned();
    let limits = ProcessLimits {
        memlock_bytes: Some(Limit::Value(64 << 10)),
        nofile: Some(Limit::Value(1024)),
    };
    let checks = check_all(&fixture.root(), &limits, Path::new(DATA_DIR));
    std::fs::remove_file(fixture.path().join("proc/sys/vm/swappiness")).expect("rm");
    let swappiness = checks.iter().find(|c| c.setting == "vm.swappiness");
    assert!(swappiness.is_some_and(|c| c.status == Status::Warn));
    let outcomes = apply(&fixture.root(), &checks);
    let manual = outcomes
        .iter()
        .filter(|o| matches!(o, Outcome::Manual { .. }));
    assert_eq!(
        manual.count(),
        3,
        "memlock, nofile and discard are set by hand"
    );
    let failed: Vec<&Outcome> = outcomes
        .iter()
        .filter(|o| matches!(o, Outcome::Failed { .. }))
        .collect();
    assert!(
        matches!(failed[..], [Outcome::Failed { setting: "vm.swappiness", reason, .. }]
            if reason == "not present"),
        "{failed:?}"
    );
    assert!(!fixture.path().join("proc/sys/vm/swappiness").exists());
    assert_eq!(
        exit_code(&check_all(&fixture.root(), &limits, Path::new(DATA_DIR))),
        1,
        "memlock still fails"
    );
}

#[test]
fn options_parse_and_refuse_bad_flags() {
    let parsed = Options::parse(&[
        "--apply".to_string(),
        "--nofile".to_string(),
        "5".to_string(),
    ]);
    let options = parsed.expect("valid");
    assert!(options.apply && !options.json);
    assert_eq!(options.nofile, Some(Limit::Value(5)));
    assert_eq!(options.root, PathBuf::from("/"));
    assert!(Options::parse(&["--frobnicate".to_string()]).is_err());
    assert!(Options::parse(&["--root".to_string()]).is_err());
    assert!(Options::parse(&["--memlock".to_string(), "lots".to_string()]).is_err());
}
