//! Auth's error type: every way a request can fail, and the problem document
//! each becomes.

use axum::response::{IntoResponse, Response};
use http::StatusCode;
use kit::Problem;
use kit::auth::TokenError;

use crate::password::HashError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// A request problem already rendered (validation, bad JSON).
    #[error("{0}")]
    Request(#[from] Problem),
    /// Unknown email or wrong password: one answer for both.
    #[error("invalid email or password")]
    InvalidCredentials,
    #[error("this account is disabled")]
    Disabled,
    #[error("an account with this email already exists")]
    EmailTaken,
    #[error("the refresh token is invalid, expired or revoked")]
    InvalidRefreshToken,
    #[error(transparent)]
    Token(#[from] TokenError),
    /// Password hashing or the database is saturated.
    #[error("the service is saturated; retry shortly")]
    Busy,
    #[error(transparent)]
    Internal(anyhow::Error),
}

impl From<StoreError> for AuthError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::EmailTaken => AuthError::EmailTaken,
            StoreError::Database(e) if kit::db::is_overloaded(&e) => AuthError::Busy,
            StoreError::Database(e) => AuthError::Internal(e.into()),
        }
    }
}

impl From<HashError> for AuthError {
    fn from(e: HashError) -> Self {
        match e {
            HashError::Busy => AuthError::Busy,
            HashError::Failed(msg) => AuthError::Internal(anyhow::anyhow!(msg)),
        }
    }
}

impl From<jsonwebtoken::errors::Error> for AuthError {
    fn from(e: jsonwebtoken::errors::Error) -> Self {
        AuthError::Internal(e.into())
    }
}

impl IntoResponse for AuthError {
    fn into_response(self) -> Response {
        let problem = match self {
            AuthError::Request(p) => p,
            AuthError::InvalidCredentials => Problem::new(StatusCode::UNAUTHORIZED)
                .with_type("invalid-credentials", "Invalid credentials")
                .with_detail("invalid email or password"),
            AuthError::Disabled => Problem::forbidden("this account is disabled"),
            AuthError::EmailTaken => Problem::conflict("an account with this email already exists"),
            AuthError::InvalidRefreshToken => Problem::new(StatusCode::UNAUTHORIZED)
                .with_type("invalid-refresh-token", "Invalid refresh token")
                .with_detail("the refresh token is invalid, expired or revoked; sign in again"),
            AuthError::Token(e) => e.into(),
            AuthError::Busy => Problem::unavailable("the service is saturated; retry shortly", 1),
            AuthError::Internal(e) => Problem::internal(e.as_ref()),
        };
        problem.into_response()
    }
}
