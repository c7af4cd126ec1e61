//! Parsers for the daemons' flags (clap `value_parser`s), so that both check
//! ranges one way and say so in the same words: "must be at least 1", "must
//! be between 1 and 10000000", "must be at most 5m", "must be longer than
//! zero". Durations are humantime text ("1s", "10m", "90days").

use std::fmt::{self, Display};
use std::ops::{Bound, RangeBounds};
use std::str::FromStr;
use std::time::Duration;

/// Durations longer than zero, for [`duration`].
pub const POSITIVE: (Bound<Duration>, Bound<Duration>) = (Bound::Excluded(Duration::ZERO), Bound::Unbounded);

/// A duration flag's value: humantime text, shown in its largest whole unit
/// (so a default from a library constant reads as one in `--help`: `90days`,
/// `1h`, `100ms`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct HumanDuration(pub Duration);

impl From<Duration> for HumanDuration {
    fn from(d: Duration) -> Self {
        Self(d)
    }
}

impl From<HumanDuration> for Duration {
    fn from(d: HumanDuration) -> Self {
        d.0
    }
}

impl Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(u128, &str, &str); 7] = [
            (86_400_000_000_000, "day", "days"),
            (3_600_000_000_000, "h", "h"),
            (60_000_000_000, "m", "m"),
            (1_000_000_000, "s", "s"),
            (1_000_000, "ms", "ms"),
            (1_000, "us", "us"),
            (1, "ns", "ns"),
        ];
        let nanos = self.0.as_nanos();
        if nanos == 0 {
            return f.write_str("0s");
        }
        let (size, one, many) = UNITS.into_iter().find(|(size, ..)| nanos.is_multiple_of(*size)).unwrap_or(UNITS[6]);
        let n = nanos / size;
        write!(f, "{n}{}", if n == 1 { one } else { many })
    }
}

impl FromStr for HumanDuration {
    type Err = humantime::DurationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        humantime::parse_duration(s).map(Self)
    }
}

/// A parser of durations within `range` (e.g. [`POSITIVE`], `..=5m`).
pub fn duration(
    range: impl RangeBounds<Duration> + Clone + Send + Sync + 'static,
) -> impl Fn(&str) -> Result<HumanDuration, String> + Clone + Send + Sync + 'static {
    move |s| {
        let d: HumanDuration = s.parse().map_err(|e: humantime::DurationError| e.to_string())?;
        within(&range, d.0, |d| if d.is_zero() { "zero".to_owned() } else { HumanDuration(*d).to_string() })?;
        Ok(d)
    }
}

/// A parser of whole numbers within `range` (e.g. `1..`, `1..=65536`).
pub fn count<T>(
    range: impl RangeBounds<T> + Clone + Send + Sync + 'static,
) -> impl Fn(&str) -> Result<T, String> + Clone + Send + Sync + 'static
where
    T: FromStr + PartialOrd + Display + Clone + Send + Sync + 'static,
    T::Err: Display,
{
    move |s| {
        let n: T = s.parse().map_err(|e: T::Err| e.to_string())?;
        within(&range, n.clone(), T::to_string)?;
        Ok(n)
    }
}

/// `Ok` when `range` holds `value`, else the words for the range (the
/// shapes the flags use: `a..=b`, `a..`, `..=b`, and a duration longer than `a`).
fn within<T: PartialOrd>(range: &impl RangeBounds<T>, value: T, show: impl Fn(&T) -> String) -> Result<(), String> {
    if range.contains(&value) {
        return Ok(());
    }
    Err(match (range.start_bound(), range.end_bound()) {
        (Bound::Included(lo), Bound::Included(hi)) => format!("must be between {} and {}", show(lo), show(hi)),
        (Bound::Included(lo), Bound::Unbounded) => format!("must be at least {}", show(lo)),
        (Bound::Excluded(lo), Bound::Unbounded) => format!("must be longer than {}", show(lo)),
        (Bound::Unbounded, Bound::Included(hi)) => format!("must be at most {}", show(hi)),
        _ => "is out of range".to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_checked_in_one_wording() {
        let at_least_one = count::<usize>(1..);
        assert_eq!(at_least_one("1"), Ok(1));
        assert_eq!(at_least_one("0"), Err("must be at least 1".to_owned()));
        assert!(at_least_one("-5").is_err() && at_least_one("lots").is_err());
        let bounded = count::<u32>(1..=65_536);
        assert_eq!(bounded("65536"), Ok(65_536));
        assert_eq!(bounded("65537"), Err("must be between 1 and 65536".to_owned()));
    }

    #[test]
    fn durations_are_checked_in_one_wording() {
        let positive = duration(POSITIVE);
        assert_eq!(positive("1ns"), Ok(HumanDuration(Duration::from_nanos(1))));
        assert_eq!(positive("0s"), Err("must be longer than zero".to_owned()));
        assert!(positive("soon").is_err());
        let keepalive = duration(Duration::from_millis(100)..=Duration::from_secs(3600));
        assert_eq!(keepalive("1ns"), Err("must be between 100ms and 1h".to_owned()));
        assert_eq!(keepalive("2h"), Err("must be between 100ms and 1h".to_owned()));
        assert!(keepalive("500000000000years").is_err());
        let skew = duration(..=Duration::from_secs(300));
        assert_eq!(skew("5m"), Ok(HumanDuration(Duration::from_secs(300))));
        assert_eq!(skew("6m"), Err("must be at most 5m".to_owned()));
    }

    #[test]
    fn a_duration_shows_in_its_largest_whole_unit_and_parses_back() {
        for (d, shown) in [
            (Duration::from_secs(90 * 24 * 3600), "90days"),
            (Duration::from_secs(24 * 3600), "1day"),
            (Duration::from_secs(3600), "1h"),
            (Duration::from_secs(600), "10m"),
            (Duration::from_secs(90), "90s"),
            (Duration::from_millis(100), "100ms"),
            (Duration::from_micros(1500), "1500us"),
            (Duration::ZERO, "0s"),
        ] {
            assert_eq!(HumanDuration(d).to_string(), shown);
            assert_eq!(shown.parse::<HumanDuration>().unwrap(), HumanDuration(d));
        }
    }
}
