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
    /// Too many attempts: try again after this long.
    #[error("too many attempts")]
    Throttled(std::time::Duration),
    /// A wrong or reused second-factor code.
    #[error("invalid code")]
    InvalidCode,
    /// The second step of a sign-in is unknown, used, expired or burnt.
    #[error("invalid sign-in challenge")]
    InvalidChallenge,
    /// A link from a mail that is unknown, used or expired.
    #[error("invalid or expired link")]
    InvalidLink,
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
            AuthError::Throttled(wait) => {
                let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                Problem::new(StatusCode::TOO_MANY_REQUESTS)
                    .with_type("too-many-attempts", "Too many attempts")
                    .with_detail(format!("too many attempts; try again in {secs} seconds"))
                    .with_header(
                        http::header::RETRY_AFTER,
                        http::HeaderValue::from_str(&secs.max(1).to_string())
                            .unwrap_or(http::HeaderValue::from_static("1")),
                    )
            }
            AuthError::InvalidCode => Problem::new(StatusCode::UNAUTHORIZED)
                .with_type("invalid-code", "Invalid code")
                .with_detail("the code is wrong, expired or was used already"),
            AuthError::InvalidChallenge => Problem::new(StatusCode::UNAUTHORIZED)
                .with_type("invalid-challenge", "Invalid sign-in challenge")
                .with_detail("the sign-in challenge is invalid, used or expired; sign in again"),
            AuthError::InvalidLink => Problem::new(StatusCode::BAD_REQUEST)
                .with_type("invalid-link", "Invalid link")
                .with_detail("the link is invalid, was used already or has expired; ask for a new one"),
            AuthError::Token(e) => e.into(),
            AuthError::Busy => Problem::unavailable("the service is saturated; retry shortly", 1),
            AuthError::Internal(e) => Problem::internal(e.as_ref()),
        };
        problem.into_response()
    }
}
