//! Durations as etcd's flags spell them (Go's `time.ParseDuration`): a sequence of decimal
//! numbers with units, such as `10m0s`, `1h30m`, `1.5s` or `100ms`; units `ns`, `us`
//! (`µs`), `ms`, `s`, `m`, `h`. A bare `0` is zero.

use std::fmt;
use std::time::Duration;

/// A flag value that is not a Go duration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DurationError {
    pub value: String,
}

impl fmt::Display for DurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid duration {:?}: a number with a unit (ns, us, ms, s, m, h) such as 10m0s, \
             1h30m or 100ms",
            self.value
        )
    }
}

impl std::error::Error for DurationError {}

/// Parses a Go duration (negative durations are refused: no flag of ours wants one).
pub fn parse(value: &str) -> Result<Duration, DurationError> {
    let error = || DurationError {
        value: value.to_owned(),
    };
    let s = value.trim();
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err(error());
    }
    let mut rest = s;
    let mut total = 0f64;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(error)?;
        let number: f64 = rest[..number_len].parse().map_err(|_| error())?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds_per_unit = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(error()),
        };
        rest = &rest[unit_len..];
        total += number * seconds_per_unit;
    }
    Duration::try_from_secs_f64(total).map_err(|_| error())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_forms() {
        let ms = Duration::from_millis;
        assert_eq!(parse("10m0s"), Ok(ms(600_000)));
        assert_eq!(parse("1h30m"), Ok(ms(5_400_000)));
        assert_eq!(parse("100ms"), Ok(ms(100)));
        assert_eq!(parse("1.5s"), Ok(ms(1500)));
        assert_eq!(parse("250us"), Ok(Duration::from_micros(250)));
        assert_eq!(parse("0"), Ok(Duration::ZERO));
    }

    #[test]
    fn refusals_name_the_value() {
        for bad in ["", "10", "5x", "m", "-1s", "1..2s", "1e999h"] {
            let e = parse(bad).unwrap_err();
            assert!(e.to_string().contains(&format!("{bad:?}")), "{bad}");
        }
    }
}
