//! Notify's error type: kit's shared failures, rendered as problem
//! documents.

use axum::response::{IntoResponse, Response};
use kit::Problem;

#[derive(Debug, thiserror::Error)]
pub enum NotifyApiError {
    #[error(transparent)]
    Kit(#[from] kit::Error),
}

impl From<Problem> for NotifyApiError {
    fn from(p: Problem) -> Self {
        Self::Kit(p.into())
    }
}

impl From<sqlx::Error> for NotifyApiError {
    fn from(e: sqlx::Error) -> Self {
        Self::Kit(e.into())
    }
}

impl IntoResponse for NotifyApiError {
    fn into_response(self) -> Response {
        match self {
            NotifyApiError::Kit(e) => e.into_problem().into_response(),
        }
    }
}
