//! How long the tunnel keeper waits before the next connection attempt: full jitter over a window
//! that doubles from 1 s up to a cap of a few seconds, reset once a session has stayed up 10 s.
//! A step function with the randomness passed in, so tests need no clock and no luck.
//!
//! Why these numbers: the first retry lands within 1 s, so a relay that dropped one session (or
//! restarted) costs about a second of downtime; the cap is kept at 5 s because a longer one (8 s
//! was tried) added its own length to every outage; and full jitter spreads a relay's miners
//! over the window instead of bringing them back in one burst. The reset comes after 10 s up (a
//! minute was tried): a session that carried its forward that long proved the relay takes us,
//! so a second, unrelated drop later is again back within a second, and a relay that drops
//! every session at once is still paced by the doubling.

use std::time::Duration;

/// The first window: a retry lands within it.
const FIRST: Duration = Duration::from_secs(1);
/// The widest window.
const CAP: Duration = Duration::from_secs(5);
/// Never retry sooner than this, whatever the dice say: no hot loop against a dead relay.
const FLOOR: Duration = Duration::from_millis(50);
/// A session that stayed up this long was a success: the next failure starts again from
/// [`FIRST`].
pub(super) const STABLE: Duration = Duration::from_secs(10);

#[derive(Debug, Default, Clone)]
pub(super) struct Backoff {
    failures: u32,
}

impl Backoff {
    /// The wait before the next attempt; `dice` is uniform in `[0, 1)`.
    pub(super) fn next_delay(&mut self, dice: f64) -> Duration {
        let window = FIRST.saturating_mul(1u32 << self.failures.min(16)).min(CAP);
        self.failures = self.failures.saturating_add(1);
        // `clamp` passes NaN through, and mul_f64 panics on it.
        let dice = if dice.is_nan() {
            0.0
        } else {
            dice.clamp(0.0, 1.0)
        };
        window.mul_f64(dice).max(FLOOR)
    }

    /// After a session that stayed up [`STABLE`] or longer.
    pub(super) fn reset(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_retry_is_within_a_second_and_later_ones_within_the_cap() {
        let mut backoff = Backoff::default();
        assert!(backoff.next_delay(0.999) < Duration::from_secs(1));
        assert!(backoff.next_delay(0.999) < Duration::from_secs(2));
        for _ in 0..40 {
            assert!(backoff.next_delay(0.999) <= CAP);
        }
        assert!(
            backoff.next_delay(0.999) > Duration::from_secs(4),
            "grew to the cap"
        );
        backoff.reset();
        assert!(backoff.next_delay(0.999) < Duration::from_secs(1), "reset");
    }

    #[test]
    fn jitter_spreads_over_the_window_but_never_below_the_floor() {
        let mut low = Backoff::default();
        assert_eq!(low.next_delay(0.0), FLOOR);
        let mut mid = Backoff::default();
        assert_eq!(mid.next_delay(0.5), Duration::from_millis(500));
        let mut odd = Backoff::default();
        assert_eq!(odd.next_delay(f64::NAN), FLOOR, "NaN dice clamp, no panic");
    }
}
