//! `sluice tune`: checks the operating system for the broker and, with `--apply`, sets what a
//! sysfs/procfs write can set. It owns every OS tuning check (CPU governor, clocksource, THP,
//! swappiness, memlock and open-file limits, AIO and io_uring limits, NVMe scheduler and
//! nomerges, online discard on the data directory's filesystem, IRQ affinity, irqbalance,
//! somaxconn and socket buffers; `tuning/README.md` explains each recommendation).
//!
//! It runs as a one-shot CLI, not on a shard: plain `std::fs` is used. Every path is relative
//! to a root (`/`, or `--root DIR` for fixture trees in tests); process limits come from
//! `getrlimit` unless passed in. Nothing is written without `--apply`; with it, only files
//! that already exist are written, and everything is checked again afterwards.
//!
//! Files: `check.rs` (a table row), `root.rs` (the filesystem root), one file per group
//! (`cpu.rs`, `memory.rs`, `limits.rs`, `block.rs`, `filesystem.rs`, `irq.rs`, `network.rs`),
//! `report.rs`
//! (table and JSON output).

pub mod block;
pub mod check;
pub mod cpu;
pub mod filesystem;
pub mod irq;
pub mod limits;
pub mod memory;
pub mod network;
pub mod report;
pub mod root;

#[cfg(test)]
mod fixture;

use std::path::{Path, PathBuf};

use check::{Check, Fix, Status};
use limits::{Limit, ProcessLimits};
use root::{describe, Root};

/// What `sluice tune --help` says after the flags.
pub const ABOUT: &str = "\
Checks the OS settings the broker depends on and prints a table (setting, current,
recommended, status). Changes nothing unless --apply is given; --apply writes the
recommended values to sysfs/procfs (as root), reports what it changed and what it could
not, then checks again. Exit status: 0 when no setting FAILs, 1 when one does, 2 on bad
usage. See tuning/README.md for why each value is recommended and how to make it persistent.";

#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct Options {
    /// Write the recommended values (as root), then check again
    #[arg(long)]
    pub apply: bool,
    /// Print the report as JSON
    #[arg(long)]
    pub json: bool,
    /// Read and write under DIR instead of / (for testing)
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,
    /// Check this locked-memory limit instead of this process's own (e.g. a systemd unit's)
    #[arg(long = "memlock", value_name = "BYTES|unlimited", value_parser = parse_limit)]
    pub memlock_bytes: Option<Limit>,
    /// Check this open-file limit instead of this process's own
    #[arg(long, value_name = "N|unlimited", value_parser = parse_limit)]
    pub nofile: Option<Limit>,
    /// The broker's data directory (`serve --data-dir`), whose filesystem is checked
    #[arg(long, value_name = "DIR", default_value = "data")]
    pub data_dir: PathBuf,
}

/// `sluice tune` alone, for parsing its flags outside the whole CLI.
#[derive(clap::Parser)]
#[command(name = "sluice tune", about = ABOUT)]
struct TuneCommand {
    #[command(flatten)]
    options: Options,
}

impl Options {
    /// Parses `sluice tune`'s flags (clap's error, with usage, on bad ones).
    pub fn parse(args: &[String]) -> Result<Options, clap::Error> {
        use clap::Parser;
        let argv = std::iter::once("sluice tune".to_string()).chain(args.iter().cloned());
        TuneCommand::try_parse_from(argv).map(|command| command.options)
    }
}

fn parse_limit(text: &str) -> Result<Limit, String> {
    Limit::parse(text).ok_or_else(|| format!("expected a number or `unlimited`, got `{text}`"))
}

/// Every check, in table order.
pub fn check_all(root: &Root, limits: &ProcessLimits, data_dir: &Path) -> Vec<Check> {
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
        filesystem::discard(root, data_dir),
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

/// `sluice tune` with parsed flags: returns the process exit status.
pub fn main(options: &Options) -> u8 {
    run_options(options, &mut std::io::stdout().lock())
}

/// Parses `args` (the flags after `tune`) and runs, writing the report to `out`.
pub fn run(args: &[String], out: &mut dyn std::io::Write) -> u8 {
    match Options::parse(args) {
        Ok(options) => run_options(&options, out),
        Err(error) => {
            let _ = error.print();
            u8::try_from(error.exit_code()).unwrap_or(2)
        }
    }
}

/// Runs the checks (and with `--apply` the fixes), writing the report to `out`.
pub fn run_options(options: &Options, out: &mut dyn std::io::Write) -> u8 {
    let real = ProcessLimits::read();
    let limits = ProcessLimits {
        memlock_bytes: options.memlock_bytes.or(real.memlock_bytes),
        nofile: options.nofile.or(real.nofile),
    };
    let root = Root::new(&options.root);
    let before = check_all(&root, &limits, &options.data_dir);
    if !options.apply {
        return write_report(
            out,
            &report::checked(&before, options.json),
            exit_code(&before),
        );
    }
    let outcomes = apply(&root, &before);
    let after = check_all(&root, &limits, &options.data_dir);
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
