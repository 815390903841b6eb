//! The `sluice` binary: `sluice serve [flags]` runs the broker; `sluice tune [flags]` checks
//! (and with `--apply` sets) the OS settings it depends on; `sluice bench ...` is the load
//! generator (`perf/`).

use std::process::ExitCode;

use sluice::config::{Config, KEYS};

/// Oversized allocations driven by client input reserve address space instead of aborting.
#[global_allocator]
static ALLOCATOR: sluice::allocator::Allocator = sluice::allocator::Allocator;

const USAGE: &str = "\
usage: sluice serve [--config FILE] [--listen HOST:PORT] [--advertise HOST:PORT]
                    [--data-dir DIR] [--cores N] [--node-id N] [--set KEY=VALUE]...
       sluice tune [--apply] [--json] [--root DIR] [--memlock BYTES] [--nofile N]
       sluice bench produce|consume|e2e|sink|plot [flags]   (sluice bench --help)

`serve` runs the broker. With no flags: one node, data in ./data, listener 127.0.0.1:9092,
one shard per CPU. Settings come from defaults, then the TOML file, then SLUICE_*
environment variables, then flags. Log level: RUST_LOG (default info).
`tune` checks (and with --apply sets) the OS settings the broker depends on; exit status
1 when one FAILs (`sluice tune --help`, tuning/README.md).
";

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    // A panic is a programmer error (STYLE: assertions): stop the whole process so it recovers
    // from disk on restart, instead of leaving a dead shard behind a live listener.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default_hook(info);
        std::process::abort();
    }));
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("serve") => serve(&args[1..]),
        Some("tune") => ExitCode::from(sluice::tune::main(&args[1..])),
        Some("bench") => sluice::bench::main(&args[1..]),
        Some("--help") | Some("-h") | Some("help") | None => {
            print!("{USAGE}\nconfiguration keys:\n");
            for (key, meaning) in KEYS {
                println!("  {key:36} {meaning}");
            }
            ExitCode::SUCCESS
        }
        Some("--version") | Some("version") => {
            println!("sluice {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Some(other) => {
            eprintln!("sluice: unknown command `{other}`\n\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn serve(args: &[String]) -> ExitCode {
    // Before any other thread exists: every thread inherits the blocked mask, and one thread
    // turns SIGTERM/SIGINT into a graceful shutdown (`shard::shutdown`).
    let signals = match sluice::shard::shutdown::block_termination_signals() {
        Ok(signals) => signals,
        Err(error) => {
            eprintln!("sluice: cannot block termination signals: {error}");
            return ExitCode::from(1);
        }
    };
    sluice::shard::pool::raise_open_file_limit();
    let mut config = Config::default();
    let applied = config
        .apply_env()
        .and_then(|()| config.apply_args(args))
        .and_then(|()| resolve_listen_port(&mut config))
        .and_then(|()| config.finish());
    if let Err(error) = applied {
        eprintln!("sluice: {error}");
        return ExitCode::from(2);
    }
    if let Err(error) = std::fs::create_dir_all(&config.data_dir) {
        eprintln!(
            "sluice: cannot create data dir {}: {error}",
            config.data_dir.display()
        );
        return ExitCode::from(1);
    }
    remove_deleted_partition_dirs(&config.data_dir);
    let clean_start = match sluice::storage::clean_shutdown::take(&config.data_dir) {
        Ok(clean) => clean,
        Err(error) => {
            eprintln!("sluice: cannot read the clean-shutdown marker: {error}");
            return ExitCode::from(1);
        }
    };
    let recovery = if clean_start {
        // Machine-readable, before the readiness line: tests check it.
        println!("sluice: last shutdown was clean: light recovery");
        sluice::storage::Recovery::AfterCleanShutdown
    } else {
        sluice::storage::Recovery::Full
    };
    let (metadata, controller) = match sluice::cluster::controller::start(&config) {
        Ok(started) => started,
        Err(error) => {
            eprintln!("sluice: cluster metadata: {error}");
            return ExitCode::from(1);
        }
    };
    log::info!(
        "sluice {}: node {} cluster {} data {} listen {} advertise {}:{} shards {} topics {}",
        env!("CARGO_PKG_VERSION"),
        config.node_id,
        metadata.cluster_id,
        config.data_dir.display(),
        config.listen,
        config.advertise_host,
        config.advertise_port,
        config.cores,
        metadata.topics.len()
    );
    if let Err(error) = sluice::shard::shutdown::spawn_signal_thread(signals) {
        eprintln!("sluice: cannot start the signal thread: {error}");
        return ExitCode::from(1);
    }
    let data_dir = config.data_dir.clone();
    match sluice::server::run(config, metadata, controller, recovery) {
        Ok(true) => match sluice::storage::clean_shutdown::write(&data_dir) {
            Ok(()) => {
                log::info!("shut down cleanly");
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("sluice: cannot write the clean-shutdown marker: {error}");
                ExitCode::from(1)
            }
        },
        Ok(false) => {
            log::warn!("shut down, but not every partition log closed cleanly");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("sluice: {error}");
            ExitCode::from(1)
        }
    }
}

/// Binds the listener address once without SO_REUSEPORT: fails if any other process (another
/// broker included) listens there, which SO_REUSEPORT alone would silently allow. Port 0 means
/// "any free port": the one found here is what every shard then binds.
fn resolve_listen_port(config: &mut Config) -> Result<(), sluice::config::ConfigError> {
    let probe = std::net::TcpListener::bind(config.listen).map_err(|error| {
        sluice::config::ConfigError::Usage(format!("cannot listen on {}: {error}", config.listen))
    })?;
    let address = probe.local_addr().map_err(|error| {
        sluice::config::ConfigError::Usage(format!("cannot read bound address: {error}"))
    })?;
    config.listen = address;
    Ok(())
}

/// Finishes deletions a crash interrupted: partition directories renamed `*-delete` by
/// DeleteTopics are removed before any shard starts (std::fs is fine here, no executor runs).
fn remove_deleted_partition_dirs(data_dir: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(data_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        if name.to_string_lossy().ends_with("-delete") {
            if let Err(error) = std::fs::remove_dir_all(entry.path()) {
                log::warn!("cannot remove {}: {error}", entry.path().display());
            }
        }
    }
}
