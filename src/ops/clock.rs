//! Timestamps written into reports and generated files (spec README decision 1: RFC 3339, UTC, microseconds).

use chrono::{DateTime, Utc};

/// `2026-03-02T09:15:27.418220+00:00`.
pub fn iso_timestamp(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%S%.6f+00:00").to_string()
}

/// The current time as [`iso_timestamp`].
pub fn now_iso() -> String {
    iso_timestamp(Utc::now())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn formats_with_micros_and_utc_offset() {
        let at =
            Utc.with_ymd_and_hms(2026, 3, 2, 9, 15, 27).unwrap() + chrono::Duration::microseconds(418_220);
        assert_eq!(iso_timestamp(at), "2026-03-02T09:15:27.418220+00:00");
        let whole = Utc.with_ymd_and_hms(2024, 1, 5, 0, 0, 0).unwrap();
        assert_eq!(iso_timestamp(whole), "2024-01-05T00:00:00.000000+00:00");
    }
}
