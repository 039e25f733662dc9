//! The JSON documents crossing the C ABI: reading an argument (through the crate's one path-aware
//! mapping, [`crate::config::from_json`]) and writing an answer.

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::boundary::{FfiError, FfiResult};
use super::status::jim_status;
use crate::config::{ConfigErrors, JsonError, from_json};

/// Parses a JSON argument in one pass: text that is not JSON is `JIM_STATUS_INVALID_JSON`, a member
/// of the wrong shape `JIM_STATUS_INVALID_REQUEST` naming its path (the top level is named by
/// `parameter`).
pub(crate) fn parse_json<T: DeserializeOwned>(json: &str, parameter: &str) -> FfiResult<T> {
    from_json(json, parameter).map_err(|e| match e {
        JsonError::Syntax(message) => FfiError::new(
            jim_status::InvalidJson,
            format!("{parameter} is not valid JSON: {message}"),
        ),
        JsonError::Fields(errors) => invalid_request(errors),
    })
}

/// Encodes a result document for the host; `what` names it in the (never expected) failure.
pub(crate) fn encode_json(value: &impl Serialize, what: &str) -> FfiResult<String> {
    serde_json::to_string(value)
        .map_err(|e| FfiError::new(jim_status::Failed, format!("cannot encode the {what}: {e}")))
}

/// Invalid fields of a request, each named by its path.
pub(crate) fn invalid_request(e: ConfigErrors) -> FfiError {
    FfiError::new(jim_status::InvalidRequest, e.to_string())
}
