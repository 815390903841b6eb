//! Logs: the `log` macros used everywhere are collected by `tracing` (tracing-subscriber's fmt
//! layer on stderr, one line per event with its module), behind a filter that can change while
//! the broker runs: `log.level` (Kafka-style dynamic broker config, set through
//! IncrementalAlterConfigs on the broker resource) takes `RUST_LOG` syntax (`info`,
//! `warn,sluice::replication=debug`). `RUST_LOG`, when set, is the level at start and wins over
//! the configured one. The filter is process-wide: one change applies to every shard.

use std::sync::{Mutex, OnceLock};

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Registry};

/// The level before any is set (Kafka's root logger level is INFO).
pub const DEFAULT_LEVEL: &str = "info";

struct Reloadable {
    handle: reload::Handle<EnvFilter, Registry>,
    /// Admin path only (never the data path): the level in force, and the one the broker
    /// started with (`RUST_LOG`, else `log.level` from its config), which removing the
    /// run-time value goes back to.
    levels: Mutex<Levels>,
}

struct Levels {
    current: String,
    start: String,
}

const LEVELS: &[&str] = &["off", "error", "warn", "info", "debug", "trace"];

static FILTER: OnceLock<Reloadable> = OnceLock::new();

/// Checks a level specification without applying it.
/// A directive is a level (`debug`) or `target=level`; a bare word that is not a level would be
/// read as a target at TRACE (a typo like `warnn` would silence everything else), so it is
/// refused.
pub fn parse(spec: &str) -> Result<EnvFilter, String> {
    let spec = spec.trim();
    if spec.is_empty() {
        return Err("empty log level".to_string());
    }
    for directive in spec.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let level = directive
            .rsplit_once('=')
            .map_or(directive, |(_, level)| level);
        if !LEVELS.contains(&level.to_ascii_lowercase().as_str()) {
            return Err(format!(
                "`{directive}`: expected a level ({}) or target=level",
                LEVELS.join(", ")
            ));
        }
    }
    EnvFilter::try_new(spec).map_err(|error| format!("not a log level: {error}"))
}

/// Installs the logger (once per process) at `RUST_LOG`, else `DEFAULT_LEVEL`.
pub fn init() {
    let requested = std::env::var("RUST_LOG").unwrap_or_else(|_| DEFAULT_LEVEL.to_string());
    // RUST_LOG may use env_logger forms this parser refuses: it still applies as tracing
    // reads it, and only an unreadable one falls back to the default.
    let (spec, filter) = match EnvFilter::try_new(requested.trim()) {
        Ok(filter) => (requested.trim().to_string(), filter),
        Err(_) => (DEFAULT_LEVEL.to_string(), EnvFilter::new(DEFAULT_LEVEL)),
    };
    let (layer, handle) = reload::Layer::new(filter);
    let installed = tracing_subscriber::registry()
        .with(layer)
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())),
        )
        .try_init();
    if installed.is_ok() {
        let _ = FILTER.set(Reloadable {
            handle,
            levels: Mutex::new(Levels {
                current: spec.clone(),
                start: spec,
            }),
        });
    }
}

/// Whether `RUST_LOG` chose the level at start (it then wins over `log.level` from the config).
pub fn set_by_environment() -> bool {
    std::env::var_os("RUST_LOG").is_some()
}

/// Changes the level of every shard now.
pub fn set_level(spec: &str) -> Result<(), String> {
    let filter = parse(spec)?;
    let Some(reloadable) = FILTER.get() else {
        return Err("logging is not initialised".to_string());
    };
    let hint = filter.max_level_hint();
    reloadable
        .handle
        .reload(filter)
        .map_err(|error| format!("cannot change the log level: {error}"))?;
    // `log` records are filtered by `log::max_level` before they reach tracing.
    let max = match hint {
        Some(level) if level == tracing::level_filters::LevelFilter::OFF => log::LevelFilter::Off,
        Some(level) if level == tracing::level_filters::LevelFilter::ERROR => {
            log::LevelFilter::Error
        }
        Some(level) if level == tracing::level_filters::LevelFilter::WARN => log::LevelFilter::Warn,
        Some(level) if level == tracing::level_filters::LevelFilter::INFO => log::LevelFilter::Info,
        Some(level) if level == tracing::level_filters::LevelFilter::DEBUG => {
            log::LevelFilter::Debug
        }
        _ => log::LevelFilter::Trace,
    };
    log::set_max_level(max);
    if let Ok(mut levels) = reloadable.levels.lock() {
        levels.current = spec.trim().to_string();
    }
    Ok(())
}

/// The level in force.
pub fn current() -> String {
    read_levels(|levels| levels.current.clone())
}

/// Applies the configured `log.level` at start; it becomes the level a removed run-time
/// value returns to.
pub fn set_start_level(spec: &str) -> Result<(), String> {
    set_level(spec)?;
    if let Some(Ok(mut levels)) = FILTER.get().map(|reloadable| reloadable.levels.lock()) {
        levels.start = spec.trim().to_string();
    }
    Ok(())
}

/// The level the broker started with.
pub fn start_level() -> String {
    read_levels(|levels| levels.start.clone())
}

fn read_levels(read: impl FnOnce(&Levels) -> String) -> String {
    match FILTER.get().map(|reloadable| reloadable.levels.lock()) {
        Some(Ok(levels)) => read(&levels),
        _ => DEFAULT_LEVEL.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn levels_and_targets_parse_and_typos_do_not() {
        for good in [
            "info",
            "warn,sluice::replication=debug",
            "sluice=trace",
            "OFF",
        ] {
            assert!(super::parse(good).is_ok(), "{good}");
        }
        for bad in ["", "warnn", "info,debugg", "sluice=loud"] {
            assert!(super::parse(bad).is_err(), "{bad}");
        }
    }
}
