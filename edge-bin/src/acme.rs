//! ACME HTTP-01 challenge answers on the plain-HTTP port.
//!
//! Tokens are read from `http.acme_challenge_dir` (one file per token holding
//! the key authorization), the layout certbot's webroot and edge-acme's
//! directory storage use.

use http::{HeaderValue, Response, StatusCode};

use crate::http::body::EdgeBody;
use crate::http::respond;
use crate::state::State;

/// Answers `GET /.well-known/acme-challenge/<token>`.
pub fn challenge_response(state: &State, token: &str, request_id: &str) -> Response<EdgeBody> {
    let valid = !token.is_empty()
        && token.len() <= 256
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    let Some(dir) = state.http.acme_challenge_dir.as_ref().filter(|_| valid) else {
        return respond::error(StatusCode::NOT_FOUND, request_id);
    };
    match std::fs::read(dir.join(token)) {
        Ok(body) => {
            let mut r = respond::fixed(
                StatusCode::OK,
                body.into(),
                HeaderValue::from_static("application/octet-stream"),
                request_id,
            );
            r.headers_mut().insert(
                http::header::CACHE_CONTROL,
                HeaderValue::from_static("no-store"),
            );
            r
        }
        Err(_) => respond::error(StatusCode::NOT_FOUND, request_id),
    }
}
