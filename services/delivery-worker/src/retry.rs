//! The retry schedule (`MAILFLEET_RETRY_SCHEDULE`, e.g. `1m,5m,15m,1h`, the
//! last step repeating) and the delivery lifetime.

use std::time::Duration;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    steps: Vec<Duration>,
    pub lifetime: Duration,
}

/// One step of the schedule: a duration as every setting writes it, and
/// more than zero (a zero step would retry in a tight loop).
fn parse_step(raw: &str) -> Result<Duration, String> {
    let step = mailfleet_runtime::config::parse_duration(raw)
        .map_err(|e| format!("{e} in the retry schedule"))?;
    if step.is_zero() {
        return Err(format!("retry delays must be positive, got {raw:?}"));
    }
    Ok(step)
}

impl Schedule {
    pub fn parse(raw: &str, lifetime: Duration) -> Result<Self, String> {
        let steps = raw
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(parse_step)
            .collect::<Result<Vec<_>, _>>()?;
        if steps.is_empty() {
            return Err("MAILFLEET_RETRY_SCHEDULE is empty".into());
        }
        Ok(Self { steps, lifetime })
    }

    /// The wait before attempt `attempt + 1`, given that `elapsed` of the
    /// lifetime is used: never past the end of the lifetime by more than a
    /// second, so the last attempt (and the DSN) comes on time.
    pub fn delay(&self, attempt: u32, elapsed: Duration) -> Duration {
        let index = (attempt as usize).min(self.steps.len() - 1);
        let step = self
            .steps
            .get(index)
            .copied()
            .unwrap_or(Duration::from_secs(60));
        let left = self.lifetime.saturating_sub(elapsed);
        step.min(left.max(Duration::from_secs(1)))
    }

    pub fn expired(&self, elapsed: Duration) -> bool {
        elapsed >= self.lifetime
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn steps_repeat_and_respect_the_lifetime() {
        let s = Schedule::parse("1s, 2s,1m", Duration::from_secs(600)).unwrap();
        let d = |a, e| s.delay(a, Duration::from_secs(e)).as_secs();
        assert_eq!(d(0, 0), 1);
        assert_eq!(d(1, 0), 2);
        assert_eq!(d(2, 0), 60);
        assert_eq!(d(9, 0), 60);
        assert_eq!(d(9, 590), 10);
        assert_eq!(d(9, 700), 1);
        assert!(s.expired(Duration::from_secs(600)));
        assert!(Schedule::parse("", Duration::from_secs(1)).is_err());
        assert!(Schedule::parse("5x", Duration::from_secs(1)).is_err());
        assert!(Schedule::parse("1m,0s", Duration::from_secs(1)).is_err());
        assert_eq!(
            Schedule::parse("500ms,1h", Duration::from_secs(1))
                .unwrap()
                .steps,
            [Duration::from_millis(500), Duration::from_secs(3600)]
        );
    }
}
