//! Tests of the directory's pure parts.

use super::*;
use crate::config::Concurrency;

fn sizing(tuning: DirectoryTuning, dialect: Dialect) -> Sizing {
    Sizing::new(&tuning, &DirectoryProfile::for_dialect(dialect))
}

#[test]
fn adaptive_by_default_from_the_dialect_default_with_room_to_grow() {
    let s = sizing(DirectoryTuning::default(), Dialect::OpenLdap);
    let bounds = s.adaptive.expect("adaptive by default");
    assert_eq!((bounds.min, bounds.initial, bounds.max), (1, 32, 128));
    assert_eq!((s.connections, s.max_in_flight), (4, 128));
    assert_eq!(s.per_connection, 32, "deep enough to reach the ceiling");
    let samba = sizing(DirectoryTuning::default(), Dialect::SambaAd);
    let b = samba.adaptive.expect("adaptive");
    assert_eq!((b.initial, b.max, samba.per_connection), (4, 16, 16));
}

#[test]
fn explicit_values_bound_the_adaptive_limit() {
    // A per-connection depth is a server limit: the ceiling stays within it.
    let s = sizing(
        DirectoryTuning {
            connections: Some(2),
            in_flight_per_connection: Some(8),
            ..DirectoryTuning::default()
        },
        Dialect::OpenLdap,
    );
    let b = s.adaptive.expect("adaptive");
    assert_eq!((b.initial, b.max, s.per_connection), (16, 16, 8));
    // A total cap alone: connections deepen to reach it; the start is clamped under it.
    let s = sizing(
        DirectoryTuning {
            max_in_flight: Some(64),
            min_in_flight: Some(4),
            ..DirectoryTuning::default()
        },
        Dialect::ActiveDirectory,
    );
    let b = s.adaptive.expect("adaptive");
    assert_eq!((b.min, b.initial, b.max, s.per_connection), (4, 16, 64, 16));
    let s = sizing(
        DirectoryTuning {
            max_in_flight: Some(2),
            ..DirectoryTuning::default()
        },
        Dialect::OpenLdap,
    );
    let b = s.adaptive.expect("adaptive");
    assert_eq!((b.initial, b.max), (2, 2));
}

#[test]
fn fixed_keeps_the_limit_as_before() {
    let fixed = |max_in_flight| DirectoryTuning {
        concurrency: Concurrency::Fixed,
        max_in_flight,
        ..DirectoryTuning::default()
    };
    let s = sizing(fixed(None), Dialect::OpenLdap);
    assert_eq!(
        (s.adaptive, s.max_in_flight, s.per_connection),
        (None, 32, 8)
    );
    assert_eq!(sizing(fixed(Some(10)), Dialect::OpenLdap).max_in_flight, 10);
    assert_eq!(
        sizing(fixed(Some(1000)), Dialect::OpenLdap).max_in_flight,
        32,
        "clamped to connections × per connection"
    );
}
