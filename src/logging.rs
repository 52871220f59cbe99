//! Logging to stderr: colour only when stderr is a terminal (and never with
//! `NO_COLOR`), and repeated warnings rate-limited so a hostile peer cannot
//! flood the terminal or a log file.
//!
//! Each warning or error call site prints its first [`SHOWN_PER_KIND`] events;
//! further ones are counted, and the count is printed once per
//! [`SUMMARY_EVERY`] (when another arrives) and at exit ([`summarize`]).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{IsTerminal, Write as _};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tracing::callsite::Identifier;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;

/// Warnings (or errors) of one kind printed before the rest are only counted.
pub(crate) const SHOWN_PER_KIND: u64 = 5;
/// How often the count of left-out warnings is printed while they keep coming.
pub(crate) const SUMMARY_EVERY: Duration = Duration::from_secs(60);

/// One call site's count.
struct Kind {
    message: String,
    seen: u64,
    left_out: u64,
    last_summary: Instant,
}

/// The rate limit, keyed by call site; a [`Layer`] that only filters.
#[derive(Default)]
struct RateLimit {
    kinds: Mutex<HashMap<Identifier, Kind>>,
}

static LIMIT: std::sync::OnceLock<&'static RateLimit> = std::sync::OnceLock::new();

/// Takes an event's `message` field.
struct Message(String);

impl Visit for Message {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?}");
        }
    }
}

fn summary_line(message: &str, left_out: u64, tail: &str) -> String {
    format!(
        "sipcheck: {left_out} more warning(s) \"{}\" left out{tail}\n",
        crate_escape(message)
    )
}

/// Keeps the summary on one line and free of control bytes.
fn crate_escape(text: &str) -> String {
    sipcheck::terminal::escape_controls(text).into_owned()
}

impl RateLimit {
    /// Counts an event of `id`; true if it is to be printed. Returns the
    /// summary line due now, if any.
    fn admit(
        &self,
        id: Identifier,
        message: impl FnOnce() -> String,
        now: Instant,
    ) -> (bool, Option<String>) {
        let mut kinds = self.kinds.lock().unwrap_or_else(|e| e.into_inner());
        let kind = kinds.entry(id).or_insert_with(|| Kind {
            message: message(),
            seen: 0,
            left_out: 0,
            last_summary: now,
        });
        kind.seen += 1;
        if kind.seen <= SHOWN_PER_KIND {
            return (true, None);
        }
        kind.left_out += 1;
        if now.duration_since(kind.last_summary) >= SUMMARY_EVERY {
            let line = summary_line(
                &kind.message,
                kind.left_out,
                &format!(" in the last {} s", SUMMARY_EVERY.as_secs()),
            );
            kind.left_out = 0;
            kind.last_summary = now;
            return (false, Some(line));
        }
        (false, None)
    }

    /// The summary lines of every kind with warnings left out, and resets them.
    fn drain(&self) -> Vec<String> {
        let mut kinds = self.kinds.lock().unwrap_or_else(|e| e.into_inner());
        let mut lines: Vec<String> = kinds
            .values_mut()
            .filter(|k| k.left_out > 0)
            .map(|k| {
                let line = summary_line(&k.message, k.left_out, "");
                k.left_out = 0;
                line
            })
            .collect();
        lines.sort();
        lines
    }
}

impl<S: Subscriber> Layer<S> for &'static RateLimit {
    fn event_enabled(&self, event: &Event<'_>, _ctx: Context<'_, S>) -> bool {
        let meta = event.metadata();
        if *meta.level() > Level::WARN {
            return true;
        }
        let (shown, summary) = self.admit(
            meta.callsite(),
            || {
                let mut m = Message(String::new());
                event.record(&mut m);
                m.0
            },
            Instant::now(),
        );
        if let Some(line) = summary {
            let _ = std::io::stderr().lock().write_all(line.as_bytes());
        }
        shown
    }
}

/// Whether to colour stderr: only a terminal, and not when `NO_COLOR` is set
/// to a non-empty value (<https://no-color.org>).
fn colour() -> bool {
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    !no_color && std::io::stderr().is_terminal()
}

/// Installs the stderr logger: `verbose` 0 warnings, 1 debug, 2 trace
/// (`RUST_LOG` overrides).
pub(crate) fn init(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let limit: &'static RateLimit = Box::leak(Box::default());
    let _ = LIMIT.set(limit);
    tracing_subscriber::registry()
        .with(filter)
        .with(limit)
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(colour()),
        )
        .init();
}

/// Prints how many warnings of each kind were left out since the last summary.
pub(crate) fn summarize() {
    if let Some(limit) = LIMIT.get() {
        let mut err = std::io::stderr().lock();
        for line in limit.drain() {
            let _ = err.write_all(line.as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_few_of_a_kind_are_shown_then_counted_and_summarized() {
        let limit = RateLimit::default();
        let t0 = Instant::now();
        let id = |n: u8| {
            struct Site(#[allow(dead_code)] u8);
            static A: Site = Site(0);
            static B: Site = Site(1);
            impl tracing::Callsite for Site {
                fn set_interest(&self, _: tracing::subscriber::Interest) {}
                fn metadata(&self) -> &tracing::Metadata<'_> {
                    unreachable!()
                }
            }
            if n == 0 {
                Identifier(&A)
            } else {
                Identifier(&B)
            }
        };
        let mut shown = 0;
        for i in 0..100u64 {
            let (s, line) = limit.admit(
                id(0),
                || "bad\x1b[31m".into(),
                t0 + Duration::from_millis(i),
            );
            assert!(line.is_none());
            shown += u64::from(s);
        }
        assert_eq!(shown, SHOWN_PER_KIND);
        // Another kind has its own allowance.
        assert!(limit.admit(id(1), || "other".into(), t0).0);
        // After SUMMARY_EVERY the count so far is printed.
        let (s, line) = limit.admit(id(0), || unreachable!(), t0 + SUMMARY_EVERY);
        assert!(!s);
        let line = line.expect("a periodic summary");
        assert!(
            line.contains(&format!("{} more", 100 - SHOWN_PER_KIND + 1)),
            "{line}"
        );
        assert!(!line.contains('\x1b'), "{line}");
        assert!(limit.drain().is_empty());
        limit.admit(id(0), || unreachable!(), t0 + SUMMARY_EVERY);
        let lines = limit.drain();
        assert_eq!(lines.len(), 1);
        assert!(
            lines[0].starts_with("sipcheck: 1 more warning(s) \"bad"),
            "{lines:?}"
        );
    }
}
