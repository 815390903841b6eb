//! The data directory's filesystem: mounted without online `discard`.
//!
//! With `discard`, every block the filesystem frees is discarded at once: ext4 without a
//! journal issues and waits for the discard in the freeing call, with a journal at each commit.
//! Retention deleting segments then sends the device as many discard bytes as the log writes,
//! and they queue beside the log's writes and fdatasyncs (perf/RESULTS.md, session 15: +3 ms at
//! p99 and +7 ms at p99.99 at 150 MB/s on a virtio disk, gone without `discard`). Periodic
//! `fstrim` gives the device the same information in one batch off the hot path.

use std::path::{Component, Path, PathBuf};

use super::check::{Check, Fix, Status};
use super::root::{describe, Root};

const SETTING: &str = "data dir discard";
const MOUNTS: &str = "proc/self/mounts";

/// One line of /proc/self/mounts.
#[derive(Debug, PartialEq, Eq)]
struct Mount {
    point: PathBuf,
    fstype: String,
    options: Vec<String>,
}

/// Decodes the octal escapes /proc/self/mounts uses for space, tab, newline and backslash.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let escape = bytes.get(index + 1..index + 4);
        let value = escape
            .filter(|_| bytes[index] == b'\\')
            .and_then(|digits| std::str::from_utf8(digits).ok())
            .and_then(|digits| u8::from_str_radix(digits, 8).ok());
        match value {
            Some(byte) => {
                out.push(byte);
                index += 4;
            }
            None => {
                out.push(bytes[index]);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_mounts(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let (_device, point, fstype, options) = (
                fields.next()?,
                fields.next()?,
                fields.next()?,
                fields.next()?,
            );
            Some(Mount {
                point: PathBuf::from(unescape(point)),
                fstype: fstype.to_string(),
                options: options.split(',').map(str::to_string).collect(),
            })
        })
        .collect()
}

/// `dir` made absolute and lexically normal; on the real root, with the symlinks of its
/// longest existing ancestor resolved (the directory may not exist before the first start).
fn resolve(root: &Root, dir: &Path) -> PathBuf {
    let absolute = match dir.is_absolute() {
        true => dir.to_path_buf(),
        false => std::env::current_dir()
            .unwrap_or_else(|_| PathBuf::from("/"))
            .join(dir),
    };
    let mut normal = PathBuf::from("/");
    for component in absolute.components() {
        match component {
            Component::ParentDir => {
                normal.pop();
            }
            Component::Normal(part) => normal.push(part),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    if root.dir() != Path::new("/") {
        return normal;
    }
    let mut existing = normal.as_path();
    let mut rest = Vec::new();
    while !existing.exists() {
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_os_string());
                existing = parent;
            }
            _ => return normal,
        }
    }
    let mut resolved = std::fs::canonicalize(existing).unwrap_or_else(|_| existing.into());
    resolved.extend(rest.iter().rev());
    resolved
}

/// The mount holding `dir`: the last-mounted one with the longest matching mount point.
fn mount_of(mounts: &[Mount], dir: &Path) -> Option<usize> {
    let mut best: Option<usize> = None;
    for (index, mount) in mounts.iter().enumerate() {
        if !dir.starts_with(&mount.point) {
            continue;
        }
        let longer = best.is_none_or(|best| {
            mount.point.components().count() >= mounts[best].point.components().count()
        });
        if longer {
            best = Some(index);
        }
    }
    best
}

/// WARN when the filesystem holding `data_dir` is mounted with online `discard` (ext4, XFS;
/// btrfs's `discard=async` queues discards in the background and is not flagged).
pub fn discard(root: &Root, data_dir: &Path) -> Check {
    let recommended = "nodiscard + fstrim.timer";
    let text = match root.read(MOUNTS) {
        Ok(text) => text,
        Err(error) => return Check::unknown(SETTING, recommended, describe(&error)),
    };
    let mounts = parse_mounts(&text);
    let dir = resolve(root, data_dir);
    let Some(index) = mount_of(&mounts, &dir) else {
        return Check::unknown(
            SETTING,
            recommended,
            format!("no mount holds {}", dir.display()),
        );
    };
    let mount = &mounts[index];
    let online = mount.options.iter().any(|option| option == "discard");
    let current = format!(
        "{} {} on {}",
        mount.fstype,
        if online { "discard" } else { "nodiscard" },
        mount.point.display()
    );
    let check = Check::new(SETTING, current, recommended);
    if !online {
        return check;
    }
    let point = mount.point.display();
    check
        .verdict(
            Status::Warn,
            "deleted segments' blocks are discarded as they are freed, beside the log's writes",
        )
        .fixed_by(Fix::Manual(format!(
            "mount -o remount,nodiscard {point}, drop `discard` from its /etc/fstab entry, and \
             trim periodically: systemctl enable --now fstrim.timer"
        )))
}

#[cfg(test)]
mod tests {
    use super::super::fixture::Fixture;
    use super::*;

    const MOUNTS_TEXT: &str = "\
/dev/vda / ext4 rw,relatime,discard,resv_strict 0 0
proc /proc proc rw,nosuid,nodev,noexec,relatime 0 0
/dev/nvme0n1 /srv/sluice\\040data xfs rw,noatime 0 0
/dev/nvme1n1 /srv/sluice\\040data/hot ext4 rw,noatime,discard 0 0";

    fn fixture() -> Fixture {
        let fixture = Fixture::new();
        fixture.file(MOUNTS, MOUNTS_TEXT);
        fixture
    }

    #[test]
    fn the_longest_mount_point_decides() {
        let fixture = fixture();
        let root = fixture.root();
        let ok = discard(&root, Path::new("/srv/sluice data/log"));
        assert_eq!(ok.status, Status::Ok, "{ok:?}");
        assert_eq!(ok.current, "xfs nodiscard on /srv/sluice data");
        let warn = discard(&root, Path::new("/srv/sluice data/hot/../hot/log"));
        assert_eq!(warn.status, Status::Warn);
        assert_eq!(warn.current, "ext4 discard on /srv/sluice data/hot");
        assert!(matches!(&warn.fix, Fix::Manual(how) if how.contains("fstrim.timer")));
        // Not under either: the root filesystem, mounted with discard.
        assert_eq!(
            discard(&root, Path::new("/var/lib/sluice")).status,
            Status::Warn
        );
        // A mount point is matched by whole components, not by string prefix.
        assert_eq!(
            discard(&root, Path::new("/srv/sluice data/hotter")).current,
            "xfs nodiscard on /srv/sluice data"
        );
    }

    #[test]
    fn missing_mount_table_is_unknown() {
        let fixture = Fixture::new();
        let check = discard(&fixture.root(), Path::new("/data"));
        assert_eq!(check.status, Status::Unknown);
        assert_eq!(check.reason, "not present");
    }

    #[test]
    fn escapes_are_decoded() {
        assert_eq!(unescape("a\\040b\\011c\\134"), "a b\tc\\");
        assert_eq!(unescape("plain\\04"), "plain\\04");
    }
}
