//! The AI service's error type: kit's shared failures, rendered as problem
//! documents.

use axum::response::{IntoResponse, Response};
use kit::Problem;

#[derive(Debug, thiserror::Error)]
pub enum AiError {
    #[error(transparent)]
    Kit(#[from] kit::Error),
}

impl From<Problem> for AiError {
    fn from(p: Problem) -> Self {
        Self::Kit(p.into())
    }
}

impl From<sqlx::Error> for AiError {
    fn from(e: sqlx::Error) -> Self {
        Self::Kit(e.into())
    }
}

impl IntoResponse for AiError {
    fn into_response(self) -> Response {
        match self {
            AiError::Kit(e) => e.into_problem().into_response(),
        }
    }
}
