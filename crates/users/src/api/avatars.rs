//! Avatars: upload, removal, and serving (with the generated default).

use axum::body::Body;
use axum::extract::multipart::MultipartRejection;
use axum::extract::{Multipart, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use kit::extract::{Path, Query};
use kit::{Fail, FieldErrors, Json, Problem};
use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;

use super::{Me, MyProfile, active};
use crate::AppState;
use crate::avatars::{self, FULL, MAX_UPLOAD_BYTES, THUMB};
use crate::error::UsersError;

/// Replaces the caller's avatar with an uploaded image (multipart field
/// `avatar`; PNG, JPEG, WebP or GIF; at most 5 MiB and 6000×6000 pixels). The
/// image is decoded, cropped square, resized to 256 and 64 pixels and
/// re-encoded, which drops its metadata. The file name is ignored.
#[utoipa::path(put, path = "/v1/users/me/avatar", tag = "users", security(("bearer" = [])),
    request_body(content_type = "multipart/form-data", description = "field `avatar`: the image"),
    responses((status = 200, body = MyProfile),
        (status = 415, description = "Not an image", body = Problem, content_type = "application/problem+json")))]
pub(super) async fn upload_avatar(
    State(state): State<AppState>,
    me: Me,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Json<MyProfile>, UsersError> {
    let mut multipart = multipart.map_err(|_| {
        UsersError::from(
            Problem::new(StatusCode::UNSUPPORTED_MEDIA_TYPE)
                .with_type("unsupported-media-type", "Unsupported media type")
                .with_detail("send the image as multipart/form-data in a field named `avatar`"),
        )
    })?;
    let mut upload = None;
    let mut too_large = false;
    // Read the whole body even past the image limit (the route's body limit
    // still caps it): answering while the client is still sending makes many
    // clients see a reset instead of the 413.
    while let Some(mut field) = multipart.next_field().await.map_err(|e| multipart_problem(&e))? {
        let wanted = field.name() == Some("avatar") && upload.is_none();
        let mut bytes = Vec::new();
        while let Some(chunk) = field.chunk().await.map_err(|e| multipart_problem(&e))? {
            if !wanted || too_large {
                continue;
            }
            if bytes.len() + chunk.len() > MAX_UPLOAD_BYTES {
                too_large = true;
                bytes = Vec::new();
                continue;
            }
            bytes.extend_from_slice(&chunk);
        }
        if wanted && !too_large {
            upload = Some(bytes);
        }
    }
    if too_large {
        return Err(UsersError::from(Problem::payload_too_large(MAX_UPLOAD_BYTES)));
    }
    let upload = upload.ok_or_else(|| {
        UsersError::from(FieldErrors::single("avatar", "is required (a multipart field named `avatar`)"))
    })?;
    let processed =
        tokio::task::spawn_blocking(move || avatars::process(&upload)).await.map_err(UsersError::internal)??;
    let id = me.caller.user_id;
    state.avatars.put(id, &processed).await?;
    let previous = state.store.set_avatar(id, Some(&processed.etag), Utc::now()).await?;
    if let Some(old) = previous.filter(|old| *old != processed.etag)
        && let Err(e) = state.avatars.delete(id, &old).await
    {
        tracing::warn!(error = %e, "the replaced avatar could not be deleted");
    }
    let profile = state.store.profile(id).await?.ok_or_else(UsersError::no_such_user)?;
    Ok(Json(MyProfile::from(&profile)))
}

fn multipart_problem(e: &axum::extract::multipart::MultipartError) -> UsersError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        UsersError::from(Problem::payload_too_large(MAX_UPLOAD_BYTES))
    } else {
        UsersError::from(Problem::bad_request(format!("the multipart body is malformed: {}", e.body_text())))
    }
}

/// Goes back to the generated avatar.
#[utoipa::path(delete, path = "/v1/users/me/avatar", tag = "users", security(("bearer" = [])),
    responses((status = 200, body = MyProfile)))]
pub(super) async fn remove_avatar(State(state): State<AppState>, me: Me) -> Result<Json<MyProfile>, UsersError> {
    let id = me.caller.user_id;
    if let Some(old) = state.store.set_avatar(id, None, Utc::now()).await?
        && let Err(e) = state.avatars.delete(id, &old).await
    {
        tracing::warn!(error = %e, "the removed avatar could not be deleted");
    }
    let profile = state.store.profile(id).await?.ok_or_else(UsersError::no_such_user)?;
    Ok(Json(MyProfile::from(&profile)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AvatarQuery {
    /// 256 (default) or 64.
    pub size: Option<u32>,
    /// The version, for caches; ignored by the server.
    #[allow(dead_code)] // accepted so `deny_unknown_fields` lets it through
    pub v: Option<String>,
}

/// A user's avatar (no token needed, so it works in `<img>`). Answers 304 to a
/// matching `If-None-Match`.
#[utoipa::path(get, path = "/v1/users/{id}/avatar", tag = "users", params(("id" = Uuid, Path), AvatarQuery),
    responses(
        (status = 200, description = "The image: the upload as JPEG, or the generated avatar as PNG",
            content(("image/jpeg"), ("image/png"))),
        (status = 304, description = "Not modified: the `If-None-Match` version is current"),
        (status = 404, description = "No such user", body = Problem, content_type = "application/problem+json")))]
pub(super) async fn get_avatar(
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
    query: Option<Query<AvatarQuery>>,
    headers: HeaderMap,
) -> Result<Response, UsersError> {
    let size = match query.and_then(|q| q.0.size) {
        None | Some(FULL) => FULL,
        Some(THUMB) => THUMB,
        Some(_) => return Err(UsersError::invalid(format!("size must be {FULL} or {THUMB}"))),
    };
    let profile = active(state.store.profile(id).await?)?;
    let (etag, body, content_type) = match &profile.avatar_etag {
        Some(etag) => {
            let tag = format!("\"{etag}-{size}\"");
            if not_modified(&headers, &tag) {
                return Ok(not_modified_response(&tag));
            }
            let body = state.avatars.get(id, etag, size).await?.ok_or_else(UsersError::no_such_user)?;
            (tag, body, "image/jpeg")
        }
        None => {
            let tag = format!("\"{}-{size}\"", avatars::default_etag(id));
            if not_modified(&headers, &tag) {
                return Ok(not_modified_response(&tag));
            }
            let body = tokio::task::spawn_blocking(move || avatars::default_avatar(id, size))
                .await
                .map_err(UsersError::internal)??;
            (tag, body, "image/png")
        }
    };
    Ok(Response::builder()
        .header(header::CONTENT_TYPE, content_type)
        .header(header::ETAG, etag)
        .header(header::CACHE_CONTROL, "public, max-age=3600")
        .header(header::X_CONTENT_TYPE_OPTIONS, "nosniff")
        .body(Body::from(body))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response()))
}

fn not_modified(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"))
}

fn not_modified_response(etag: &str) -> Response {
    let mut r = StatusCode::NOT_MODIFIED.into_response();
    if let Ok(v) = HeaderValue::from_str(etag) {
        r.headers_mut().insert(header::ETAG, v);
    }
    r
}
