//! What handlers take and give: the request as they see it (`Req`), the response before it is
//! written (`Reply`), and the error shape every refusal uses (`ApiError`, SPEC 5).

use serde_json::{Value, json};

/// A refusal, rendered as `{"error": {"code", "message", "field"}}`.
#[derive(Debug)]
pub struct ApiError {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
    /// Seconds for a `Retry-After` header.
    pub retry_after: Option<u64>,
    /// The methods a route takes, for the `Allow` header of a 405.
    pub allow: Option<&'static str>,
}

impl ApiError {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            field: None,
            retry_after: None,
            allow: None,
        }
    }

    pub fn field(field: impl Into<String>, message: impl Into<String>) -> ApiError {
        ApiError {
            status: 400,
            code: "invalid_field",
            message: message.into(),
            field: Some(field.into()),
            retry_after: None,
            allow: None,
        }
    }

    pub fn not_found(what: &str) -> ApiError {
        ApiError::new(404, "not_found", format!("no such {what}"))
    }

    pub fn conflict(message: impl Into<String>) -> ApiError {
        ApiError::new(409, "conflict", message)
    }

    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError::new(503, "unavailable", message)
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> ApiError {
        if let crate::store::StoreError::Full = e {
            return ApiError::new(507, "storage_full", e.to_string());
        }
        log::error!("store error while answering a request: {e}");
        ApiError::unavailable("the store is not answering; try again")
    }
}

impl From<crate::intake::PublishError> for ApiError {
    fn from(e: crate::intake::PublishError) -> ApiError {
        match e {
            crate::intake::PublishError::Full => ApiError::new(507, "storage_full", e.to_string()),
            other => ApiError::unavailable(other.to_string()),
        }
    }
}

/// A response before it is written.
pub struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
    pub content_type: &'static str,
    pub headers: Vec<(&'static str, String)>,
}

impl Reply {
    pub fn json(status: u16, value: &Value) -> Reply {
        Reply {
            status,
            body: value.to_string().into_bytes(),
            content_type: "application/json",
            headers: Vec::new(),
        }
    }

    pub fn empty(status: u16) -> Reply {
        Reply {
            status,
            body: Vec::new(),
            content_type: "application/json",
            headers: Vec::new(),
        }
    }

    pub(super) fn error(e: &ApiError) -> Reply {
        let mut error = json!({"code": e.code, "message": e.message});
        if let Some(field) = &e.field {
            error["field"] = Value::from(field.as_str());
        }
        let mut reply = Reply::json(e.status, &json!({ "error": error }));
        if let Some(secs) = e.retry_after {
            reply.headers.push(("Retry-After", secs.to_string()));
        }
        if let Some(methods) = e.allow {
            reply.headers.push(("Allow", methods.to_string()));
        }
        reply
    }
}

pub type Result<T> = std::result::Result<T, ApiError>;

/// One request as the handlers see it: method, path segments, query and a parsed body.
pub struct Req {
    pub method: String,
    pub segments: Vec<String>,
    pub query: Vec<(String, String)>,
    pub headers: Vec<(String, String)>,
    pub body: Option<Value>,
}

impl Req {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn query(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body of an action route, `{}` when none was sent.
    pub fn body_object(&self) -> Result<&serde_json::Map<String, Value>> {
        static EMPTY: std::sync::OnceLock<serde_json::Map<String, Value>> =
            std::sync::OnceLock::new();
        match &self.body {
            None => Ok(EMPTY.get_or_init(serde_json::Map::new)),
            Some(Value::Object(map)) => Ok(map),
            Some(_) => Err(ApiError::new(
                400,
                "invalid_json",
                "the request body must be a JSON object",
            )),
        }
    }
}
