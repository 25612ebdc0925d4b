//! Slow mode: each occupant may send one groupchat message every `seconds` seconds; a message
//! sent sooner is rejected with the time left to wait. Moderators are exempt.
//!
//! The time of each occupant's last accepted message is kept in the store under
//! `last/<occupant id>` (so a nickname change does not reset it; milliseconds since the epoch, as
//! decimal text), and forgotten when they leave.
//!
//! Settings:
//! - `seconds` (integer, default `10`): the interval; a negative value counts as 10, and 0
//!   switches the limit off.

#[cfg(target_arch = "wasm32")]
mod bindings;

pub const DEFAULT_SECONDS: u64 = 10;

/// The `seconds` setting.
pub fn parse_seconds(values: &[String]) -> u64 {
    values
        .first()
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(DEFAULT_SECONDS)
}

pub fn last_message_key(occupant_id: &str) -> String {
    format!("last/{occupant_id}")
}

/// A stored timestamp: decimal text, or a u64 in little-endian bytes.
pub fn decode_timestamp(bytes: &[u8]) -> Option<u64> {
    let decimal = std::str::from_utf8(bytes)
        .ok()
        .and_then(|text| text.parse().ok());
    decimal.or_else(|| bytes.try_into().ok().map(u64::from_le_bytes))
}

/// How many whole seconds (rounded up) the sender must still wait, or None if they may speak.
pub fn seconds_to_wait(last_ms: Option<u64>, now_ms: u64, seconds: u64) -> Option<u64> {
    // A last message "in the future" (the clock went back) does not hold anyone up.
    let elapsed_ms = now_ms.checked_sub(last_ms?)?;
    let interval_ms = seconds.saturating_mul(1000);
    (elapsed_ms < interval_ms).then(|| (interval_ms - elapsed_ms).div_ceil(1000))
}

pub fn rejection(seconds_left: u64) -> String {
    let plural = if seconds_left == 1 { "" } else { "s" };
    format!("Slow mode: wait {seconds_left} more second{plural}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_default_to_ten() {
        assert_eq!(parse_seconds(&[" 30 ".into()]), 30);
        assert_eq!(parse_seconds(&["soon".into()]), 10);
        assert_eq!(parse_seconds(&["-1".into()]), 10);
        assert_eq!(parse_seconds(&[]), 10);
    }

    #[test]
    fn timestamps_decode_from_text_or_bytes() {
        assert_eq!(decode_timestamp(b"1700000000000"), Some(1_700_000_000_000));
        assert_eq!(
            decode_timestamp(&1_700_000_000_000u64.to_le_bytes()),
            Some(1_700_000_000_000)
        );
        assert_eq!(decode_timestamp(b"garbage"), None);
    }

    #[test]
    fn first_message_passes() {
        assert_eq!(seconds_to_wait(None, 5_000, 10), None);
    }

    #[test]
    fn a_message_too_soon_waits_rounded_up() {
        assert_eq!(seconds_to_wait(Some(1_000), 1_000, 10), Some(10));
        assert_eq!(seconds_to_wait(Some(1_000), 2_500, 10), Some(9));
        assert_eq!(seconds_to_wait(Some(1_000), 10_999, 10), Some(1));
    }

    #[test]
    fn a_message_after_the_interval_passes() {
        assert_eq!(seconds_to_wait(Some(1_000), 11_000, 10), None);
        assert_eq!(seconds_to_wait(Some(1_000), 1_000, 0), None);
        assert_eq!(seconds_to_wait(Some(9_000), 1_000, 10), None);
    }

    #[test]
    fn rejection_counts_seconds() {
        assert_eq!(rejection(1), "Slow mode: wait 1 more second");
        assert_eq!(rejection(7), "Slow mode: wait 7 more seconds");
    }
}
