//! Users' error type and the problem document each failure becomes.

use axum::response::{IntoResponse, Response};
use http::StatusCode;
use kit::Problem;

use crate::avatars::AvatarError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum UsersError {
    #[error("{0}")]
    Request(#[from] Problem),
    #[error("no such user")]
    NotFound,
    #[error("this display name is taken")]
    NameTaken,
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Avatar(#[from] AvatarError),
    #[error("the service is saturated; retry shortly")]
    Busy,
    #[error(transparent)]
    Internal(anyhow::Error),
}

impl From<StoreError> for UsersError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NameTaken => UsersError::NameTaken,
            StoreError::Database(e) if kit::db::is_overloaded(&e) => UsersError::Busy,
            StoreError::Database(e) => UsersError::Internal(e.into()),
        }
    }
}

impl IntoResponse for UsersError {
    fn into_response(self) -> Response {
        let problem = match self {
            UsersError::Request(p) => p,
            UsersError::NotFound => Problem::not_found("no such user"),
            UsersError::NameTaken => Problem::conflict(
                "this display name is taken (names are compared without regard to case or look-alike characters)",
            ),
            UsersError::Conflict(detail) => Problem::conflict(detail),
            UsersError::Forbidden(detail) => Problem::forbidden(detail),
            UsersError::Invalid(detail) => Problem::new(StatusCode::UNPROCESSABLE_ENTITY)
                .with_type("invalid", "Invalid request")
                .with_detail(detail),
            UsersError::Avatar(AvatarError::NotAnImage) => Problem::new(StatusCode::UNSUPPORTED_MEDIA_TYPE)
                .with_type("not-an-image", "Not an image")
                .with_detail(AvatarError::NotAnImage.to_string()),
            UsersError::Avatar(AvatarError::TooManyPixels) => Problem::new(StatusCode::UNPROCESSABLE_ENTITY)
                .with_type("image-too-large", "Image too large")
                .with_detail(AvatarError::TooManyPixels.to_string()),
            UsersError::Avatar(e) => Problem::internal(&e),
            UsersError::Busy => Problem::unavailable("the service is saturated; retry shortly", 1),
            UsersError::Internal(e) => Problem::internal(e.as_ref()),
        };
        problem.into_response()
    }
}
