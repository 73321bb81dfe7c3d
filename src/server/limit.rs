//! Per-address rate limit for anonymous registration: a token bucket per client IP.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Registrations one address may make at once.
pub(super) const BURST: f64 = 20.0;
/// Then one more every this long.
pub(super) const REFILL_EVERY: Duration = Duration::from_secs(3);
/// Addresses remembered before idle ones are forgotten.
const MAX_TRACKED: usize = 10_000;

#[derive(Debug, Default)]
pub struct RegistrationLimiter {
    buckets: Mutex<HashMap<IpAddr, (f64, Instant)>>,
}

impl RegistrationLimiter {
    /// Takes one token for `ip`; false when the address must wait.
    pub fn allow(&self, ip: IpAddr, now: Instant) -> bool {
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() >= MAX_TRACKED {
            // Forget buckets that have refilled completely: they hold no information.
            let full_after = REFILL_EVERY.mul_f64(BURST);
            buckets.retain(|_, (_, at)| now.duration_since(*at) < full_after);
        }
        let (tokens, at) = buckets.entry(ip).or_insert((BURST, now));
        let refill = now.duration_since(*at).as_secs_f64() / REFILL_EVERY.as_secs_f64();
        *tokens = (*tokens + refill).min(BURST);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_allowed_then_one_per_refill() {
        let limiter = RegistrationLimiter::default();
        let ip = IpAddr::from([127, 0, 0, 1]);
        let t0 = Instant::now();
        for _ in 0..BURST as usize {
            assert!(limiter.allow(ip, t0));
        }
        assert!(!limiter.allow(ip, t0));
        assert!(limiter.allow(ip, t0 + REFILL_EVERY));
        assert!(!limiter.allow(ip, t0 + REFILL_EVERY));
        assert!(
            limiter.allow(IpAddr::from([127, 0, 0, 2]), t0),
            "buckets are per address"
        );
    }
}
