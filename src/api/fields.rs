//! Reading request bodies field by field, so that every refusal names the field it is about.

use serde_json::{Map, Value};

use super::{ApiError, Result};

pub type Object = Map<String, Value>;

/// The body as an object; a missing body is refused.
pub fn object(body: Option<&Value>) -> Result<&Object> {
    match body {
        Some(Value::Object(map)) => Ok(map),
        Some(_) => Err(ApiError::new(
            400,
            "invalid_json",
            "the request body must be a JSON object",
        )),
        None => Err(ApiError::new(
            400,
            "invalid_json",
            "a JSON request body is required",
        )),
    }
}

/// Refuses keys outside `allowed`, naming the first unknown one.
pub fn only_keys(obj: &Object, allowed: &[&str]) -> Result<()> {
    match obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(ApiError::field(
            k.as_str(),
            format!(
                "unknown field {k:?}; expected one of {}",
                allowed.join(", ")
            ),
        )),
        None => Ok(()),
    }
}

/// A string; `null` counts as absent.
pub fn string<'a>(obj: &'a Object, key: &str) -> Result<Option<&'a str>> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ApiError::field(key, format!("{key} must be a string"))),
    }
}

pub fn required_string<'a>(obj: &'a Object, key: &str) -> Result<&'a str> {
    string(obj, key)?.ok_or_else(|| ApiError::field(key, format!("{key} is required")))
}

pub fn boolean(obj: &Object, key: &str) -> Result<Option<bool>> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(ApiError::field(key, format!("{key} must be true or false"))),
    }
}

/// A whole number within `min..=max`.
pub fn integer(obj: &Object, key: &str, min: i64, max: i64) -> Result<Option<i64>> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match n.as_i64() {
            Some(v) if (min..=max).contains(&v) => Ok(Some(v)),
            _ => Err(ApiError::field(
                key,
                format!("{key} must be a whole number from {min} to {max}"),
            )),
        },
        Some(_) => Err(ApiError::field(
            key,
            format!("{key} must be a whole number from {min} to {max}"),
        )),
    }
}

/// An array of strings; `null` and absence are told apart by the caller through `Option`.
pub fn string_list(value: &Value, key: &str) -> Result<Vec<String>> {
    let items = value.as_array().ok_or_else(|| {
        ApiError::field(key, format!("{key} must be an array of strings or null"))
    })?;
    items
        .iter()
        .map(|v| {
            v.as_str().map(str::to_string).ok_or_else(|| {
                ApiError::field(key, format!("{key} must be an array of strings or null"))
            })
        })
        .collect()
}
