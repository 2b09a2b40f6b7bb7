//! The generic cell rate algorithm (docs/security.md#key-rate-limits): each limited thing keeps one number, its
//! theoretical arrival time (TAT); a request is allowed when spending one more emission
//! interval keeps the TAT within one period of now. Several rates (per minute and per day,
//! say) are decided together: a request is allowed only if every rate allows it, and only
//! then do they all spend.
//!
//! Written here rather than taken from `governor` because the same arithmetic must run in
//! process and inside Redis (`crates/server/src/rate_limit/gcra.lua` mirrors it), so that
//! both backends decide alike, and because the `RateLimit-*` headers need the remaining
//! count and reset time of the most constrained rate.

/// `count` requests per `period_us` microseconds, as a burst or spread out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    pub count: u32,
    pub period_us: i64,
}

impl Rate {
    fn interval_us(self) -> i64 {
        self.period_us / i64::from(self.count.max(1))
    }
}

/// The answer, told as the most constrained of the rates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub limit: u32,
    pub remaining: u32,
    /// Until the rate is whole again.
    pub reset_us: i64,
    /// When refused: until one more request would be allowed.
    pub retry_after_us: i64,
}

/// Decides a request at `now_us` against `rates`, whose stored TATs are `tats` (`None`: never
/// used); returns the decision and the TATs to store (unchanged when refused).
pub fn decide(now_us: i64, rates: &[Rate], tats: &[Option<i64>]) -> (Decision, Vec<i64>) {
    let mut new_tats = Vec::with_capacity(rates.len());
    let mut refused: Option<Decision> = None;
    let mut tightest: Option<Decision> = None;
    for (rate, stored) in rates.iter().zip(tats) {
        let tat = stored.unwrap_or(now_us).max(now_us);
        let interval = rate.interval_us();
        let new_tat = tat + interval;
        let allow_at = new_tat - rate.period_us;
        if allow_at > now_us {
            let retry = allow_at - now_us;
            if refused.is_none_or(|r| retry > r.retry_after_us) {
                refused = Some(Decision {
                    allowed: false,
                    limit: rate.count,
                    remaining: 0,
                    reset_us: tat - now_us,
                    retry_after_us: retry,
                });
            }
            new_tats.push(tat);
            continue;
        }
        let remaining =
            u32::try_from((rate.period_us - (new_tat - now_us)) / interval.max(1)).unwrap_or(0);
        let decision = Decision {
            allowed: true,
            limit: rate.count,
            remaining,
            reset_us: new_tat - now_us,
            retry_after_us: 0,
        };
        if tightest.is_none_or(|t| remaining < t.remaining) {
            tightest = Some(decision);
        }
        new_tats.push(new_tat);
    }
    match refused {
        Some(decision) => {
            let unchanged = rates
                .iter()
                .zip(tats)
                .map(|(_, stored)| stored.unwrap_or(now_us))
                .collect();
            (decision, unchanged)
        }
        None => (
            tightest.unwrap_or(Decision {
                allowed: true,
                limit: 0,
                remaining: 0,
                reset_us: 0,
                retry_after_us: 0,
            }),
            new_tats,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: i64 = 60_000_000;

    fn run(rates: &[Rate], tats: &mut Vec<Option<i64>>, now: i64) -> Decision {
        let (decision, new) = decide(now, rates, tats);
        *tats = new.into_iter().map(Some).collect();
        decision
    }

    #[test]
    fn a_burst_of_the_count_then_one_per_interval() {
        let rates = [Rate {
            count: 3,
            period_us: MINUTE,
        }];
        let mut tats = vec![None];
        let decisions: Vec<Decision> = (0..4).map(|_| run(&rates, &mut tats, 0)).collect();
        assert_eq!(
            decisions
                .iter()
                .map(|d| (d.allowed, d.remaining))
                .collect::<Vec<_>>(),
            vec![(true, 2), (true, 1), (true, 0), (false, 0)]
        );
        assert_eq!(decisions[3].retry_after_us, MINUTE / 3);
        // One interval later, one more.
        assert!(run(&rates, &mut tats, MINUTE / 3).allowed);
        assert!(!run(&rates, &mut tats, MINUTE / 3).allowed);
    }

    #[test]
    fn every_rate_must_allow_and_a_refusal_spends_nothing() {
        let per_minute = Rate {
            count: 2,
            period_us: MINUTE,
        };
        let per_day = Rate {
            count: 3,
            period_us: 24 * 60 * MINUTE,
        };
        let rates = [per_minute, per_day];
        let mut tats = vec![None, None];
        assert!(run(&rates, &mut tats, 0).allowed);
        assert!(run(&rates, &mut tats, 0).allowed);
        let refused = run(&rates, &mut tats, 0);
        assert!(!refused.allowed);
        assert_eq!(refused.limit, 2, "the minute refused");
        // A minute on, the day has one request left: the headers speak of the day.
        let allowed = run(&rates, &mut tats, MINUTE);
        assert!(allowed.allowed);
        assert_eq!((allowed.limit, allowed.remaining), (3, 0));
        let refused = run(&rates, &mut tats, 2 * MINUTE);
        assert!(!refused.allowed);
        assert_eq!(refused.limit, 3, "now the day refuses");
    }
}
