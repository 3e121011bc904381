//! Throttling of enrollment guesses: a source address that presents too many invalid tokens is
//! told to come back later (`unavailable` with `retry_after_ms`), so tokens cannot be brute-forced
//! at line rate. Successful enrollments never count, so a whole office behind one NAT can enroll
//! at once.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Window over which failures are counted.
const WINDOW: Duration = Duration::from_secs(60);
/// Addresses tracked at most (oldest windows are evicted first), bounding memory under a
/// spoofed-address flood.
const MAX_TRACKED: usize = 65_536;

/// Failed enrollment attempts per source address.
#[derive(Debug)]
pub struct EnrollThrottle {
    limit: u32,
    failures: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl EnrollThrottle {
    /// Allow `limit` failed attempts per address per minute.
    pub fn new(limit: u32) -> Self {
        Self {
            limit,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// `Some(wait)` when `ip` must wait before trying again.
    pub fn blocked(&self, ip: IpAddr, now: Instant) -> Option<Duration> {
        let map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let (start, count) = map.get(&ip)?;
        let elapsed = now.saturating_duration_since(*start);
        (*count >= self.limit && elapsed < WINDOW).then(|| WINDOW - elapsed)
    }

    /// Count a failed attempt of `ip`.
    pub fn failed(&self, ip: IpAddr, now: Instant) {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_TRACKED && !map.contains_key(&ip) {
            map.retain(|_, (start, _)| now.saturating_duration_since(*start) < WINDOW);
            if map.len() >= MAX_TRACKED {
                return;
            }
        }
        let entry = map.entry(ip).or_insert((now, 0));
        if now.saturating_duration_since(entry.0) >= WINDOW {
            *entry = (now, 0);
        }
        entry.1 += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_after_the_limit_until_the_window_ends() {
        let t = EnrollThrottle::new(3);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        let now = Instant::now();
        for _ in 0..3 {
            assert!(t.blocked(ip, now).is_none());
            t.failed(ip, now);
        }
        let wait = t.blocked(ip, now + Duration::from_secs(10)).unwrap();
        assert!(wait <= Duration::from_secs(50) && wait > Duration::from_secs(49));
        assert!(t.blocked(other, now).is_none(), "per address");
        assert!(t.blocked(ip, now + WINDOW).is_none(), "the window ends");
    }
}
