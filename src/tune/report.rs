//! Output of `sluice tune`: a plain-text table with notes for the rows that are not OK, or
//! JSON (`--json`) for scripts.

use std::fmt::Write as _;

use super::check::{Check, Fix, Status};
use super::Outcome;

const HEADERS: [&str; 4] = ["setting", "current", "recommended", "status"];

/// The report of a check-only run.
pub fn checked(checks: &[Check], json: bool) -> String {
    if json {
        return format!("{{\"checks\":{}}}\n", json_checks(checks));
    }
    let mut text = table(checks);
    text.push_str(&notes(checks));
    text
}

/// The report of an `--apply` run: the table before, what was done, the table after.
pub fn applied(before: &[Check], outcomes: &[Outcome], after: &[Check], json: bool) -> String {
    if json {
        let outcomes: Vec<String> = outcomes.iter().map(json_outcome).collect();
        return format!(
            "{{\"before\":{},\"applied\":[{}],\"checks\":{}}}\n",
            json_checks(before),
            outcomes.join(","),
            json_checks(after)
        );
    }
    let mut text = format!("before:\n{}\napplied:\n", table(before));
    if outcomes.is_empty() {
        text.push_str("  nothing to change\n");
    }
    for outcome in outcomes {
        let line = match outcome {
            Outcome::Changed {
                setting,
                path,
                value,
            } => {
                format!("  changed     {setting}: wrote `{value}` to {path}")
            }
            Outcome::Failed {
                setting,
                path,
                value,
                reason,
            } => {
                format!("  not changed {setting}: `{value}` to {path}: {reason}")
            }
            Outcome::Manual { setting, how } => format!("  by hand     {setting}: {how}"),
        };
        text.push_str(&line);
        text.push('\n');
    }
    let _ = write!(text, "\nafter:\n{}{}", table(after), notes(after));
    text
}

/// Columns padded to their widest cell, then a one-line count per status.
fn table(checks: &[Check]) -> String {
    let rows: Vec<[&str; 4]> = checks
        .iter()
        .map(|c| [c.setting, &c.current, &c.recommended, c.status.as_str()])
        .collect();
    let mut widths = HEADERS.map(|header| header.chars().count());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut text = String::new();
    for row in std::iter::once(&HEADERS).chain(&rows) {
        let mut line = String::new();
        for (cell, width) in row.iter().zip(widths) {
            let _ = write!(line, "{cell:width$}  ");
        }
        text.push_str(line.trim_end());
        text.push('\n');
    }
    let count = |status| checks.iter().filter(|c| c.status == status).count();
    let _ = writeln!(
        text,
        "{} settings: {} OK, {} WARN, {} FAIL, {} UNKNOWN",
        checks.len(),
        count(Status::Ok),
        count(Status::Warn),
        count(Status::Fail),
        count(Status::Unknown)
    );
    text
}

/// Why each row that is not OK is so, and how it gets fixed.
fn notes(checks: &[Check]) -> String {
    let mut text = String::new();
    for check in checks.iter().filter(|check| check.status != Status::Ok) {
        let fix = match &check.fix {
            Fix::None => String::new(),
            Fix::Write(writes) => match writes.as_slice() {
                [one] => format!("; --apply writes `{}` to /{}", one.value, one.path),
                many => format!("; --apply writes {} files", many.len()),
            },
            Fix::Manual(how) => format!("; by hand: {how}"),
        };
        let _ = writeln!(text, "  {}: {}{fix}", check.setting, check.reason);
    }
    if text.is_empty() {
        return text;
    }
    format!("\nnotes (see tuning/README.md):\n{text}")
}

fn json_checks(checks: &[Check]) -> String {
    let rows: Vec<String> = checks
        .iter()
        .map(|check| {
            format!(
                "{{\"setting\":{},\"current\":{},\"recommended\":{},\"status\":{},\"reason\":{}}}",
                json_string(check.setting),
                json_string(&check.current),
                json_string(&check.recommended),
                json_string(check.status.as_str()),
                json_string(&check.reason)
            )
        })
        .collect();
    format!("[{}]", rows.join(","))
}

fn json_outcome(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Changed {
            setting,
            path,
            value,
        } => format!(
            "{{\"setting\":{},\"result\":\"changed\",\"path\":{},\"value\":{}}}",
            json_string(setting),
            json_string(path),
            json_string(value)
        ),
        Outcome::Failed {
            setting,
            path,
            value,
            reason,
        } => format!(
            "{{\"setting\":{},\"result\":\"failed\",\"path\":{},\"value\":{},\"reason\":{}}}",
            json_string(setting),
            json_string(path),
            json_string(value),
            json_string(reason)
        ),
        Outcome::Manual { setting, how } => format!(
            "{{\"setting\":{},\"result\":\"manual\",\"how\":{}}}",
            json_string(setting),
            json_string(how)
        ),
    }
}

fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows() -> Vec<Check> {
        vec![
            Check::new("vm.swappiness", "1", "1"),
            Check::new("net.core.somaxconn", "128", ">= 4096")
                .verdict(Status::Warn, "backlog")
                .fixed_by(crate::tune::check::write_all(
                    &["proc/sys/net/core/somaxconn".to_string()],
                    "4096",
                )),
        ]
    }

    #[test]
    fn table_aligns_columns_and_notes_explain_non_ok_rows() {
        let text = checked(&rows(), false);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "setting             current  recommended  status");
        assert_eq!(lines[1], "vm.swappiness       1        1            OK");
        assert_eq!(lines[2], "net.core.somaxconn  128      >= 4096      WARN");
        assert_eq!(lines[3], "2 settings: 1 OK, 1 WARN, 0 FAIL, 0 UNKNOWN");
        assert!(text.contains(
            "net.core.somaxconn: backlog; --apply writes `4096` to /proc/sys/net/core/somaxconn"
        ));
        assert!(!text.contains("vm.swappiness:"), "OK rows get no note");
    }

    #[test]
    fn json_escapes_strings() {
        assert_eq!(json_string("a\"b\\c\n\u{1}"), "\"a\\\"b\\\\c\\n\\u0001\"");
        let text = checked(&rows(), true);
        assert!(text.starts_with("{\"checks\":[{\"setting\":\"vm.swappiness\""));
        assert!(text.contains("\"status\":\"WARN\""));
    }
}
