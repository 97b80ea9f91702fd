//! Chat's error type: kit's shared failures, and chat's own.

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use kit::{Fail, Problem};

use crate::domain::Refusal;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    #[error(transparent)]
    Kit(#[from] kit::Error),
    #[error("a room with this name exists")]
    NameTaken,
    /// 429: too many messages, or slow mode; retry after this many seconds.
    #[error("{detail}")]
    TooMany { detail: String, retry_after_secs: u64 },
}

impl ChatError {
    /// The 404 of a conversation that does not exist or that the caller
    /// may not see (the same answer: existence is not leaked).
    pub fn no_such_conversation() -> Self {
        Self::not_found("no such conversation")
    }
}

impl From<Problem> for ChatError {
    fn from(p: Problem) -> Self {
        Self::Kit(p.into())
    }
}

impl From<sqlx::Error> for ChatError {
    fn from(e: sqlx::Error) -> Self {
        Self::Kit(e.into())
    }
}

impl From<StoreError> for ChatError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NameTaken => ChatError::NameTaken,
            StoreError::Database(e) => e.into(),
        }
    }
}

impl From<Refusal> for ChatError {
    fn from(r: Refusal) -> Self {
        match r {
            Refusal::Forbidden(why) => ChatError::forbidden(why),
            Refusal::Conflict(why) => ChatError::conflict(why),
        }
    }
}

impl IntoResponse for ChatError {
    fn into_response(self) -> Response {
        let problem = match self {
            ChatError::Kit(e) => e.into_problem(),
            ChatError::NameTaken => {
                Problem::conflict("a room with this name exists (names are compared without regard to case)")
            }
            ChatError::TooMany { detail, retry_after_secs } => Problem::new(StatusCode::TOO_MANY_REQUESTS)
                .with_type("rate-limited", "Too many requests")
                .with_detail(detail)
                .with_header(header::RETRY_AFTER, HeaderValue::from(retry_after_secs.max(1))),
        };
        problem.into_response()
    }
}
