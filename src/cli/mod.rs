//! The `sluice` command line, one clap (derive) definition for every subcommand: `serve` (the
//! broker), `topic`, `group`, `cluster`, `produce` and `consume` (operator commands over the
//! Kafka protocol, `kafka.rs`), `tune` (OS checks), `bench` (load generator), `config` (the
//! configuration keys, from the one key list) and `completions` (shell completion scripts).
//!
//! Exit codes are the same everywhere: 0 success, 1 the operation failed, 2 bad usage
//! (clap's own code for a bad flag).

pub mod acl;
pub mod cluster;
pub mod consume;
pub mod group;
pub mod kafka;
pub mod produce;
pub mod topic;
pub mod user;

use std::io::Write;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use crate::config::keys::{self, BrokerKey};
use crate::config::topic_keys::{self, TopicDefault};
use crate::config::{Config, ConfigError};

#[derive(Parser, Debug)]
#[command(
    name = "sluice",
    version,
    about = "Sluice: a Kafka-compatible streaming broker, one shard per core",
    propagate_version = true,
    arg_required_else_help = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the broker (no flags: one node, data in ./data, listener 127.0.0.1:9092)
    #[command(after_long_help = serve_keys_help(), args_override_self = true)]
    Serve(ServeArgs),
    /// Create, list, describe, configure, grow, trim and delete topics
    Topic {
        #[command(subcommand)]
        command: topic::TopicCommand,
        #[command(flatten)]
        client: kafka::ClientArgs,
    },
    /// List, describe (with lag), delete consumer groups, move their offsets
    Group {
        #[command(subcommand)]
        command: group::GroupCommand,
        #[command(flatten)]
        client: kafka::ClientArgs,
    },
    /// ACLs (the authorizer): create, list, delete
    Acl {
        #[command(subcommand)]
        command: acl::AclCommand,
        #[command(flatten)]
        client: kafka::ClientArgs,
    },
    /// SCRAM users (SASL): create, delete, list
    User {
        #[command(subcommand)]
        command: user::UserCommand,
        #[command(flatten)]
        client: kafka::ClientArgs,
    },
    /// The cluster's brokers and controller, and whether it is healthy
    Cluster {
        #[command(subcommand)]
        command: cluster::ClusterCommand,
        #[command(flatten)]
        client: kafka::ClientArgs,
    },
    /// Produce standard input's lines as records
    Produce(produce::ProduceArgs),
    /// Print a topic's records
    Consume(consume::ConsumeArgs),
    /// Check (and with --apply set) the OS settings the broker depends on
    #[command(after_help = crate::tune::ABOUT)]
    Tune(crate::tune::Options),
    /// Load generator for any Kafka-protocol broker
    #[command(after_help = crate::bench::options::ABOUT)]
    Bench {
        #[command(subcommand)]
        command: crate::bench::options::BenchCommand,
    },
    /// List the configuration keys (broker and topic): default, range, documentation
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Print a shell completion script (e.g. `sluice completions bash > /etc/bash_completion.d/sluice`)
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Every key with its default, range and meaning
    Keys {
        /// Topic keys instead of broker keys
        #[arg(long)]
        topic: bool,
        #[arg(long, value_enum, default_value_t = KeysFormat::Table)]
        format: KeysFormat,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KeysFormat {
    Table,
    Json,
    Markdown,
}

/// `sluice serve` flags. Settings apply in this order, later winning: defaults, the TOML file,
/// `SLUICE_<KEY>` variables, these flags (or their own variables), then each `--set`.
#[derive(clap::Args, Debug, Default, Clone)]
pub struct ServeArgs {
    /// TOML file of configuration keys (Kafka's names: `log.retention.ms = 60000`)
    #[arg(long, env = "SLUICE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Client listener (the `listeners` key)
    #[arg(long, env = "SLUICE_LISTEN", value_name = "HOST:PORT")]
    pub listen: Option<String>,
    /// Address given to clients (the `advertised.listeners` key)
    #[arg(long, env = "SLUICE_ADVERTISE", value_name = "HOST:PORT")]
    pub advertise: Option<String>,
    /// Data directory (the `log.dirs` key)
    #[arg(long, env = "SLUICE_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<String>,
    /// Shards, one pinned per CPU (the `cores` key)
    #[arg(long, env = "SLUICE_CORES", value_name = "N")]
    pub cores: Option<String>,
    /// This node's id (the `node.id` key)
    #[arg(long, env = "SLUICE_NODE_ID", value_name = "ID")]
    pub node_id: Option<String>,
    /// Any configuration key (repeatable; `sluice config keys` lists them)
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
}

impl ServeArgs {
    /// The broker's configuration from every source, validated (`Config::finish` not yet
    /// called: the caller resolves the listener first). Returns the `SLUICE_*` variables that
    /// look like misspelt keys, for a warning.
    pub fn to_config(
        &self,
        environment: impl Iterator<Item = (String, String)>,
    ) -> Result<(Config, Vec<(String, String)>), ConfigError> {
        let mut config = Config::default();
        if let Some(path) = &self.config {
            config.apply_toml_file(&path.display().to_string())?;
        }
        let misspelt = config.apply_env_from(environment)?;
        let flags = [
            ("listeners", &self.listen),
            ("advertised.listeners", &self.advertise),
            ("log.dirs", &self.data_dir),
            ("cores", &self.cores),
            ("node.id", &self.node_id),
        ];
        for (key, value) in flags {
            if let Some(value) = value {
                config.set(key, value)?;
            }
        }
        for setting in &self.set {
            let (key, value) = setting.split_once('=').ok_or_else(|| {
                ConfigError::Usage(format!("--set expects KEY=VALUE, got `{setting}`"))
            })?;
            config.set(key.trim(), value)?;
        }
        Ok((config, misspelt))
    }
}

/// The key list under `sluice serve --help`.
fn serve_keys_help() -> String {
    let mut text = String::from(
        "Configuration keys (also SLUICE_<KEY> variables, `log.retention.ms` is \
         SLUICE_LOG_RETENTION_MS; `sluice config keys` for ranges and topic keys):\n",
    );
    for key in keys::BROKER_KEYS {
        text.push_str(&format!(
            "  {:48} {}\n      default {}\n",
            key.name,
            key.doc,
            key.default_text()
        ));
    }
    text
}

/// Runs `sluice config ...`, writing to `out`.
pub fn config_command(command: &ConfigCommand, out: &mut dyn Write) -> std::io::Result<()> {
    let ConfigCommand::Keys { topic, format } = command;
    let text = match (topic, format) {
        (false, KeysFormat::Markdown) => broker_keys_markdown(),
        (true, KeysFormat::Markdown) => topic_keys_markdown(),
        (false, KeysFormat::Json) => broker_keys_json(),
        (true, KeysFormat::Json) => topic_keys_json(),
        (false, KeysFormat::Table) => table(
            &["KEY", "DEFAULT", "RANGE", "ENV"],
            keys::BROKER_KEYS
                .iter()
                .map(|key| {
                    vec![
                        key.name.to_string(),
                        key.default_text(),
                        key.range(),
                        key.env_name(),
                    ]
                })
                .collect(),
        ),
        (true, KeysFormat::Table) => table(
            &["KEY", "DEFAULT", "RANGE", "ACTED ON"],
            topic_keys::TOPIC_KEYS
                .iter()
                .map(|key| {
                    vec![
                        key.name.to_string(),
                        topic_default_text(key),
                        key.range(),
                        if key.effective { "yes" } else { "no" }.to_string(),
                    ]
                })
                .collect(),
        ),
    };
    out.write_all(text.as_bytes())
}

fn topic_default_text(key: &topic_keys::TopicKey) -> String {
    match key.default {
        TopicDefault::Broker => format!("= {}", key.broker_key),
        TopicDefault::Fixed("") => "(none)".to_string(),
        TopicDefault::Fixed(value) => value.to_string(),
    }
}

/// Aligned columns, two spaces apart (the table format of every `sluice` command).
pub fn table(header: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut all = vec![header.iter().map(|h| h.to_string()).collect::<Vec<_>>()];
    all.extend(rows);
    aligned(&all)
}

/// Rows in columns two spaces apart (a table without a header line).
pub fn aligned(rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = Vec::new();
    for row in rows {
        for (column, cell) in row.iter().enumerate() {
            let width = cell.chars().count();
            match widths.get_mut(column) {
                Some(known) => *known = (*known).max(width),
                None => widths.push(width),
            }
        }
    }
    let mut text = String::new();
    for row in rows {
        let last = row.len().saturating_sub(1);
        for (column, cell) in row.iter().enumerate() {
            if column == last {
                text.push_str(cell);
            } else {
                let pad = widths[column] - cell.chars().count() + 2;
                text.push_str(cell);
                text.push_str(&" ".repeat(pad));
            }
        }
        text.push('\n');
    }
    text
}

/// README's broker key table (a test checks README holds exactly this).
pub fn broker_keys_markdown() -> String {
    let mut text = String::from("| key | default | range | meaning |\n|---|---|---|---|\n");
    for key in keys::BROKER_KEYS {
        let aliases = if key.aliases.is_empty() {
            String::new()
        } else {
            format!(
                " (also {})",
                key.aliases
                    .iter()
                    .map(|alias| format!("`{alias}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        text.push_str(&format!(
            "| `{}`{aliases} | {} | {} | {}{} |\n",
            key.name,
            key.default_text(),
            key.range(),
            key.doc,
            if key.is_dynamic() { " (dynamic)" } else { "" }
        ));
    }
    text
}

/// README's topic key table.
pub fn topic_keys_markdown() -> String {
    let mut text =
        String::from("| key | default | range | acted on | meaning |\n|---|---|---|---|---|\n");
    for key in topic_keys::TOPIC_KEYS {
        text.push_str(&format!(
            "| `{}` | {} | {} | {} | {} |\n",
            key.name,
            topic_default_text(key),
            key.range(),
            if key.effective { "yes" } else { "no" },
            key.doc
        ));
    }
    text
}

fn broker_key_json(key: &BrokerKey) -> serde_json::Value {
    let (default, derived) = match key.default {
        keys::Default::Value(value) => (Some(value), None),
        keys::Default::Derived(rule) => (None, Some(rule)),
    };
    let (min, max) = match key.setter {
        keys::Setter::Int { min, max, .. } => (Some(min), Some(max)),
        _ => (None, None),
    };
    serde_json::json!({
        "name": key.name,
        "aliases": key.aliases,
        "type": match key.kafka_type() { 1 => "boolean", 3 => "int", 5 => "long", _ => "string" },
        "default": default,
        "derived_default": derived,
        "min": min,
        "max": max,
        "unit": format!("{:?}", key.unit).to_lowercase(),
        "dynamic": key.is_dynamic(),
        "env": key.env_name(),
        "doc": key.doc,
    })
}

fn broker_keys_json() -> String {
    let keys: Vec<_> = keys::BROKER_KEYS.iter().map(broker_key_json).collect();
    format!("{}\n", serde_json::Value::Array(keys))
}

fn topic_keys_json() -> String {
    let keys: Vec<_> = topic_keys::TOPIC_KEYS
        .iter()
        .map(|key| {
            serde_json::json!({
                "name": key.name,
                "broker_key": (!key.broker_key.is_empty()).then_some(key.broker_key),
                "default": match key.default {
                    TopicDefault::Broker => None,
                    TopicDefault::Fixed(value) => Some(value),
                },
                "range": key.range(),
                "acted_on": key.effective,
                "doc": key.doc,
            })
        })
        .collect();
    format!("{}\n", serde_json::Value::Array(keys))
}

/// Writes the completion script for `shell`.
pub fn completions(shell: clap_complete::Shell, out: &mut dyn Write) {
    use clap::CommandFactory;
    clap_complete::generate(shell, &mut Cli::command(), "sluice", out);
}

/// Runs an operator command (`topic`, `group`, `cluster`, `produce`, `consume`); None for the
/// others. Failures are printed as `sluice: ...` with exit code 1.
pub fn run_client_command(command: &Command) -> Option<std::process::ExitCode> {
    let outcome = match command {
        Command::Topic { command, client } => topic::run(command, client),
        Command::Group { command, client } => group::run(command, client),
        Command::Cluster { command, client } => cluster::run(command, client),
        Command::User { command, client } => user::run(command, client),
        Command::Acl { command, client } => acl::run(command, client),
        Command::Produce(args) => produce::run(args),
        Command::Consume(args) => consume::run(args),
        _ => return None,
    };
    Some(match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(kafka::Failed(message)) => {
            eprintln!("sluice: {message}");
            std::process::ExitCode::from(1)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("sluice").chain(args.iter().copied()))
    }

    #[test]
    fn every_subcommand_has_help() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        for args in [
            &["--help"][..],
            &["serve", "--help"],
            &["tune", "--help"],
            &["config", "keys", "--help"],
            &["completions", "--help"],
            &["bench", "--help"],
            &["bench", "e2e", "--help"],
            &["bench", "sink", "--help"],
            &["bench", "plot", "--help"],
        ] {
            let error = parse(args).unwrap_err();
            assert_eq!(
                error.kind(),
                clap::error::ErrorKind::DisplayHelp,
                "{args:?}"
            );
        }
        let help = parse(&["serve", "--help"]).unwrap_err().to_string();
        for key in keys::BROKER_KEYS {
            assert!(help.contains(key.name), "serve --help misses {}", key.name);
        }
    }

    #[test]
    fn serve_flags_keys_and_environment_in_order() {
        let Command::Serve(args) = parse(&[
            "serve",
            "--data-dir",
            "/tmp/d",
            "--set",
            "num.partitions=3",
            "--set",
            "log.retention.ms=5000",
        ])
        .unwrap()
        .command
        else {
            panic!("not serve");
        };
        let environment = [
            ("SLUICE_NUM_PARTITIONS".to_string(), "2".to_string()),
            (
                "SLUICE_LOG_SEGMENT_BYTES".to_string(),
                "2097152".to_string(),
            ),
        ];
        let (config, misspelt) = args.to_config(environment.into_iter()).unwrap();
        assert!(misspelt.is_empty());
        assert_eq!(config.num_partitions, 3, "--set beats the variable");
        assert_eq!(config.log_segment_bytes, 2 << 20, "the variable applies");
        assert_eq!(config.log_retention_ms, 5000);
        assert_eq!(config.data_dir, PathBuf::from("/tmp/d"));
        let bad = ServeArgs {
            set: vec!["log.retention.msx=1".to_string()],
            ..ServeArgs::default()
        };
        let error = bad.to_config(std::iter::empty()).unwrap_err().to_string();
        assert!(error.contains("did you mean `log.retention.ms`"), "{error}");
        let Command::Serve(repeated) = parse(&["serve", "--cores", "1", "--cores", "2"])
            .unwrap()
            .command
        else {
            panic!("not serve");
        };
        assert_eq!(repeated.cores.as_deref(), Some("2"), "the last one wins");
        assert!(parse(&["serve", "--bogus", "1"]).is_err());
        assert!(parse(&["serve", "--cores"]).is_err());
    }

    /// README's configuration tables are generated from the key lists: this fails when they
    /// differ. `SLUICE_WRITE_README=1 cargo test --lib readme_` rewrites them.
    #[test]
    fn readme_configuration_tables_match_the_key_lists() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/README.md");
        let readme = std::fs::read_to_string(path).unwrap();
        let mut expected = readme.clone();
        for (marker, table) in [
            ("broker-keys", broker_keys_markdown()),
            ("topic-keys", topic_keys_markdown()),
        ] {
            let begin =
                format!("<!-- {marker}: generated by `sluice config keys`; do not edit -->\n");
            let end = format!("<!-- end {marker} -->");
            let start = expected
                .find(&begin)
                .unwrap_or_else(|| panic!("README has no `{}` line", begin.trim()))
                + begin.len();
            let stop = start
                + expected[start..]
                    .find(&end)
                    .unwrap_or_else(|| panic!("README has no `{end}` line"));
            expected.replace_range(start..stop, &table);
        }
        if expected != readme {
            if std::env::var_os("SLUICE_WRITE_README").is_some() {
                std::fs::write(path, &expected).unwrap();
            } else {
                panic!(
                    "README's configuration tables differ from the key lists; run \
                     `SLUICE_WRITE_README=1 cargo test --lib readme_` and commit README.md"
                );
            }
        }
    }

    #[test]
    fn completions_name_the_subcommands() {
        let mut script = Vec::new();
        completions(clap_complete::Shell::Bash, &mut script);
        let script = String::from_utf8(script).unwrap();
        assert!(script.contains("serve") && script.contains("--data-dir"));
    }
}
