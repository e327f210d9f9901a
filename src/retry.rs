//! `Retry-After` estimates: how long until a backlog drains at the recent delivery rate.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Bounds of every computed `Retry-After`, in seconds.
pub const MIN_RETRY_AFTER: u64 = 1;
pub const MAX_RETRY_AFTER: u64 = 300;

/// Counts delivered units (records or bytes) and estimates the drain rate.
pub struct DrainRate {
    started: Instant,
    delivered: AtomicU64,
    last_delivery_ms: AtomicU64,
    sample: Mutex<Sample>,
}

struct Sample {
    at: Instant,
    delivered: u64,
    per_sec: f64,
}

impl DrainRate {
    pub fn new() -> DrainRate {
        let now = Instant::now();
        DrainRate {
            started: now,
            delivered: AtomicU64::new(0),
            last_delivery_ms: AtomicU64::new(0),
            sample: Mutex::new(Sample {
                at: now,
                delivered: 0,
                per_sec: 0.0,
            }),
        }
    }

    pub fn delivered(&self, units: u64) {
        self.delivered.fetch_add(units, Ordering::Relaxed);
        let now_ms = self.started.elapsed().as_millis() as u64;
        self.last_delivery_ms.store(now_ms, Ordering::Relaxed);
    }

    /// Seconds a sender should wait for `backlog` units to drain: the backlog over the recent
    /// rate, or, while nothing drains, half the time since the last delivery (a longer outage
    /// asks for a longer wait). Bounded to [`MIN_RETRY_AFTER`]..=[`MAX_RETRY_AFTER`].
    pub fn retry_after_secs(&self, backlog: u64) -> u64 {
        let now = Instant::now();
        let rate = {
            let mut sample = self
                .sample
                .lock()
                .unwrap_or_else(|poison| poison.into_inner());
            let elapsed = now.duration_since(sample.at);
            if elapsed >= Duration::from_secs(1) {
                let delivered = self.delivered.load(Ordering::Relaxed);
                sample.per_sec = (delivered - sample.delivered) as f64 / elapsed.as_secs_f64();
                sample.at = now;
                sample.delivered = delivered;
            }
            sample.per_sec
        };
        let since_delivery_ms = (self.started.elapsed().as_millis() as u64)
            .saturating_sub(self.last_delivery_ms.load(Ordering::Relaxed));
        let secs = if rate >= 1.0 {
            (backlog as f64 / rate).ceil() as u64
        } else {
            since_delivery_ms / 2000
        };
        secs.clamp(MIN_RETRY_AFTER, MAX_RETRY_AFTER)
    }
}

impl Default for DrainRate {
    fn default() -> Self {
        DrainRate::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_bounded() {
        let rate = DrainRate::new();
        assert_eq!(rate.retry_after_secs(0), MIN_RETRY_AFTER);
        assert_eq!(
            rate.retry_after_secs(u64::MAX),
            MIN_RETRY_AFTER,
            "no rate yet: outage-based"
        );
    }
}
