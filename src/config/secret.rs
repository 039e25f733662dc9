//! A string that never shows itself in `Debug` or `Display` output.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A secret such as a bind or database password. `Debug` and `Display` print `***`; only
/// [`Secret::expose`] gives the value, so a secret cannot reach a log, an error or a panic message by
/// accident. Serialising (an explicit act of the host) writes the real value.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret value, for the one place that must send it (a bind, a connection).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// True for an empty secret.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Secret)
    }
}

// UniFFI carries a secret as its string, so a host can hand over the password it decrypted. The
// bindings wrap it at once in their own `Secret` class (uniffi.toml's custom types: Python's
// `jim_export._secret`, Kotlin's `org.jim.export.Secret`), which prints `***` like this type does.
#[cfg(feature = "uniffi")]
uniffi::custom_type!(Secret, String, {
    lower: |secret| secret.0,
    try_lift: |value| Ok(Secret(value)),
});

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self::new(value)
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value)
    }
}
