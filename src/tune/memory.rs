//! Memory checks: transparent huge pages and swappiness.

use super::check::{bracketed, write_all, Check, Status};
use super::root::{describe, Root};

const THP_ENABLED: &str = "sys/kernel/mm/transparent_hugepage/enabled";
const SWAPPINESS: &str = "proc/sys/vm/swappiness";
/// Swap broker memory only to avoid the OOM killer; 0 lets some kernels OOM instead.
pub const SWAPPINESS_RECOMMENDED: u32 = 1;

/// THP `enabled` → `madvise` or `never`: `always` lets khugepaged compact memory under the
/// shards (latency spikes).
pub fn transparent_huge_pages(root: &Root) -> Check {
    const SETTING: &str = "transparent huge pages";
    const RECOMMENDED: &str = "madvise or never";
    let text = match root.read(THP_ENABLED) {
        Ok(text) => text,
        Err(error) => return Check::unknown(SETTING, RECOMMENDED, describe(&error)),
    };
    let Some(current) = bracketed(&text) else {
        return Check::unknown(
            SETTING,
            RECOMMENDED,
            format!("unexpected contents `{text}`"),
        );
    };
    let check = Check::new(SETTING, current, RECOMMENDED);
    match current {
        "madvise" | "never" => check,
        _ => check
            .verdict(
                Status::Warn,
                "huge-page compaction and khugepaged stall the shards",
            )
            .fixed_by(write_all(&[THP_ENABLED.to_string()], "madvise")),
    }
}

/// `vm.swappiness` → 1.
pub fn swappiness(root: &Root) -> Check {
    const SETTING: &str = "vm.swappiness";
    let recommended = SWAPPINESS_RECOMMENDED.to_string();
    let text = match root.read(SWAPPINESS) {
        Ok(text) => text,
        Err(error) => return Check::unknown(SETTING, &recommended, describe(&error)),
    };
    let Ok(value) = text.parse::<u32>() else {
        return Check::unknown(SETTING, &recommended, format!("not a number: `{text}`"));
    };
    let check = Check::new(SETTING, text.as_str(), &recommended);
    if value <= SWAPPINESS_RECOMMENDED {
        return check;
    }
    check
        .verdict(
            Status::Warn,
            "the kernel swaps out broker memory to keep page cache",
        )
        .fixed_by(write_all(&[SWAPPINESS.to_string()], &recommended))
}

#[cfg(test)]
mod tests {
    use super::super::fixture::Fixture;
    use super::*;
    use crate::tune::check::Fix;

    #[test]
    fn thp_madvise_and_never_are_ok_always_warns() {
        let fixture = Fixture::new();
        fixture.file(THP_ENABLED, "always [madvise] never");
        assert_eq!(transparent_huge_pages(&fixture.root()).status, Status::Ok);
        fixture.file(THP_ENABLED, "always madvise [never]");
        assert_eq!(transparent_huge_pages(&fixture.root()).status, Status::Ok);
        fixture.file(THP_ENABLED, "[always] madvise never");
        let check = transparent_huge_pages(&fixture.root());
        assert_eq!(
            (check.status, check.current.as_str()),
            (Status::Warn, "always")
        );
        assert!(matches!(check.fix, Fix::Write(_)));
    }

    #[test]
    fn thp_missing_or_garbled_is_unknown() {
        let fixture = Fixture::new();
        assert_eq!(
            transparent_huge_pages(&fixture.root()).status,
            Status::Unknown
        );
        fixture.file(THP_ENABLED, "always madvise never");
        assert_eq!(
            transparent_huge_pages(&fixture.root()).status,
            Status::Unknown
        );
    }

    #[test]
    fn swappiness_above_one_warns() {
        let fixture = Fixture::new();
        fixture.file(SWAPPINESS, "1");
        assert_eq!(swappiness(&fixture.root()).status, Status::Ok);
        fixture.file(SWAPPINESS, "60");
        let check = swappiness(&fixture.root());
        assert_eq!((check.status, check.current.as_str()), (Status::Warn, "60"));
        fixture.file(SWAPPINESS, "sixty");
        assert_eq!(swappiness(&fixture.root()).status, Status::Unknown);
    }
}
