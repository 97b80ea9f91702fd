//! Path and query extractors whose rejections are problem documents.

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use http::StatusCode;
use http::request::Parts;
use serde::de::DeserializeOwned;

use crate::problem::Problem;

/// Path parameters (`/v1/users/{id}`): a malformed one is a 400 problem.
#[derive(Debug, Clone, Copy)]
pub struct Path<T>(pub T);

impl<T, S> FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match <axum::extract::Path<T> as FromRequestParts<S>>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(Path(v)),
            Err(PathRejection::FailedToDeserializePathParams(e)) => Err(Problem::new(StatusCode::BAD_REQUEST)
                .with_type("invalid-path", "Invalid path parameter")
                .with_detail(e.body_text())),
            Err(other) => Err(Problem::new(other.status()).with_detail(other.body_text())),
        }
    }
}

/// Query parameters: unknown or malformed ones are a 400 problem naming them.
#[derive(Debug, Clone, Copy, Default)]
pub struct Query<T>(pub T);

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match <axum::extract::Query<T> as FromRequestParts<S>>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(Query(v)),
            Err(QueryRejection::FailedToDeserializeQueryString(e)) => {
                Err(Problem::bad_request(e.body_text()).with_type("invalid-query", "Invalid query parameters"))
            }
            Err(other) => Err(Problem::new(other.status()).with_detail(other.body_text())),
        }
    }
}

impl<T, S> OptionalFromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Option<Self>, Self::Rejection> {
        if parts.uri.query().is_none_or(str::is_empty) {
            return Ok(None);
        }
        <Self as FromRequestParts<S>>::from_request_parts(parts, state).await.map(Some)
    }
}

/// An `application/x-www-form-urlencoded` body (the OAuth 2.0 endpoints): a
/// wrong content type is a 415 problem, a malformed body a 400 problem.
#[derive(Debug, Clone, Copy, Default)]
pub struct Form<T>(pub T);

impl<T, S> axum::extract::FromRequest<S> for Form<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        use axum::extract::rejection::FormRejection;
        match <axum::Form<T> as axum::extract::FromRequest<S>>::from_request(req, state).await {
            Ok(axum::Form(v)) => Ok(Form(v)),
            Err(FormRejection::InvalidFormContentType(_)) => Err(Problem::new(StatusCode::UNSUPPORTED_MEDIA_TYPE)
                .with_detail("send the body as application/x-www-form-urlencoded")
                .with_oauth_error("invalid_request")),
            Err(FormRejection::FailedToDeserializeFormBody(e)) => Err(Problem::bad_request(e.body_text())
                .with_type("invalid-form", "Invalid form body")
                .with_oauth_error("invalid_request")),
            Err(other) => Err(Problem::new(other.status()).with_detail(other.body_text())),
        }
    }
}
