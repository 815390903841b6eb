//! One row of the `sluice tune` table: a setting, what the system has, what the broker wants,
//! the verdict, and how `--apply` (or the operator) fixes it.

/// Verdict on one setting. Only `Fail` makes `sluice tune` exit 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Already as recommended.
    Ok,
    /// The broker runs, but tail latency or throughput suffers.
    Warn,
    /// The broker cannot start or will misbehave (e.g. io_uring disabled, memlock < 512 KiB).
    Fail,
    /// The setting is absent or unreadable here (e.g. no cpufreq in a VM, no NVMe devices).
    Unknown,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
            Status::Unknown => "UNKNOWN",
        }
    }
}

/// One file write `--apply` performs: `path` is relative to the root (no leading `/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    pub path: String,
    pub value: String,
}

/// How a setting that is not OK gets fixed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fix {
    /// Nothing to do, or nothing `sluice tune` can do.
    None,
    /// Writes to sysfs/procfs files under the root, in order.
    Write(Vec<Write>),
    /// Not a file write (e.g. a parent's resource limit): what the operator does instead.
    Manual(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub setting: &'static str,
    pub current: String,
    pub recommended: String,
    pub status: Status,
    /// Why the status is what it is, in one line (shown for rows that are not OK).
    pub reason: String,
    pub fix: Fix,
}

impl Check {
    pub fn new(setting: &'static str, current: impl Into<String>, recommended: &str) -> Check {
        Check {
            setting,
            current: current.into(),
            recommended: recommended.to_string(),
            status: Status::Ok,
            reason: String::new(),
            fix: Fix::None,
        }
    }

    /// Marks the row not OK with a reason (the fix stays `None` until `fixed_by`).
    pub fn verdict(mut self, status: Status, reason: impl Into<String>) -> Check {
        self.status = status;
        self.reason = reason.into();
        self
    }

    pub fn fixed_by(mut self, fix: Fix) -> Check {
        assert!(
            self.status != Status::Ok,
            "setting={} is OK, it needs no fix",
            self.setting
        );
        self.fix = fix;
        self
    }

    /// A row for a setting whose file is absent or unreadable.
    pub fn unknown(setting: &'static str, recommended: &str, reason: impl Into<String>) -> Check {
        Check::new(setting, "-", recommended).verdict(Status::Unknown, reason)
    }
}

/// A fix that writes `value` to every path in `paths`.
pub fn write_all(paths: &[String], value: &str) -> Fix {
    Fix::Write(
        paths
            .iter()
            .map(|path| Write {
                path: path.clone(),
                value: value.to_string(),
            })
            .collect(),
    )
}

/// Summarises per-item values (one per CPU, per device): `performance` when all agree,
/// `powersave ×3, performance ×5` when they do not (in first-seen order).
pub fn summarise(values: &[String]) -> String {
    let mut counts: Vec<(&str, usize)> = Vec::new();
    for value in values {
        match counts.iter_mut().find(|(seen, _)| seen == value) {
            Some((_, count)) => *count += 1,
            None => counts.push((value, 1)),
        }
    }
    if counts.len() == 1 {
        return counts[0].0.to_string();
    }
    let parts: Vec<String> = counts
        .iter()
        .map(|(value, count)| format!("{value} ×{count}"))
        .collect();
    parts.join(", ")
}

/// The selected choice in a sysfs selector such as `always [madvise] never`; a file holding a
/// single word without brackets (a fixture written by `--apply`) selects that word.
pub fn bracketed(text: &str) -> Option<&str> {
    let Some(start) = text.find('[') else {
        let mut words = text.split_whitespace();
        return match (words.next(), words.next()) {
            (Some(only), None) => Some(only),
            _ => None,
        };
    };
    let end = text[start..].find(']')? + start;
    Some(&text[start + 1..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summarise_counts_distinct_values() {
        let one = vec!["none".to_string(), "none".to_string()];
        assert_eq!(summarise(&one), "none");
        let mixed: Vec<String> = ["a", "b", "a"].iter().map(|s| s.to_string()).collect();
        assert_eq!(summarise(&mixed), "a ×2, b ×1");
    }

    #[test]
    fn bracketed_reads_the_selected_choice() {
        assert_eq!(bracketed("always [madvise] never"), Some("madvise"));
        assert_eq!(bracketed("[none] mq-deadline"), Some("none"));
        assert_eq!(bracketed("none mq-deadline"), None);
        assert_eq!(bracketed("madvise"), Some("madvise"));
        assert_eq!(bracketed(""), None);
    }
}
