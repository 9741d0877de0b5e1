//! Time as a dependency: services ask a `Clock`, tests pass a fixed one.

use std::sync::atomic::{AtomicI64, Ordering};

/// A source of the current time in microseconds since the Unix epoch.
pub trait Clock: Send + Sync + 'static {
    fn now_micros(&self) -> i64;
}

/// The system clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_micros(&self) -> i64 {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
    }
}

/// A clock that stays where a test puts it.
pub struct FixedClock(AtomicI64);

impl FixedClock {
    pub fn new(micros: i64) -> Self {
        FixedClock(AtomicI64::new(micros))
    }

    pub fn advance(&self, micros: i64) {
        self.0.fetch_add(micros, Ordering::SeqCst);
    }
}

impl Clock for FixedClock {
    fn now_micros(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// Formats microseconds since the epoch as RFC 3339 (UTC).
pub fn rfc3339(micros: i64) -> String {
    let nanos = i128::from(micros) * 1000;
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_default()
}

/// Parses an RFC 3339 timestamp, or a plain date (`2024-05-01`), to microseconds.
pub fn parse_timestamp(raw: &str) -> Option<i64> {
    let raw = raw.trim();
    if let Ok(t) = time::OffsetDateTime::parse(raw, &time::format_description::well_known::Rfc3339) {
        return i64::try_from(t.unix_timestamp_nanos() / 1000).ok();
    }
    let date = time::Date::parse(raw, time::macros::format_description!("[year]-[month]-[day]")).ok()?;
    i64::try_from(date.midnight().assume_utc().unix_timestamp_nanos() / 1000).ok()
}
