//! The ledger's error type: kit's shared failures, rendered as problem
//! documents.

use axum::response::{IntoResponse, Response};
use kit::{Fail, Problem};

use crate::chain::ChainError;

#[derive(Debug, thiserror::Error)]
pub enum LedgerApiError {
    #[error(transparent)]
    Kit(#[from] kit::Error),
}

impl From<Problem> for LedgerApiError {
    fn from(p: Problem) -> Self {
        Self::Kit(p.into())
    }
}

impl From<sqlx::Error> for LedgerApiError {
    fn from(e: sqlx::Error) -> Self {
        Self::Kit(e.into())
    }
}

/// The chain unreadable (its stored blocks altered, a contract that answers
/// nonsense) is the server's failure, logged with its cause.
impl From<ChainError> for LedgerApiError {
    fn from(e: ChainError) -> Self {
        match e {
            ChainError::Database(e) => e.into(),
            e => Self::internal(e),
        }
    }
}

impl IntoResponse for LedgerApiError {
    fn into_response(self) -> Response {
        match self {
            LedgerApiError::Kit(e) => e.into_problem().into_response(),
        }
    }
}
