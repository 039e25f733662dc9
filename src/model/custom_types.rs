//! How the foreign types the core records carry cross UniFFI: ids as their hyphenated strings and
//! timestamps as the binding's own time type (Python `datetime`, Kotlin `Instant`), so the core
//! types can be the UniFFI records themselves. Only built with the `uniffi` feature.

use std::time::SystemTime;

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// A point in time as the core carries it (UTC); UniFFI sees it as a timestamp.
pub type Timestamp = DateTime<Utc>;

uniffi::custom_type!(Uuid, String, {
    remote,
    lower: |id| id.hyphenated().to_string(),
    try_lift: |text| Ok(Uuid::parse_str(&text)?),
});

uniffi::custom_type!(Timestamp, SystemTime, {
    remote,
    lower: |time| SystemTime::from(time),
    try_lift: |time| Ok(Timestamp::from(time)),
});

#[cfg(test)]
mod tests {
    use super::*;
    use uniffi::{Lift, Lower};

    type Tag = crate::UniFfiTag;

    #[test]
    fn ids_and_timestamps_cross_as_strings_and_system_times() {
        let id = Uuid::parse_str("6f1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d").unwrap();
        let lowered = <Uuid as Lower<Tag>>::lower(id);
        assert_eq!(<Uuid as Lift<Tag>>::try_lift(lowered).unwrap(), id);
        let now = Timestamp::from(SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(1_234));
        let lowered = <Timestamp as Lower<Tag>>::lower(now);
        assert_eq!(<Timestamp as Lift<Tag>>::try_lift(lowered).unwrap(), now);
        let bad = <String as Lower<Tag>>::lower("not-a-uuid".into());
        assert!(<Uuid as Lift<Tag>>::try_lift(bad).is_err());
    }
}
