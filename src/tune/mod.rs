//! `sluice tune`: checks the operating system for the broker and, with `--apply`, sets what a
//! sysfs/procfs write can set. It owns every OS tuning check (CPU governor, clocksource, THP,
//! swappiness, memlock and open-file limits, AIO and io_uring limits, NVMe scheduler and
//! nomerges, IRQ affinity, irqbalance, somaxconn and socket buffers; `tuning/README.md`
//! explains each recommendation).
//!
//! It runs as a one-shot CLI, not on a shard: plain `std::fs` is used. Every path is relative
//! to a root (`/`, or `--root DIR` for fixture trees in tests); process limits come from
//! `getrlimit` unless passed in. Nothing is written without `--apply`; with it, only files
//! that already exist are written, and everything is checked again afterwards.
//!
//! Files: `check.rs` (a table row), `root.rs` (the filesystem root), one file per group
//! (`cpu.rs`, `memory.rs`, `limits.rs`, `block.rs`, `irq.rs`, `network.rs`), `report.rs`
//! (table and JSON output).

pub mod block;
pub mod check;
pub mod cpu;
pub mod irq;
pub mod limits;
pub mod memory;
pub mod network;
pub mod report;
pub mod root;

#[cfg(test)]
mod fixture;

use std::path::PathBuf;

use check::{Check, Fix, Status};
use limits::{Limit, ProcessLimits};
use root::{describe, Root};

pub const USAGE: &str = "\
usage: sluice tune [--apply] [--json] [--root DIR] [--memlock BYTES|unlimited]
                   [--nofile N|unlimited]

Checks the OS settings the broker depends on and prints a table (setting, current,
recommended, status). Changes nothing unless --apply is given; --apply writes the
recommended values to sysfs/procfs (as root), reports what it changed and what it could
not, then checks again. --root reads and writes under DIR instead of / (for testing);
--memlock and --nofile check these limits instead of this process's own (e.g. the values a
systemd unit sets). Exit status: 0 when no setting FAILs, 1 when one does, 2 on bad usage.
See tuning/README.md for why each value is recommended and how to make it persistent.
";

#[derive(Debug, thiserror::Error)]
pub enum TuneError {
    #[error("{0}")]
    Usage(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub apply: bool,
    pub json: bool,
    pub root: PathBuf,
    pub memlock_bytes: Option<Limit>,
    pub nofile: Option<Limit>,
}

impl Options {
    pub fn parse(args: &[String]) -> Result<Options, TuneError> {
        let mut options = Options {
            apply: false,
            json: false,
            root: PathBuf::from("/"),
            memlock_bytes: None,
            nofile: None,
        };
        let mut args = args.iter();
        while let Some(flag) = args.next() {
            let mut value = || {
                args.next()
                    .ok_or_else(|| TuneError::Usage(format!("{flag} needs a value")))
            };
            match flag.as_str() {
                "--apply" => options.apply = true,
                "--json" => options.json = true,
                "--root" => options.root = PathBuf::from(value()?),
                "--memlock" => options.memlock_bytes = Some(parse_limit(flag, value()?)?),
                "--nofile" => options.nofile = Some(parse_limit(flag, value()?)?),
                other => return Err(TuneError::Usage(format!("unknown flag `{other}`"))),
            }
        }
        Ok(options)
    }
}

fn parse_limit(flag: &str, text: &str) -> Result<Limit, TuneError> {
    Limit::parse(text).ok_or_else(|| {
        TuneError::Usage(format!(
            "{flag}: expected a number or `unlimited`, got `{text}`"
        ))
    })
}

/// Every check, in table order.
pub fn check_all(root: &Root, limits: &ProcessLimits) -> Vec<Check> {
    let cpus = cpu::online_cpus(root).len();
    vec![
        cpu::governor(root),
        cpu::clocksource(root),
        memory::transparent_huge_pages(root),
        memory::swappiness(root),
        limits::memlock(limits, cpus),
        limits::open_files(limits),
        limits::aio_max_nr(root),
        limits::io_uring(root),
        block::scheduler(root),
        block::nomerges(root),
        irq::affinity(root, irq::Device::Nvme),
        irq::affinity(root, irq::Device::Nic),
        irq::irqbalance(root),
        network::somaxconn(root),
        network::rmem_max(root),
        network::wmem_max(root),
        network::tcp_rmem(root),
        network::tcp_wmem(root),
    ]
}

/// What `--apply` did for one setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Changed {
        setting: &'static str,
        path: String,
        value: String,
    },
    Failed {
        setting: &'static str,
        path: String,
        value: String,
        reason: String,
    },
    Manual {
        setting: &'static str,
        how: String,
    },
}

/// Performs the fixes of every row that is not OK; rows marked `Manual` are reported as such.
pub fn apply(root: &Root, checks: &[Check]) -> Vec<Outcome> {
    let mut outcomes = Vec::new();
    for check in checks.iter().filter(|check| check.status != Status::Ok) {
        match &check.fix {
            Fix::None => {}
            Fix::Manual(how) => outcomes.push(Outcome::Manual {
                setting: check.setting,
                how: how.clone(),
            }),
            Fix::Write(writes) => {
                for write in writes {
                    let path = root.path(&write.path).display().to_string();
                    let (setting, value) = (check.setting, write.value.clone());
                    outcomes.push(match root.write(&write.path, &write.value) {
                        Ok(()) => Outcome::Changed {
                            setting,
                            path,
                            value,
                        },
                        Err(error) => {
                            let reason = describe(&error);
                            Outcome::Failed {
                                setting,
                                path,
                                value,
                                reason,
                            }
                        }
                    });
                }
            }
        }
    }
    outcomes
}

/// 0 when nothing FAILs, 1 otherwise.
pub fn exit_code(checks: &[Check]) -> u8 {
    u8::from(checks.iter().any(|check| check.status == Status::Fail))
}

/// `sluice tune [flags]`: returns the process exit status.
pub fn main(args: &[String]) -> u8 {
    run(args, &mut std::io::stdout().lock())
}

/// `main` writing its report to `out`.
pub fn run(args: &[String], out: &mut dyn std::io::Write) -> u8 {
    if args.iter().any(|arg| arg == "--help" || arg == "-h") {
        return write_report(out, USAGE, 0);
    }
    let options = match Options::parse(args) {
        Ok(options) => options,
        Err(error) => {
            eprintln!("sluice tune: {error}\n\n{USAGE}");
            return 2;
        }
    };
    let real = ProcessLimits::read();
    let limits = ProcessLimits {
        memlock_bytes: options.memlock_bytes.or(real.memlock_bytes),
        nofile: options.nofile.or(real.nofile),
    };
    let root = Root::new(&options.root);
    let before = check_all(&root, &limits);
    if !options.apply {
        return write_report(
            out,
            &report::checked(&before, options.json),
            exit_code(&before),
        );
    }
    let outcomes = apply(&root, &before);
    let after = check_all(&root, &limits);
    let text = report::applied(&before, &outcomes, &after, options.json);
    write_report(out, &text, exit_code(&after))
}

/// Writes the report; a closed stdout makes the run fail rather than panic.
fn write_report(out: &mut dyn std::io::Write, text: &str, code: u8) -> u8 {
    match out.write_all(text.as_bytes()) {
        Ok(()) => code,
        Err(error) => {
            eprintln!("sluice tune: cannot write the report: {error}");
            1
        }
    }
}

#[cfg(test)]
mod tests;
