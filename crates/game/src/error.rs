//! Game's error type: kit's shared failures, rendered as problem documents.

use axum::response::{IntoResponse, Response};
use kit::{Fail, Problem};

use crate::arena::InputError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum GameError {
    #[error(transparent)]
    Kit(#[from] kit::Error),
}

impl GameError {
    /// 404: the match does not exist.
    pub fn no_such_match() -> Self {
        Self::not_found("no such match")
    }
}

impl From<Problem> for GameError {
    fn from(p: Problem) -> Self {
        Self::Kit(p.into())
    }
}

impl From<sqlx::Error> for GameError {
    fn from(e: sqlx::Error) -> Self {
        Self::Kit(e.into())
    }
}

impl From<StoreError> for GameError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => GameError::no_such_match(),
            StoreError::Refused(why) => GameError::conflict(why),
            StoreError::Forbidden(why) => GameError::forbidden(why),
            StoreError::Database(e) => e.into(),
        }
    }
}

impl From<InputError> for GameError {
    fn from(e: InputError) -> Self {
        match e {
            InputError::NotLive => GameError::conflict("the match is not live"),
            InputError::NotPlayer => GameError::forbidden("you are not a player in this match"),
        }
    }
}

impl IntoResponse for GameError {
    fn into_response(self) -> Response {
        match self {
            GameError::Kit(e) => e.into_problem().into_response(),
        }
    }
}
