//! The tournament service's error type: kit's shared failures, rendered as
//! problem documents.

use axum::response::{IntoResponse, Response};
use kit::{Fail, Problem};

use crate::domain::BracketError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum TournamentError {
    #[error(transparent)]
    Kit(#[from] kit::Error),
}

impl TournamentError {
    pub fn no_such_tournament() -> Self {
        Self::not_found("no such tournament")
    }
}

impl From<Problem> for TournamentError {
    fn from(p: Problem) -> Self {
        Self::Kit(p.into())
    }
}

impl From<sqlx::Error> for TournamentError {
    fn from(e: sqlx::Error) -> Self {
        Self::Kit(e.into())
    }
}

impl From<StoreError> for TournamentError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => Self::no_such_tournament(),
            StoreError::Refused(why) => Self::conflict(why),
            StoreError::Forbidden(why) => Self::forbidden(why),
            StoreError::Bracket(e) => e.into(),
            StoreError::Database(e) => e.into(),
        }
    }
}

impl From<BracketError> for TournamentError {
    fn from(e: BracketError) -> Self {
        match e {
            BracketError::NoSuchMatch => Self::not_found("no such match in the bracket"),
            BracketError::NotInMatch => kit::FieldErrors::single("winner", "did not play this match").into(),
            e => Self::conflict(e.to_string()),
        }
    }
}

impl IntoResponse for TournamentError {
    fn into_response(self) -> Response {
        match self {
            TournamentError::Kit(e) => e.into_problem().into_response(),
        }
    }
}
