//! A JSON extractor whose rejections are problem documents.
//!
//! axum's own `Json` answers bad input in plain text; this one says, in
//! problem+json, whether the content type, the syntax, the shape or the size of
//! the body was wrong.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::problem::Problem;

/// JSON request body or response.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(Json(value)),
            Err(rejection) => Err(problem_from(rejection)),
        }
    }
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

fn problem_from(rejection: JsonRejection) -> Problem {
    match rejection {
        JsonRejection::MissingJsonContentType(_) => Problem::new(StatusCode::UNSUPPORTED_MEDIA_TYPE)
            .with_type("unsupported-media-type", "Unsupported media type")
            .with_detail("the request body must be JSON, sent with `Content-Type: application/json`"),
        JsonRejection::JsonSyntaxError(e) => {
            Problem::bad_request(format!("the body is not valid JSON: {}", inner(&e.body_text())))
                .with_type("malformed-json", "Malformed JSON")
        }
        JsonRejection::JsonDataError(e) => Problem::new(StatusCode::UNPROCESSABLE_ENTITY)
            .with_type("invalid-body", "Invalid request body")
            .with_detail(format!("the body does not have the expected shape: {}", inner(&e.body_text()))),
        JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            Problem::new(StatusCode::PAYLOAD_TOO_LARGE)
                .with_type("payload-too-large", "Request body too large")
                .with_detail("the request body exceeds the size limit")
        }
        other => Problem::new(other.status()).with_detail(other.body_text()),
    }
}

/// axum prefixes serde's message with its own sentence; keep serde's part, which
/// names the field and the position.
fn inner(text: &str) -> String {
    text.split_once(": ").map(|(_, rest)| rest).unwrap_or(text).to_owned()
}
