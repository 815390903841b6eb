//! Log lines a client can trigger (malformed frames, refused or timed-out connections, invalid
//! batches, refused groups): at most `LINES_PER_WINDOW` per call site per `WINDOW` on each
//! shard, so a hostile client cannot flood the log. The rest are counted and the count rides
//! on the next line let through. Each call site keeps its state in a thread-local, and a shard
//! is a thread: no sharing, no atomics.

use std::cell::Cell;
use std::time::{Duration, Instant};

pub const WINDOW: Duration = Duration::from_secs(10);
/// A burst still shows in full; a steady flood costs at most one line a second per site.
pub const LINES_PER_WINDOW: u32 = 10;

pub struct RateLimitedLog {
    window_start: Cell<Option<Instant>>,
    lines: Cell<u32>,
    suppressed: Cell<u64>,
}

impl Default for RateLimitedLog {
    fn default() -> Self {
        RateLimitedLog::new()
    }
}

impl RateLimitedLog {
    pub const fn new() -> RateLimitedLog {
        RateLimitedLog {
            window_start: Cell::new(None),
            lines: Cell::new(0),
            suppressed: Cell::new(0),
        }
    }

    /// Some(lines suppressed since the last one logged) if a line may be logged now.
    pub fn admit(&self, now: Instant) -> Option<u64> {
        let expired = self
            .window_start
            .get()
            .is_none_or(|start| now.duration_since(start) >= WINDOW);
        if expired {
            self.window_start.set(Some(now));
            self.lines.set(0);
        }
        if self.lines.get() >= LINES_PER_WINDOW {
            self.suppressed.set(self.suppressed.get() + 1);
            return None;
        }
        self.lines.set(self.lines.get() + 1);
        Some(self.suppressed.replace(0))
    }
}

/// `log::log!` through a per-call-site `RateLimitedLog`.
#[macro_export]
macro_rules! log_limited {
    ($level:expr, $($arg:tt)+) => {{
        thread_local! {
            static SITE: $crate::rate_limited_log::RateLimitedLog =
                const { $crate::rate_limited_log::RateLimitedLog::new() };
        }
        if log::log_enabled!($level) {
            SITE.with(|site| match site.admit(std::time::Instant::now()) {
                Some(0) => log::log!($level, $($arg)+),
                Some(suppressed) => log::log!(
                    $level,
                    "{} ({suppressed} similar lines suppressed)",
                    format_args!($($arg)+)
                ),
                None => {}
            });
        }
    }};
}

#[macro_export]
macro_rules! warn_limited {
    ($($arg:tt)+) => { $crate::log_limited!(log::Level::Warn, $($arg)+) };
}

#[macro_export]
macro_rules! info_limited {
    ($($arg:tt)+) => { $crate::log_limited!(log::Level::Info, $($arg)+) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_is_cut_to_the_window_and_counted() {
        let site = RateLimitedLog::new();
        let start = Instant::now();
        for _ in 0..LINES_PER_WINDOW {
            assert_eq!(site.admit(start), Some(0));
        }
        assert_eq!(site.admit(start), None);
        assert_eq!(site.admit(start + Duration::from_secs(1)), None);
        assert_eq!(
            site.admit(start + WINDOW),
            Some(2),
            "the next window reports the count"
        );
        assert_eq!(site.admit(start + WINDOW), Some(0));
    }
}
