//! Timers a handler arms through its [`Context`](crate::Context): one-shot
//! ([`Context::timer_after`](crate::Context::timer_after)) or repeating
//! ([`Context::timer_every`](crate::Context::timer_every)). Both loop kinds wait
//! for the earliest deadline and call [`Handler::timer`](crate::Handler::timer)
//! with the [`Timer`] that fired: the role of libevent's `evtimer` in proc.c
//! daemons.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// A timer armed by a handler; it names the timer in
/// [`Handler::timer`](crate::Handler::timer) and
/// [`Context::cancel_timer`](crate::Context::cancel_timer).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timer(u64);

/// The armed timers of one process: deadline and, for a repeating one, period.
#[derive(Debug, Default)]
pub(crate) struct Timers {
    next: u64,
    armed: BTreeMap<Timer, (Instant, Option<Duration>)>,
}

impl Timers {
    /// Arms a timer firing `after` from now, then every `every` if given.
    pub(crate) fn arm(&mut self, after: Duration, every: Option<Duration>) -> Timer {
        self.next += 1;
        let t = Timer(self.next);
        self.armed.insert(t, (Instant::now() + after, every));
        t
    }

    /// Disarms `t`; false if it was not armed (a one-shot timer that fired).
    pub(crate) fn cancel(&mut self, t: Timer) -> bool {
        self.armed.remove(&t).is_some()
    }

    /// The earliest deadline.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.armed.values().map(|(d, _)| *d).min()
    }

    /// The timers due at `now`, earliest first; one-shot ones are disarmed,
    /// repeating ones re-armed one period later (from now if they fell behind, so
    /// a late loop does not fire a burst).
    pub(crate) fn take_due(&mut self, now: Instant) -> Vec<Timer> {
        let mut due: Vec<(Instant, Timer)> = self
            .armed
            .iter()
            .filter(|(_, (d, _))| *d <= now)
            .map(|(t, (d, _))| (*d, *t))
            .collect();
        due.sort();
        for &(d, t) in &due {
            match self.armed.get(&t).and_then(|(_, every)| *every) {
                Some(p) => {
                    let next = if d + p > now { d + p } else { now + p };
                    self.armed.insert(t, (next, Some(p)));
                }
                None => {
                    self.armed.remove(&t);
                }
            }
        }
        due.into_iter().map(|(_, t)| t).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_shot_fires_once_repeating_rearms() {
        let mut ts = Timers::default();
        let once = ts.arm(Duration::from_millis(5), None);
        let every = ts.arm(Duration::from_millis(10), Some(Duration::from_millis(10)));
        let t0 = Instant::now();
        assert!(ts.take_due(t0).is_empty());
        assert_eq!(ts.take_due(t0 + Duration::from_millis(20)), [once, every]);
        assert_eq!(ts.take_due(t0 + Duration::from_millis(20)), []);
        assert_eq!(ts.take_due(t0 + Duration::from_millis(45)), [every]);
        assert!(ts.cancel(every));
        assert!(!ts.cancel(once));
        assert_eq!(ts.next_deadline(), None);
    }
}
