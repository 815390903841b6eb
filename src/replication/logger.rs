//! raft-rs logs through `slog`; Sluice logs through `log`. This drain forwards each record
//! (message and key-values) at the matching level, under the target `sluice::raft`.

use std::fmt::Write as _;

use slog::{Drain, Key, OwnedKVList, Record, KV};

struct ToLog;

struct Fields(String);

impl slog::Serializer for Fields {
    fn emit_arguments(&mut self, key: Key, value: &std::fmt::Arguments) -> slog::Result {
        let _ = write!(self.0, " {key}={value}");
        Ok(())
    }
}

impl Drain for ToLog {
    type Ok = ();
    type Err = slog::Never;

    fn log(&self, record: &Record, values: &OwnedKVList) -> Result<(), slog::Never> {
        let level = match record.level() {
            slog::Level::Critical | slog::Level::Error => log::Level::Error,
            slog::Level::Warning => log::Level::Warn,
            slog::Level::Info => log::Level::Info,
            slog::Level::Debug => log::Level::Debug,
            slog::Level::Trace => log::Level::Trace,
        };
        if !log::log_enabled!(target: "sluice::raft", level) {
            return Ok(());
        }
        let mut fields = Fields(String::new());
        let _ = record.kv().serialize(record, &mut fields);
        let _ = values.serialize(record, &mut fields);
        log::log!(target: "sluice::raft", level, "{}{}", record.msg(), fields.0);
        Ok(())
    }
}

/// The logger handed to every Raft node; `group` names it (e.g. "controller").
pub fn for_group(group: &str) -> slog::Logger {
    slog::Logger::root(ToLog, slog::o!("group" => group.to_string()))
}
