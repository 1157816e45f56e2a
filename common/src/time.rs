//! Timestamps on the wire: RFC 3339 strings and epoch numbers.
//!
//! An epoch number carries no unit, so clicklake infers it from the
//! magnitude: the four units' plausible ranges for the years 2000–2100 do not
//! overlap, so a number inside one of them is unambiguous and anything else is
//! refused with a reason.

use chrono::{DateTime, NaiveDate, Utc};

/// 2000-01-01T00:00:00Z in microseconds: the earliest event time accepted.
pub const MIN_EVENT_MICROS: i64 = 946_684_800_000_000;
/// 2100-01-01T00:00:00Z in microseconds: the upper end of the epoch-number ranges.
const MAX_EPOCH_MICROS: i64 = 4_102_444_800_000_000;

/// Parse an RFC 3339 timestamp into microseconds since the epoch (UTC).
pub fn parse_rfc3339_micros(s: &str) -> Result<i64, String> {
    let t = s.trim();
    DateTime::parse_from_rfc3339(t)
        .map(|dt| dt.with_timezone(&Utc).timestamp_micros())
        .map_err(|e| format!("{t:?} is not an RFC 3339 timestamp ({e})"))
}

/// Interpret an integer epoch number in whichever unit makes it a time
/// between 2000 and 2100, exactly (sub-microsecond parts are cut off, as in
/// [`parse_rfc3339_micros`], so one instant in two forms is one value).
pub fn epoch_integer_to_micros(n: i64) -> Result<i64, String> {
    const UNITS: [(i64, i64); 4] = [
        (1, 1_000_000),
        (1_000, 1_000),
        (1_000_000, 1),
        (1_000_000_000, 0),
    ];
    for (per_second, to_micros) in UNITS {
        let lo = (MIN_EVENT_MICROS / 1_000_000).saturating_mul(per_second);
        let hi = (MAX_EPOCH_MICROS / 1_000_000).saturating_mul(per_second);
        if n >= lo && n < hi {
            return Ok(if to_micros == 0 {
                n.div_euclid(1_000)
            } else {
                n * to_micros
            });
        }
    }
    Err(format!(
        "epoch number {n} is not a time between 2000 and 2100 in seconds, milliseconds, microseconds or nanoseconds"
    ))
}

/// Interpret a fractional epoch number in whichever unit makes it a time
/// between 2000 and 2100 (cut off to the microsecond).
pub fn epoch_number_to_micros(n: f64) -> Result<i64, String> {
    if !n.is_finite() {
        return Err(format!("{n} is not a finite number"));
    }
    const UNITS: [(&str, f64); 4] = [
        ("seconds", 1e6),
        ("milliseconds", 1e3),
        ("microseconds", 1.0),
        ("nanoseconds", 1e-3),
    ];
    for (_, to_micros) in UNITS {
        let micros = n * to_micros;
        if micros >= MIN_EVENT_MICROS as f64 && micros < MAX_EPOCH_MICROS as f64 {
            return Ok(micros.floor() as i64);
        }
    }
    Err(format!(
        "epoch number {n} is not a time between 2000 and 2100 in seconds, milliseconds, microseconds or nanoseconds"
    ))
}

/// Parse a time given either as RFC 3339 or as a bare `YYYY-MM-DD` date (midnight UTC).
pub fn parse_time_arg(s: &str) -> Result<i64, String> {
    let t = s.trim();
    let date_shaped =
        t.len() == 10 && t.as_bytes().get(4) == Some(&b'-') && t.as_bytes().get(7) == Some(&b'-');
    if date_shaped && NaiveDate::parse_from_str(t, "%Y-%m-%d").is_err() {
        return Err(format!("{t:?} is not a valid date"));
    }
    if let Ok(d) = NaiveDate::parse_from_str(t, "%Y-%m-%d") {
        let dt = d.and_hms_opt(0, 0, 0).map(|n| n.and_utc());
        return dt
            .map(|dt| dt.timestamp_micros())
            .ok_or_else(|| format!("{t:?} is not a valid date"));
    }
    parse_rfc3339_micros(t).map_err(|e| format!("{e}; a YYYY-MM-DD date works too"))
}

/// Format microseconds since the epoch as RFC 3339 (UTC, `Z`).
pub fn micros_to_rfc3339(micros: i64) -> String {
    DateTime::<Utc>::from_timestamp_micros(micros)
        .map(|dt| dt.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
        .unwrap_or_else(|| format!("{micros}µs"))
}

/// Days since 1970-01-01 of a time in microseconds (the Date32 value of its UTC date).
pub fn micros_to_days(micros: i64) -> i32 {
    micros.div_euclid(86_400_000_000) as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2017-11-07T09:30:38Z, computed with `date -u -d 2017-11-07T09:30:38Z +%s`.
    const T: i64 = 1_510_047_038;

    #[test]
    fn rfc3339_with_offsets() {
        assert_eq!(
            parse_rfc3339_micros("2017-11-07T09:30:38Z"),
            Ok(T * 1_000_000)
        );
        assert_eq!(
            parse_rfc3339_micros("2017-11-07T10:30:38+01:00"),
            Ok(T * 1_000_000)
        );
        assert_eq!(
            parse_rfc3339_micros("2017-11-07T09:30:38.5Z"),
            Ok(T * 1_000_000 + 500_000)
        );
        assert!(parse_rfc3339_micros("2017-11-07 09:30").is_err());
    }

    #[test]
    fn epoch_units_are_inferred() {
        let us = T * 1_000_000;
        assert_eq!(epoch_number_to_micros(T as f64), Ok(us));
        assert_eq!(epoch_number_to_micros((T * 1000) as f64), Ok(us));
        assert_eq!(epoch_number_to_micros(us as f64), Ok(us));
        assert_eq!(epoch_number_to_micros(us as f64 * 1000.0), Ok(us));
        let err = epoch_number_to_micros(12345.0).expect_err("too small");
        assert!(err.contains("between 2000 and 2100"), "{err}");
    }

    #[test]
    fn one_instant_in_every_form_is_one_value() {
        let us = 1_510_048_800_000_000;
        assert_eq!(parse_rfc3339_micros("2017-11-07T10:00:00.0000009Z"), Ok(us));
        assert_eq!(epoch_integer_to_micros(1_510_048_800_000_000_900), Ok(us));
        assert_eq!(epoch_integer_to_micros(1_510_048_800_000_000_400), Ok(us));
        assert_eq!(epoch_integer_to_micros(1_510_048_800_000_000), Ok(us));
        assert_eq!(epoch_integer_to_micros(1_510_048_800_000), Ok(us));
        assert_eq!(epoch_integer_to_micros(1_510_048_800), Ok(us));
        assert_eq!(epoch_number_to_micros(1_510_048_800.5), Ok(us + 500_000));
        assert!(epoch_integer_to_micros(12_345).is_err());
    }

    #[test]
    fn dates_and_days() {
        assert_eq!(parse_time_arg("2017-11-07"), Ok(1_510_012_800_000_000));
        assert_eq!(
            parse_time_arg("2017-02-30"),
            Err("\"2017-02-30\" is not a valid date".into())
        );
        // 2017-11-07 is day 17477 since the epoch (1510012800 / 86400).
        assert_eq!(micros_to_days(T * 1_000_000), 17_477);
        assert_eq!(micros_to_rfc3339(T * 1_000_000), "2017-11-07T09:30:38Z");
    }
}
