//! Stats' error type: kit's shared failures, rendered as problem documents.

use axum::response::{IntoResponse, Response};
use kit::{Fail, Problem};

#[derive(Debug, thiserror::Error)]
pub enum StatsError {
    #[error(transparent)]
    Kit(#[from] kit::Error),
}

impl StatsError {
    /// 404: stats has nothing on this player (never played, or erased).
    pub fn no_such_player() -> Self {
        Self::not_found("no stats for this player")
    }
}

impl From<Problem> for StatsError {
    fn from(p: Problem) -> Self {
        Self::Kit(p.into())
    }
}

impl From<sqlx::Error> for StatsError {
    fn from(e: sqlx::Error) -> Self {
        Self::Kit(e.into())
    }
}

impl IntoResponse for StatsError {
    fn into_response(self) -> Response {
        match self {
            StatsError::Kit(e) => e.into_problem().into_response(),
        }
    }
}
