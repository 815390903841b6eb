//! CPU checks: the frequency governor of every CPU and the clocksource.

use super::check::{summarise, write_all, Check, Fix, Status};
use super::root::{describe, Root};

const CPU_DIR: &str = "sys/devices/system/cpu";
const CLOCKSOURCE_DIR: &str = "sys/devices/system/clocksource/clocksource0";

/// Parses a kernel CPU list such as `0-3,8,10-11`. `None` if malformed.
pub fn parse_cpu_list(text: &str) -> Option<Vec<u32>> {
    let mut cpus = Vec::new();
    for part in text.trim().split(',').filter(|part| !part.is_empty()) {
        match part.split_once('-') {
            Some((first, last)) => {
                let (first, last) = (first.parse::<u32>().ok()?, last.parse::<u32>().ok()?);
                if first > last {
                    return None;
                }
                cpus.extend(first..=last);
            }
            None => cpus.push(part.parse().ok()?),
        }
    }
    Some(cpus)
}

/// The online CPUs (`/sys/devices/system/cpu/online`); empty if unreadable.
pub fn online_cpus(root: &Root) -> Vec<u32> {
    root.read(&format!("{CPU_DIR}/online"))
        .ok()
        .and_then(|text| parse_cpu_list(&text))
        .unwrap_or_default()
}

/// `cpu0`, `cpu12`, ... but not `cpufreq` or `cpuidle`.
fn is_cpu_dir(name: &str) -> bool {
    name.strip_prefix("cpu")
        .is_some_and(|number| !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit()))
}

/// `scaling_governor` of every CPU that has cpufreq → `performance`.
pub fn governor(root: &Root) -> Check {
    const SETTING: &str = "cpu governor";
    let paths: Vec<String> = root
        .list(CPU_DIR)
        .into_iter()
        .filter(|name| is_cpu_dir(name))
        .map(|cpu| format!("{CPU_DIR}/{cpu}/cpufreq/scaling_governor"))
        .filter(|path| root.path(path).exists())
        .collect();
    if paths.is_empty() {
        return Check::unknown(SETTING, "performance", "no cpufreq (VM or no driver)");
    }
    let mut values = Vec::with_capacity(paths.len());
    for path in &paths {
        match root.read(path) {
            Ok(value) => values.push(value),
            Err(error) => return Check::unknown(SETTING, "performance", describe(&error)),
        }
    }
    let slow: Vec<String> = paths
        .iter()
        .zip(&values)
        .filter(|(_, value)| value.as_str() != "performance")
        .map(|(path, _)| path.clone())
        .collect();
    let check = Check::new(SETTING, summarise(&values), "performance");
    if slow.is_empty() {
        return check;
    }
    check
        .verdict(
            Status::Warn,
            format!(
                "{} of {} CPUs scale their clock down when idle",
                slow.len(),
                paths.len()
            ),
        )
        .fixed_by(write_all(&slow, "performance"))
}

/// `current_clocksource` → `tsc` (read with no system call), if `available_clocksource` has it.
pub fn clocksource(root: &Root) -> Check {
    const SETTING: &str = "clocksource";
    let current_path = format!("{CLOCKSOURCE_DIR}/current_clocksource");
    let current = match root.read(&current_path) {
        Ok(current) => current,
        Err(error) => return Check::unknown(SETTING, "tsc", describe(&error)),
    };
    let check = Check::new(SETTING, current.as_str(), "tsc");
    if current == "tsc" {
        return check;
    }
    let available = root
        .read(&format!("{CLOCKSOURCE_DIR}/available_clocksource"))
        .unwrap_or_default();
    if available.split_whitespace().any(|source| source == "tsc") {
        return check
            .verdict(
                Status::Warn,
                format!("{current} is slower to read than tsc"),
            )
            .fixed_by(write_all(&[current_path], "tsc"));
    }
    check
        .verdict(
            Status::Warn,
            format!("tsc not available (only: {available}); the kernel found it unstable"),
        )
        .fixed_by(Fix::Manual(
            "check the BIOS/hypervisor for an invariant TSC; kernel cmdline `tsc=reliable` \
             only if you know it is"
                .to_string(),
        ))
}

#[cfg(test)]
mod tests {
    use super::super::fixture::Fixture;
    use super::*;
    use crate::tune::check::Write;

    const GOVERNOR: &str = "sys/devices/system/cpu/cpu0/cpufreq/scaling_governor";
    const GOVERNOR_1: &str = "sys/devices/system/cpu/cpu1/cpufreq/scaling_governor";

    #[test]
    fn cpu_lists_parse() {
        assert_eq!(
            parse_cpu_list("0-3,8,10-11"),
            Some(vec![0, 1, 2, 3, 8, 10, 11])
        );
        assert_eq!(parse_cpu_list("5"), Some(vec![5]));
        assert_eq!(parse_cpu_list("3-1"), None);
        assert_eq!(parse_cpu_list("x"), None);
    }

    #[test]
    fn governor_performance_everywhere_is_ok() {
        let fixture = Fixture::new();
        fixture
            .file(GOVERNOR, "performance")
            .file(GOVERNOR_1, "performance");
        let check = governor(&fixture.root());
        assert_eq!(check.status, Status::Ok);
        assert_eq!(check.current, "performance");
    }

    #[test]
    fn governor_powersave_warns_and_fixes_only_slow_cpus() {
        let fixture = Fixture::new();
        fixture
            .file(GOVERNOR, "performance")
            .file(GOVERNOR_1, "powersave");
        fixture.file("sys/devices/system/cpu/cpufreq/policy0/x", "");
        let check = governor(&fixture.root());
        assert_eq!(check.status, Status::Warn);
        assert_eq!(check.current, "performance ×1, powersave ×1");
        let expected = Write {
            path: GOVERNOR_1.to_string(),
            value: "performance".to_string(),
        };
        assert_eq!(check.fix, Fix::Write(vec![expected]));
    }

    #[test]
    fn governor_without_cpufreq_is_unknown() {
        let fixture = Fixture::new();
        fixture.file("sys/devices/system/cpu/cpu0/online", "1");
        assert_eq!(governor(&fixture.root()).status, Status::Unknown);
    }

    #[test]
    fn clocksource_tsc_is_ok_and_others_warn() {
        let fixture = Fixture::new();
        let current = "sys/devices/system/clocksource/clocksource0/current_clocksource";
        let available = "sys/devices/system/clocksource/clocksource0/available_clocksource";
        fixture
            .file(current, "tsc")
            .file(available, "tsc hpet acpi_pm");
        assert_eq!(clocksource(&fixture.root()).status, Status::Ok);

        fixture.file(current, "hpet");
        let check = clocksource(&fixture.root());
        assert_eq!(check.status, Status::Warn);
        assert!(matches!(check.fix, Fix::Write(_)));

        fixture
            .file(current, "kvm-clock")
            .file(available, "kvm-clock acpi_pm");
        let check = clocksource(&fixture.root());
        assert_eq!(check.status, Status::Warn);
        assert!(matches!(check.fix, Fix::Manual(_)));
    }

    #[test]
    fn clocksource_missing_is_unknown() {
        assert_eq!(clocksource(&Fixture::new().root()).status, Status::Unknown);
    }
}
