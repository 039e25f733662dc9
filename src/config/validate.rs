//! Collecting every invalid field of a configuration, each named by its path.

/// One invalid field: its path in the request (e.g. `directory.urls[1]`) and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The field's path, in the request's JSON names.
    pub path: String,
    /// What is wrong, in words a host can show to an operator. Never contains a secret.
    pub message: String,
}

/// Every invalid field of a configuration. Validation reports all of them at once, not the first.
#[derive(Debug, Clone, Default, PartialEq, Eq, thiserror::Error)]
#[error("{}", render(.0))]
pub struct ConfigErrors(pub Vec<FieldError>);

fn render(errors: &[FieldError]) -> String {
    let parts: Vec<String> = errors
        .iter()
        .map(|e| format!("{}: {}", e.path, e.message))
        .collect();
    format!("invalid configuration: {}", parts.join("; "))
}

impl ConfigErrors {
    /// Records an invalid field.
    pub fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError {
            path: path.into(),
            message: message.into(),
        });
    }

    /// Records an invalid field when `condition` holds.
    pub fn check(&mut self, condition: bool, path: impl Into<String>, message: impl Into<String>) {
        if condition {
            self.push(path, message);
        }
    }

    /// The paths of the invalid fields.
    pub fn paths(&self) -> Vec<&str> {
        self.0.iter().map(|e| e.path.as_str()).collect()
    }

    /// `Ok(())` when nothing was recorded, else `Err(self)`.
    pub fn into_result(self) -> Result<(), ConfigErrors> {
        if self.0.is_empty() { Ok(()) } else { Err(self) }
    }
}
