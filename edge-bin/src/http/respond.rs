//! Responses edge makes itself: errors (with the request id, no internal
//! detail), fixed responses and redirects.

use http::header::{CONTENT_TYPE, LOCATION};
use http::{HeaderValue, Response, StatusCode};

use super::body::{EdgeBody, full};
use edge_balance::forwarding::X_REQUEST_ID;

/// An error page: status line text and the request id, nothing internal.
pub fn error(status: StatusCode, request_id: &str) -> Response<EdgeBody> {
    let reason = status.canonical_reason().unwrap_or("Error");
    let body = format!("{} {reason}\nrequest id: {request_id}\n", status.as_u16());
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert(X_REQUEST_ID, v);
    }
    if status == StatusCode::BAD_REQUEST || status == StatusCode::MISDIRECTED_REQUEST {
        h.insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    }
    r
}

/// A configured fixed response.
pub fn fixed(
    status: StatusCode,
    body: bytes::Bytes,
    content_type: HeaderValue,
    request_id: &str,
) -> Response<EdgeBody> {
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    r.headers_mut().insert(CONTENT_TYPE, content_type);
    if let Ok(v) = HeaderValue::from_str(request_id) {
        r.headers_mut().insert(X_REQUEST_ID, v);
    }
    r
}

/// A redirect to `location`.
pub fn redirect(status: StatusCode, location: &str, request_id: &str) -> Response<EdgeBody> {
    let Ok(loc) = HeaderValue::from_str(location) else {
        return error(StatusCode::BAD_REQUEST, request_id);
    };
    let mut r = Response::new(full(format!("Redirecting to {location}\n")));
    *r.status_mut() = status;
    r.headers_mut().insert(LOCATION, loc);
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if let Ok(v) = HeaderValue::from_str(request_id) {
        r.headers_mut().insert(X_REQUEST_ID, v);
    }
    r
}
