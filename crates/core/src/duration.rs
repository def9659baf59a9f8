//! Durations as written in ImagePolicy specs: Go-style `90s`, `15m`, `1h30m`, `250ms`.
//!
//! The CRD admits only strings that match `^([0-9]+(ms|s|m|h))+$` within each field's bounds;
//! this parser accepts exactly that grammar, so what admission accepted always parses.

use std::time::Duration;

/// Why a string is not a duration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{input:?} is not a duration like 90s, 15m or 1h30m: {why}")]
pub struct DurationError {
    input: String,
    why: &'static str,
}

/// Parses `1h30m`-style durations (units `h`, `m`, `s`, `ms`).
pub fn parse_duration(input: &str) -> Result<Duration, DurationError> {
    let error = |why| DurationError { input: input.to_string(), why };
    if input.is_empty() {
        return Err(error("it is empty"));
    }
    let mut total = Duration::ZERO;
    let mut rest = input;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(error("expected a number"));
        }
        let value: u64 = rest[..digits].parse().map_err(|_| error("number too large"))?;
        rest = &rest[digits..];
        let (unit, len) = if rest.starts_with("ms") {
            (Duration::from_millis(1), 2)
        } else if rest.starts_with('h') {
            (Duration::from_secs(3600), 1)
        } else if rest.starts_with('m') {
            (Duration::from_secs(60), 1)
        } else if rest.starts_with('s') {
            (Duration::from_secs(1), 1)
        } else {
            return Err(error("expected a unit: h, m, s or ms"));
        };
        rest = &rest[len..];
        let part = unit
            .checked_mul(u32::try_from(value).map_err(|_| error("number too large"))?)
            .ok_or_else(|| error("too long"))?;
        total = total.checked_add(part).ok_or_else(|| error("too long"))?;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_the_admitted_grammar() {
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("720h"), Ok(Duration::from_secs(720 * 3600)));
        assert_eq!(parse_duration("1m1s"), Ok(Duration::from_secs(61)));
    }

    #[test]
    fn rejects_everything_else() {
        for bad in ["", "15", "m", "1.5h", "-1m", "1d", "1h 30m", "often", "99999999999999999999h"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    proptest! {
        #[test]
        fn sums_its_parts(h in 0u64..1000, m in 0u64..1000, s in 0u64..1000) {
            let text = format!("{h}h{m}m{s}s");
            prop_assert_eq!(parse_duration(&text), Ok(Duration::from_secs(h * 3600 + m * 60 + s)));
        }

        #[test]
        fn never_panics(s in "[0-9hms]{0,24}") {
            let _ = parse_duration(&s);
        }
    }
}
