//! Registry errors and their JSON bodies (`{"errors":[{"code","message","detail"}]}`).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// The distribution-spec error codes kiln answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum ErrorCode {
    BlobUnknown,
    BlobUploadInvalid,
    BlobUploadUnknown,
    DigestInvalid,
    ManifestBlobUnknown,
    ManifestInvalid,
    ManifestUnknown,
    NameInvalid,
    NameUnknown,
    SizeInvalid,
    Unauthorized,
    Denied,
    Unsupported,
    TooManyRequests,
    /// distribution's code for a bad `n` in pagination.
    PaginationNumberInvalid,
    /// An internal failure (500).
    Unknown,
}

impl ErrorCode {
    /// The code as written in the body.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BlobUnknown => "BLOB_UNKNOWN",
            ErrorCode::BlobUploadInvalid => "BLOB_UPLOAD_INVALID",
            ErrorCode::BlobUploadUnknown => "BLOB_UPLOAD_UNKNOWN",
            ErrorCode::DigestInvalid => "DIGEST_INVALID",
            ErrorCode::ManifestBlobUnknown => "MANIFEST_BLOB_UNKNOWN",
            ErrorCode::ManifestInvalid => "MANIFEST_INVALID",
            ErrorCode::ManifestUnknown => "MANIFEST_UNKNOWN",
            ErrorCode::NameInvalid => "NAME_INVALID",
            ErrorCode::NameUnknown => "NAME_UNKNOWN",
            ErrorCode::SizeInvalid => "SIZE_INVALID",
            ErrorCode::Unauthorized => "UNAUTHORIZED",
            ErrorCode::Denied => "DENIED",
            ErrorCode::Unsupported => "UNSUPPORTED",
            ErrorCode::TooManyRequests => "TOOMANYREQUESTS",
            ErrorCode::PaginationNumberInvalid => "PAGINATION_NUMBER_INVALID",
            ErrorCode::Unknown => "UNKNOWN",
        }
    }
}

/// An error answer: status, spec code, message and optional detail, plus extra headers (e.g. `Range` on 416).
#[derive(Debug)]
pub struct RegistryError {
    /// HTTP status.
    pub status: StatusCode,
    /// Spec code.
    pub code: ErrorCode,
    /// Human-readable message naming what is wrong.
    pub message: String,
    /// Structured detail.
    pub detail: Option<serde_json::Value>,
    /// Headers to add to the answer.
    pub headers: Vec<(header::HeaderName, HeaderValue)>,
}

impl RegistryError {
    /// An error with no detail.
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> RegistryError {
        RegistryError {
            status,
            code,
            message: message.into(),
            detail: None,
            headers: Vec::new(),
        }
    }

    /// Adds a detail value.
    pub fn with_detail(mut self, detail: serde_json::Value) -> RegistryError {
        self.detail = Some(detail);
        self
    }

    /// Adds a header.
    pub fn with_header(mut self, name: header::HeaderName, value: HeaderValue) -> RegistryError {
        self.headers.push((name, value));
        self
    }

    /// 500 for an internal failure. The message (which may name server paths) is logged when answered,
    /// never sent: see [`IntoResponse`].
    pub fn internal(message: impl Into<String>) -> RegistryError {
        RegistryError::new(StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Unknown, message)
    }
}

/// A 4xx answer says what the client got wrong. A 5xx answer says only its status and the request id: its
/// message (storage paths, upstream addresses, OS errors) goes to the log under that id (target
/// `kiln_registry::error`), the same id as the request's access-log line.
impl IntoResponse for RegistryError {
    fn into_response(self) -> Response {
        let (message, detail) = if self.status.is_server_error() {
            let id = crate::observe::request_id();
            tracing::error!(
                target: "kiln_registry::error",
                request_id = id.as_deref(),
                status = self.status.as_u16(),
                error = %self.message,
                "server error"
            );
            let reason = self.status.canonical_reason().unwrap_or("server error");
            let message = match &id {
                Some(id) => format!("{reason} (request {id}; the registry's log has the details)"),
                None => format!("{reason} (the registry's log has the details)"),
            };
            (message, id.map(|id| serde_json::json!({ "request_id": id })))
        } else {
            (self.message, self.detail)
        };
        let mut entry = serde_json::json!({ "code": self.code.as_str(), "message": message });
        if let Some(detail) = detail
            && let Some(map) = entry.as_object_mut()
        {
            map.insert("detail".to_owned(), detail);
        }
        let body = serde_json::json!({ "errors": [entry] }).to_string();
        let mut response = (self.status, [(header::CONTENT_TYPE, "application/json")], body).into_response();
        for (name, value) in self.headers {
            response.headers_mut().insert(name, value);
        }
        response
    }
}
