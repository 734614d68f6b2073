//! The doubling pause of every in-process retry: waiting for the database at start-up, the
//! result writer and LISTEN, the loop's claims, Altinn's outage gates, the token client's
//! cool-down and the probes of a configuration fault.
//!
//! Each place keeps its own first pause and cap (and says why); the doubling itself is
//! written once, here. The retry policy of a row (`worker::policy`) is different: it is
//! configured, jittered and persisted on the row as its next attempt time.

use std::time::Duration;

/// Doublings after which any cap has long been reached: `first` × 2^31 is over 68 years
/// even for a first pause of one millisecond, and the factor still fits a `u32`.
const MAX_DOUBLINGS: u32 = 31;

/// A pause that starts at `first` and doubles with every use, up to `cap`. A zero `first` or
/// `cap` means no pause at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Doubling {
    first: Duration,
    cap: Duration,
    /// Pauses handed out since the last reset.
    used: u32,
}

impl Doubling {
    pub const fn new(first: Duration, cap: Duration) -> Doubling {
        Doubling { first, cap, used: 0 }
    }

    /// The `n`-th pause (0 for the first): `first` doubled `n` times, at most `cap`.
    pub fn nth(&self, n: u32) -> Duration {
        self.first.saturating_mul(1u32 << n.min(MAX_DOUBLINGS)).min(self.cap)
    }

    /// The pause to take now; the next one is twice as long, up to the cap.
    pub fn next_pause(&mut self) -> Duration {
        let pause = self.nth(self.used);
        self.used = self.used.saturating_add(1);
        pause
    }

    /// After a success: the next pause is the first again.
    pub fn reset(&mut self) {
        self.used = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn pauses_double_from_the_first_up_to_the_cap() {
        let d = Doubling::new(ms(200), ms(4_000));
        let pauses: Vec<u64> = (0..8).map(|n| d.nth(n).as_millis() as u64).collect();
        assert_eq!(pauses, [200, 400, 800, 1_600, 3_200, 4_000, 4_000, 4_000]);
        assert_eq!(d.nth(u32::MAX), ms(4_000), "no overflow however long it lasts");
        let huge = Doubling::new(ms(1), Duration::MAX);
        assert_eq!(huge.nth(40), ms(1 << 31), "the factor stops growing, without a panic");
    }

    #[test]
    fn next_pause_walks_the_sequence_and_reset_starts_it_again() {
        let mut d = Doubling::new(ms(500), ms(15_000));
        let taken: Vec<Duration> = (0..3).map(|_| d.next_pause()).collect();
        assert_eq!(taken, [ms(500), ms(1_000), ms(2_000)]);
        d.reset();
        assert_eq!(d.next_pause(), ms(500));
        let mut long = Doubling::new(ms(1), ms(10));
        for _ in 0..100 {
            long.next_pause();
        }
        assert_eq!(long.next_pause(), ms(10));
    }

    #[test]
    fn zero_means_no_pause() {
        assert_eq!(Doubling::new(Duration::ZERO, ms(60_000)).nth(10), Duration::ZERO);
        assert_eq!(Doubling::new(ms(1_000), Duration::ZERO).nth(0), Duration::ZERO);
    }

    #[test]
    fn a_first_pause_above_the_cap_is_cut_to_it() {
        assert_eq!(Doubling::new(ms(5_000), ms(1_000)).nth(0), ms(1_000));
    }
}
