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
/// Anonymous registrations from all addresses together: a burst, then this many a second.
const GLOBAL_BURST: f64 = 200.0;
const GLOBAL_PER_SEC: f64 = 20.0;
/// Addresses remembered; past this, full buckets are forgotten, and if that is not enough, all
/// of them (the global bucket still bounds the rate).
const MAX_TRACKED: usize = 10_000;

/// Token buckets per client network (an IPv4 address, an IPv6 /64, which one host usually
/// owns whole) and one for everybody.
#[derive(Debug, Default)]
pub struct RegistrationLimiter {
    state: Mutex<Buckets>,
}

#[derive(Debug, Default)]
struct Buckets {
    by_network: HashMap<IpAddr, Bucket>,
    global: Option<Bucket>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full(burst: f64, now: Instant) -> Self {
        Self {
            tokens: burst,
            at: now,
        }
    }

    /// Refills at `per_sec` up to `burst` and takes a token; when there is none, how long
    /// until there is.
    fn take(&mut self, burst: f64, per_sec: f64, now: Instant) -> Result<(), Duration> {
        let refill = now.duration_since(self.at).as_secs_f64() * per_sec;
        self.tokens = (self.tokens + refill).min(burst);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / per_sec))
        }
    }
}

impl RegistrationLimiter {
    /// Takes one token for `ip`; when the caller must wait, for how long (`Retry-After`).
    pub fn allow(&self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        let per_sec = 1.0 / REFILL_EVERY.as_secs_f64();
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let buckets = &mut *state;
        if buckets.by_network.len() >= MAX_TRACKED {
            let full_after = REFILL_EVERY.mul_f64(BURST);
            buckets
                .by_network
                .retain(|_, b| now.duration_since(b.at) < full_after);
            if buckets.by_network.len() >= MAX_TRACKED {
                buckets.by_network.clear();
            }
        }
        let local = buckets
            .by_network
            .entry(network_of(ip))
            .or_insert_with(|| Bucket::full(BURST, now));
        local.take(BURST, per_sec, now)?;
        buckets
            .global
            .get_or_insert_with(|| Bucket::full(GLOBAL_BURST, now))
            .take(GLOBAL_BURST, GLOBAL_PER_SEC, now)
    }
}

/// The address an IPv4 client is known by; the /64 prefix of an IPv6 one.
fn network_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let bits = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(bits.into())
            }
        },
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
            assert!(limiter.allow(ip, t0).is_ok());
        }
        assert_eq!(limiter.allow(ip, t0), Err(REFILL_EVERY), "a full wait");
        assert!(limiter.allow(ip, t0 + REFILL_EVERY).is_ok());
        assert!(limiter.allow(ip, t0 + REFILL_EVERY).is_err());
        assert_eq!(
            limiter.allow(ip, t0 + REFILL_EVERY + REFILL_EVERY / 3),
            Err(REFILL_EVERY - REFILL_EVERY / 3),
            "what is left of the wait"
        );
        assert!(
            limiter.allow(IpAddr::from([127, 0, 0, 2]), t0).is_ok(),
            "buckets are per address"
        );
    }

    #[test]
    fn one_ipv6_network_shares_a_bucket() {
        let limiter = RegistrationLimiter::default();
        let t0 = Instant::now();
        let host = |last: u16| IpAddr::from([0x2001, 0xdb8, 0, 1, 0, 0, 0, last]);
        for i in 0..BURST as u16 {
            assert!(limiter.allow(host(i), t0).is_ok());
        }
        assert!(
            limiter.allow(host(999), t0).is_err(),
            "another address of the same /64"
        );
        assert!(
            limiter
                .allow(IpAddr::from([0x2001, 0xdb8, 0, 2, 0, 0, 0, 1]), t0)
                .is_ok()
        );
    }

    #[test]
    fn all_addresses_together_are_bounded() {
        let limiter = RegistrationLimiter::default();
        let t0 = Instant::now();
        let allowed = (0..1000u32)
            .filter(|i| limiter.allow(IpAddr::from(i.to_be_bytes()), t0).is_ok())
            .count();
        assert_eq!(allowed, GLOBAL_BURST as usize);
    }
}
