//! Window arithmetic on instants: windows are aligned to the UTC epoch.

use chrono::{DateTime, Utc};

/// The instant `epoch_s` seconds after the epoch (the epoch itself if out of range).
pub fn at_epoch(epoch_s: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(epoch_s, 0).unwrap_or_default()
}

/// Start of the window holding `t`.
pub fn align_down(t: DateTime<Utc>, window_s: u32) -> DateTime<Utc> {
    let w = i64::from(window_s.max(1));
    at_epoch(t.timestamp().div_euclid(w) * w)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn windows_align_to_the_epoch() {
        let t = Utc.with_ymd_and_hms(2026, 11, 26, 10, 7, 59).single().expect("instant");
        assert_eq!(align_down(t, 300), Utc.with_ymd_and_hms(2026, 11, 26, 10, 5, 0).single().expect("instant"));
        assert_eq!(align_down(t, 10), Utc.with_ymd_and_hms(2026, 11, 26, 10, 7, 50).single().expect("instant"));
        assert_eq!(
            at_epoch(align_down(t, 60).timestamp()),
            Utc.with_ymd_and_hms(2026, 11, 26, 10, 7, 0).single().expect("instant")
        );
    }
}
