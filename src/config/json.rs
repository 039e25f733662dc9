//! Reading a JSON document into a configuration type, with errors that name the field's path. The one
//! place that turns serde's errors into [`ConfigErrors`]: the request types' `from_json` and the C
//! ABI's document arguments all go through [`from_json`], so a bad field reads the same everywhere.

use serde::de::{DeserializeOwned, IgnoredAny};

use super::ConfigErrors;

/// Why a JSON document could not be read as the type asked for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsonError {
    /// The text is not JSON at all (a syntax error or a truncated document); the message gives the
    /// line and column.
    #[error("not valid JSON: {0}")]
    Syntax(String),
    /// The text is JSON of the wrong shape (a missing, unknown or mistyped member), named by its path.
    #[error(transparent)]
    Fields(#[from] ConfigErrors),
}

impl JsonError {
    /// The error as field errors, for callers that do not tell syntax from shape: a syntax error is
    /// reported under the path `request`.
    pub fn into_config(self) -> ConfigErrors {
        match self {
            JsonError::Fields(errors) => errors,
            JsonError::Syntax(message) => {
                let mut errors = ConfigErrors::default();
                errors.push("request", format!("not valid JSON: {message}"));
                errors
            }
        }
    }
}

/// Parses `json` into `T` in one pass. A member of the wrong shape is reported by its path
/// (`directory.tls.mode`); an error at the top level is reported under `root` (the document's name,
/// e.g. `request`). A document that is not JSON at all is a [`JsonError::Syntax`], even when a member
/// before the syntax error was already of the wrong shape.
pub fn from_json<T: DeserializeOwned>(json: &str, root: &str) -> Result<T, JsonError> {
    let mut de = serde_json::Deserializer::from_str(json);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if !inner.is_data() {
            return JsonError::Syntax(inner.to_string());
        }
        // Only on failure: a shape error found first must not hide that the text is not JSON.
        if let Err(syntax) = serde_json::from_str::<IgnoredAny>(json) {
            return JsonError::Syntax(syntax.to_string());
        }
        let path = if path == "." || path == "?" {
            root.to_string()
        } else {
            path
        };
        let mut errors = ConfigErrors::default();
        errors.push(path, inner.to_string());
        JsonError::Fields(errors)
    })?;
    // Characters after the document are a syntax error too.
    de.end().map_err(|e| JsonError::Syntax(e.to_string()))?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Doc {
        outer: Inner,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        count: u32,
    }

    fn fields(e: JsonError) -> ConfigErrors {
        match e {
            JsonError::Fields(f) => f,
            JsonError::Syntax(m) => panic!("a syntax error: {m}"),
        }
    }

    #[test]
    fn a_shape_error_names_the_path() {
        let e = fields(from_json::<Doc>(r#"{"outer": {"count": "x"}}"#, "doc").unwrap_err());
        assert_eq!(e.paths(), ["outer.count"]);
        let e =
            fields(from_json::<Doc>(r#"{"outer": {"count": 1, "nope": 2}}"#, "doc").unwrap_err());
        assert_eq!(e.paths(), ["outer.nope"]);
        assert!(e.0[0].message.contains("unknown field"), "{e}");
    }

    #[test]
    fn a_top_level_error_is_named_by_the_root() {
        let e = fields(from_json::<Doc>("{}", "doc").unwrap_err());
        assert_eq!(e.paths(), ["doc"]);
        assert!(e.0[0].message.contains("missing field `outer`"), "{e}");
        let e = fields(from_json::<Doc>("[]", "doc").unwrap_err());
        assert_eq!(e.paths(), ["doc"]);
    }

    #[test]
    fn text_that_is_not_json_is_a_syntax_error() {
        for text in [
            "{",
            "nope",
            r#"{"outer": {"count": 1}} trailing"#,
            // A shape error before the syntax error: still reported as not JSON.
            r#"{"outer": {"count": "x"}, "#,
        ] {
            let e = from_json::<Doc>(text, "doc").unwrap_err();
            let JsonError::Syntax(m) = &e else {
                panic!("{text}: {e:?}");
            };
            assert!(m.contains("line 1"), "{text}: {m}");
        }
        from_json::<Doc>(r#" {"outer": {"count": 1}} "#, "doc").unwrap();
    }
}
