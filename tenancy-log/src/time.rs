//! RFC 3339 timestamps in UTC with microseconds (`2025-03-01T12:00:00.000000Z`), the shape
//! tracing-subscriber's default timer prints, written without a date-time dependency.

use std::time::{SystemTime, UNIX_EPOCH};

/// Appends the RFC 3339 form of `time` to `out`. Times before 1970 print as the epoch.
pub(crate) fn push_rfc3339(out: &mut String, time: SystemTime) {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    push_digits(out, year, 4);
    out.push('-');
    push_digits(out, month, 2);
    out.push('-');
    push_digits(out, day, 2);
    out.push('T');
    push_digits(out, rem / 3600, 2);
    out.push(':');
    push_digits(out, rem % 3600 / 60, 2);
    out.push(':');
    push_digits(out, rem % 60, 2);
    out.push('.');
    push_digits(out, u64::from(since.subsec_micros()), 6);
    out.push('Z');
}

/// Year, month and day of the `days`-th day after 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

fn push_digits(out: &mut String, value: u64, width: u32) {
    let mut divisor = 10u64.pow(width - 1);
    while divisor > 0 {
        out.push(char::from(b'0' + (value / divisor % 10) as u8));
        divisor /= 10;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(secs: u64, micros: u32) -> String {
        let mut out = String::new();
        push_rfc3339(
            &mut out,
            UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_micros(u64::from(micros)),
        );
        out
    }

    #[test]
    fn known_instants() {
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(at(951_782_400, 1), "2000-02-29T00:00:00.000001Z");
        assert_eq!(
            at(1_709_164_800 + 86_399, 999_999),
            "2024-02-29T23:59:59.999999Z"
        );
        assert_eq!(at(4_102_444_800, 0), "2100-01-01T00:00:00.000000Z");
        assert_eq!(at(1_735_689_599, 500_000), "2024-12-31T23:59:59.500000Z");
    }

    #[test]
    fn every_day_follows_the_previous_one() {
        // Walk 1970..2200 a day at a time: the date only ever moves forward by one day.
        let mut previous = civil_from_days(0);
        for days in 1..84_000 {
            let next = civil_from_days(days);
            assert!(next > previous, "{days}: {previous:?} -> {next:?}");
            assert!((1..=12).contains(&next.1) && (1..=31).contains(&next.2));
            previous = next;
        }
    }
}
