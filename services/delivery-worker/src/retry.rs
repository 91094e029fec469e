//! The retry schedule (`MAILFLEET_RETRY_SCHEDULE`, e.g. `1m,5m,15m,1h`, the
//! last step repeating) and the delivery lifetime.

use std::time::Duration;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    steps: Vec<Duration>,
    pub lifetime: Duration,
}

fn parse_duration(raw: &str) -> Result<Duration, String> {
    let raw = raw.trim();
    let split = raw
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(raw.len());
    let (num, unit) = raw.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("bad duration {raw:?} in the retry schedule"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "" | "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        "d" => n * 86400.0,
        _ => return Err(format!("unknown unit in {raw:?} in the retry schedule")),
    };
    if !(secs.is_finite() && secs > 0.0) {
        return Err(format!("retry delays must be positive, got {raw:?}"));
    }
    Ok(Duration::from_secs_f64(secs))
}

impl Schedule {
    pub fn parse(raw: &str, lifetime: Duration) -> Result<Self, String> {
        let steps = raw
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(parse_duration)
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
        assert_eq!(
            Schedule::parse("500ms,1h", Duration::from_secs(1))
                .unwrap()
                .steps,
            [Duration::from_millis(500), Duration::from_secs(3600)]
        );
    }
}
