//! The filesystem `sluice tune` reads and writes: `/` on a real machine, a fixture tree in
//! tests (`--root DIR`). Every path the checks use is relative to it.

use std::fs::OpenOptions;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct Root {
    dir: PathBuf,
}

impl Root {
    pub fn new(dir: impl Into<PathBuf>) -> Root {
        Root { dir: dir.into() }
    }

    /// `relative` must not start with `/`: joining would silently escape the root.
    pub fn path(&self, relative: &str) -> PathBuf {
        assert!(!relative.starts_with('/'), "path={relative} is absolute");
        self.dir.join(relative)
    }

    /// The file's contents with surrounding whitespace trimmed.
    pub fn read(&self, relative: &str) -> io::Result<String> {
        std::fs::read_to_string(self.path(relative)).map(|text| text.trim().to_string())
    }

    /// Writes `value` and a newline, like `echo value > file`. Never creates the file: a
    /// setting the kernel does not offer is reported as absent, not invented.
    pub fn write(&self, relative: &str, value: &str) -> io::Result<()> {
        let mut file = OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(self.path(relative))?;
        file.write_all(format!("{value}\n").as_bytes())
    }

    /// Names of the entries in a directory, sorted; empty if it does not exist.
    pub fn list(&self, relative: &str) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.path(relative)) else {
            return Vec::new();
        };
        let mut names: Vec<String> = entries
            .flatten()
            .map(|entry| entry.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort_by(|a, b| natural_order(a, b));
        names
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// `cpu2` before `cpu10`: compares the trailing number when the prefixes match.
fn natural_order(a: &str, b: &str) -> std::cmp::Ordering {
    let split = |name: &str| {
        let digits = name.len() - name.trim_end_matches(|c: char| c.is_ascii_digit()).len();
        let (prefix, number) = name.split_at(name.len() - digits);
        (prefix.to_string(), number.parse::<u64>().ok())
    };
    split(a).cmp(&split(b)).then_with(|| a.cmp(b))
}

/// A short, user-facing reason for an I/O error on a sysfs/procfs file.
pub fn describe(error: &io::Error) -> String {
    match error.kind() {
        io::ErrorKind::NotFound => "not present".to_string(),
        io::ErrorKind::PermissionDenied => "permission denied (run as root)".to_string(),
        _ => error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_does_not_create_missing_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = Root::new(dir.path());
        let error = root.write("absent", "1").expect_err("no such file");
        assert_eq!(describe(&error), "not present");
        assert!(!dir.path().join("absent").exists());
    }

    #[test]
    fn list_sorts_numbers_naturally() {
        let dir = tempfile::tempdir().expect("tempdir");
        for name in ["cpu10", "cpu2", "cpufreq", "cpu1"] {
            std::fs::create_dir(dir.path().join(name)).expect("mkdir");
        }
        let root = Root::new(dir.path());
        assert_eq!(root.list("."), ["cpu1", "cpu2", "cpu10", "cpufreq"]);
    }
}
