//! The `sluice` binary: `sluice serve [flags]` runs the broker; `sluice tune [flags]` checks
//! (and with `--apply` sets) the OS settings it depends on; `sluice bench ...` is the load
//! generator (`perf/`).

use std::process::ExitCode;

use clap::Parser;
use sluice::cli::{Cli, Command, ServeArgs};
use sluice::config::Config;

/// Oversized allocations driven by client input reserve address space instead of aborting.
#[global_allocator]
static ALLOCATOR: sluice::allocator::Allocator = sluice::allocator::Allocator;

fn main() -> ExitCode {
    sluice::logging::init();
    // A panic is a programmer error (STYLE: assertions): stop the whole process so it recovers
    // from disk on restart, instead of leaving a dead shard behind a live listener.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default_hook(info);
        std::process::abort();
    }));
    let cli = Cli::parse();
    if let Some(code) = sluice::cli::run_client_command(&cli.command) {
        return code;
    }
    match cli.command {
        Command::Serve(args) => serve(&args),
        Command::Tune(options) => ExitCode::from(sluice::tune::main(&options)),
        Command::Bench { command } => sluice::bench::main(command),
        Command::Config { command } => {
            match sluice::cli::config_command(&command, &mut std::io::stdout().lock()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("sluice: {error}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Completions { shell } => {
            sluice::cli::completions(shell, &mut std::io::stdout().lock());
            ExitCode::SUCCESS
        }
        Command::Topic { .. }
        | Command::Group { .. }
        | Command::Cluster { .. }
        | Command::User { .. }
        | Command::Acl { .. }
        | Command::Produce(_)
        | Command::Consume(_) => unreachable!("run by run_client_command"),
    }
}

fn serve(args: &ServeArgs) -> ExitCode {
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
    let configured = args
        .to_config(std::env::vars())
        .and_then(|(mut config, misspelt)| {
            for (variable, closest) in misspelt {
                log::warn!("{variable} names no configuration key (did you mean {closest}?)");
            }
            if config.is_explicit("log.level") && !sluice::logging::set_by_environment() {
                sluice::logging::set_start_level(&config.log_level)
                    .map_err(sluice::config::ConfigError::Usage)?;
            }
            resolve_listen_port(&mut config)?;
            config.finish()?;
            Ok(config)
        });
    let config: Config = match configured {
        Ok(config) => config,
        Err(error) => {
            eprintln!("sluice: {error}");
            return ExitCode::from(2);
        }
    };
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
        "sluice {}: node {} cluster {} data {} listeners {} advertised {} shards {} topics {}",
        env!("CARGO_PKG_VERSION"),
        config.node_id,
        metadata.cluster_id,
        config.data_dir.display(),
        config.listeners.listeners_text(),
        config.listeners.advertised_text(),
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

/// Binds each client listener's address once without SO_REUSEPORT: fails if any other process
/// (another broker included) listens there, which SO_REUSEPORT alone would silently allow. Port
/// 0 means "any free port": the one found here is what every shard then binds (and advertises,
/// unless `advertised.listeners` names another).
fn resolve_listen_port(config: &mut Config) -> Result<(), sluice::config::ConfigError> {
    // Held until every port is known, so two port-0 listeners cannot be handed the same one.
    let mut probes = Vec::new();
    for listener in &mut config.listeners.listeners {
        let probe = std::net::TcpListener::bind(listener.address).map_err(|error| {
            sluice::config::ConfigError::Usage(format!(
                "cannot listen on {} ({}): {error}",
                listener.address, listener.name
            ))
        })?;
        listener.address = probe.local_addr().map_err(|error| {
            sluice::config::ConfigError::Usage(format!("cannot read bound address: {error}"))
        })?;
        probes.push(probe);
    }
    drop(probes);
    config.listeners.resolve();
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
