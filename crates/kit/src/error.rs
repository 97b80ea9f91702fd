//! The errors every service shares, and the problem document each becomes.
//!
//! A service's own error type wraps [`Error`] (`#[error(transparent)]
//! Kit(#[from] kit::Error)`) and adds only what is its own; database errors
//! reach it through `?` and are mapped once, here: a pool that gave no
//! connection in time is [`Error::Busy`] (503, retry), anything else is
//! [`Error::Internal`] (a logged 500 that says nothing of its cause).

use axum::response::{IntoResponse, Response};
use http::StatusCode;

use crate::problem::Problem;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A problem already rendered: a request that did not validate, a token
    /// refused, bad JSON.
    #[error("{0}")]
    Problem(#[from] Problem),
    /// 404; the words say what does not exist.
    #[error("{0}")]
    NotFound(String),
    /// 409: the request conflicts with the state of the resource.
    #[error("{0}")]
    Conflict(String),
    /// 403: the caller may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// 422: the request is well formed but asks for something the rules
    /// refuse (not tied to one field; those are [`FieldErrors`](crate::FieldErrors)).
    #[error("{0}")]
    Invalid(String),
    /// 503 with `Retry-After`: the database (or another bounded resource)
    /// is saturated.
    #[error("the service is saturated; retry shortly")]
    Busy,
    /// 500: logged with its cause, which the client never sees.
    #[error(transparent)]
    Internal(anyhow::Error),
}

/// The shared failures, as constructors of any service's error type that
/// wraps [`Error`]: `UsersError::conflict("you are already friends")`.
pub trait Fail: From<Error> {
    fn not_found(detail: impl Into<String>) -> Self {
        Error::NotFound(detail.into()).into()
    }

    fn conflict(detail: impl Into<String>) -> Self {
        Error::Conflict(detail.into()).into()
    }

    fn forbidden(detail: impl Into<String>) -> Self {
        Error::Forbidden(detail.into()).into()
    }

    fn invalid(detail: impl Into<String>) -> Self {
        Error::Invalid(detail.into()).into()
    }

    fn internal(cause: impl Into<anyhow::Error>) -> Self {
        Error::Internal(cause.into()).into()
    }

    fn busy() -> Self {
        Error::Busy.into()
    }
}

impl<E: From<Error>> Fail for E {}

impl Error {
    /// The problem document this error is answered with.
    pub fn into_problem(self) -> Problem {
        match self {
            Error::Problem(p) => p,
            Error::NotFound(detail) => Problem::not_found(detail),
            Error::Conflict(detail) => Problem::conflict(detail),
            Error::Forbidden(detail) => Problem::forbidden(detail),
            // The same type as field validation: a client reads one kind
            // of 422 whichever rule refused it.
            Error::Invalid(detail) => Problem::new(StatusCode::UNPROCESSABLE_ENTITY)
                .with_type("validation", "Invalid request")
                .with_detail(detail),
            Error::Busy => Problem::unavailable("the service is saturated; retry shortly", 1),
            Error::Internal(e) => Problem::internal(e.as_ref()),
        }
    }
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        if crate::db::is_overloaded(&e) { Error::Busy } else { Error::Internal(e.into()) }
    }
}

impl From<crate::auth::TokenError> for Error {
    fn from(e: crate::auth::TokenError) -> Self {
        Error::Problem(e.into())
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        self.into_problem().into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_saturated_pool_is_busy_and_other_database_errors_are_internal() {
        assert!(matches!(Error::from(sqlx::Error::PoolTimedOut), Error::Busy));
        assert!(matches!(Error::from(sqlx::Error::RowNotFound), Error::Internal(_)));
        assert_eq!(Error::Busy.into_problem().status, 503);
    }

    #[test]
    fn a_rule_refusal_is_the_same_kind_of_422_as_field_validation() {
        let rule = <Error as Fail>::invalid("you cannot befriend yourself").into_problem();
        let field = crate::FieldErrors::single("user_id", "is required");
        assert_eq!((rule.status, &rule.kind), (field.status, &field.kind));
    }
}
