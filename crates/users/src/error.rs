//! Users' error type: kit's shared failures, and users' own.

use axum::response::{IntoResponse, Response};
use http::StatusCode;
use kit::{Fail, Problem};

use crate::avatars::AvatarError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum UsersError {
    #[error(transparent)]
    Kit(#[from] kit::Error),
    #[error("this display name is taken")]
    NameTaken,
    #[error(transparent)]
    Avatar(#[from] AvatarError),
}

impl UsersError {
    /// The 404 of a user who does not exist (or not for the caller).
    pub fn no_such_user() -> Self {
        Self::not_found("no such user")
    }
}

impl From<Problem> for UsersError {
    fn from(p: Problem) -> Self {
        Self::Kit(p.into())
    }
}

impl From<StoreError> for UsersError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NameTaken => UsersError::NameTaken,
            StoreError::Database(e) => UsersError::Kit(e.into()),
        }
    }
}

impl IntoResponse for UsersError {
    fn into_response(self) -> Response {
        let problem = match self {
            UsersError::Kit(e) => e.into_problem(),
            UsersError::NameTaken => Problem::conflict(
                "this display name is taken (names are compared without regard to case or look-alike characters)",
            ),
            UsersError::Avatar(AvatarError::NotAnImage) => Problem::new(StatusCode::UNSUPPORTED_MEDIA_TYPE)
                .with_type("not-an-image", "Not an image")
                .with_detail(AvatarError::NotAnImage.to_string()),
            UsersError::Avatar(AvatarError::TooManyPixels) => Problem::new(StatusCode::UNPROCESSABLE_ENTITY)
                .with_type("image-too-large", "Image too large")
                .with_detail(AvatarError::TooManyPixels.to_string()),
            UsersError::Avatar(e) => Problem::internal(&e),
        };
        problem.into_response()
    }
}
