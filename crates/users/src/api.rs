//! Users' HTTP API: where each request lands.

use axum::body::Body;
use axum::extract::multipart::MultipartRejection;
use axum::extract::{FromRequestParts, Multipart, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use contracts::users::{
    AvatarChanged, FriendshipChanged, FriendshipState, UserBanned, UserBlocked, UserErased, UserUnblocked,
};
use kit::auth::{Admin, Authorized, Caller};
use kit::extract::{Path, Query};
use kit::page::{Page, PageRequest};
use kit::peer::Credentials;
use kit::{Fail, FieldErrors, Json, Problem};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::AppState;
use crate::avatars::{self, FULL, MAX_UPLOAD_BYTES, THUMB};
use crate::domain::{Audience, DisplayName, Privacy, Profile, Status, key_of, parse_bio, parse_locale, parse_timezone};
use crate::error::UsersError;
use crate::events;
use crate::store::{ProfileChanges, RequestOutcome};

/// How recently a caller must have signed in to erase their account.
pub const FRESH_LOGIN_SECS: i64 = 600;
/// Last seen within this long counts as online.
const ONLINE_SECS: i64 = 300;

pub(crate) fn router(state: AppState) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(get_me, update_me, erase_me))
        .routes(routes!(export_me))
        .routes(routes!(upload_avatar, remove_avatar))
        .routes(routes!(get_avatar))
        .routes(routes!(get_profile))
        .routes(routes!(search))
        .routes(routes!(list_friends))
        .routes(routes!(list_requests, send_request))
        .routes(routes!(accept_request))
        .routes(routes!(decline_request))
        .routes(routes!(cancel_request))
        .routes(routes!(remove_friend))
        .routes(routes!(list_blocks))
        .routes(routes!(block, unblock))
        .routes(routes!(admin_list))
        .routes(routes!(admin_get))
        .routes(routes!(admin_ban))
        .routes(routes!(admin_unban))
        .with_state(state)
}

/// The caller, whose profile exists and is usable; noted as seen.
pub(crate) struct Me {
    pub caller: Caller,
    pub profile: Profile,
}

impl FromRequestParts<AppState> for Me {
    type Rejection = UsersError;

    async fn from_request_parts(parts: &mut http::request::Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let caller = Caller::from_request_parts(parts, state).await?;
        let profile = state.store.profile(caller.user_id).await?.ok_or_else(|| {
            UsersError::from(
                Problem::not_found("your profile is being created; retry in a moment")
                    .with_header(header::RETRY_AFTER, HeaderValue::from_static("1")),
            )
        })?;
        match profile.status {
            Status::Active => {}
            Status::Banned => return Err(UsersError::forbidden("this account is banned".to_owned())),
            Status::Erased => return Err(UsersError::from(Problem::invalid_token("this account was erased"))),
        }
        // Seen within the minute: nothing to write (the hot path stays read-only).
        let now = Utc::now();
        let stale = profile.last_seen_at.is_none_or(|t| (now - t).num_seconds() >= 60);
        if stale && let Err(e) = state.store.touch(caller.user_id, now).await {
            tracing::warn!(error = %e, "could not note the user as seen");
        }
        Ok(Me { caller, profile })
    }
}

fn avatar_url(p: &Profile) -> String {
    events::avatar_url(p.user_id, p.avatar_etag.as_deref().unwrap_or(&avatars::default_etag(p.user_id)))
}

/// A profile as its owner sees it.
#[derive(Debug, Serialize, ToSchema)]
pub struct MyProfile {
    pub id: Uuid,
    pub display_name: String,
    pub bio: String,
    pub locale: Option<String>,
    pub timezone: Option<String>,
    pub privacy: Privacy,
    pub avatar_url: String,
    pub status: Status,
    pub last_seen_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<&Profile> for MyProfile {
    fn from(p: &Profile) -> Self {
        Self {
            id: p.user_id,
            display_name: p.display_name.clone(),
            bio: p.bio.clone(),
            locale: p.locale.clone(),
            timezone: p.timezone.clone(),
            privacy: p.privacy,
            avatar_url: avatar_url(p),
            status: p.status,
            last_seen_at: p.last_seen_at,
            created_at: p.created_at,
            updated_at: p.updated_at,
        }
    }
}

/// How the viewer relates to a profile.
#[derive(Debug, Serialize, ToSchema)]
pub struct Relationship {
    pub friends: bool,
    /// `incoming` (they asked you), `outgoing` (you asked them) or null.
    pub request: Option<&'static str>,
    /// You have blocked them.
    pub blocked: bool,
}

/// A profile as someone else sees it: only what its owner made visible.
#[derive(Debug, Serialize, ToSchema)]
pub struct PublicProfile {
    pub id: Uuid,
    pub display_name: String,
    pub avatar_url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bio: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub locale: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// Present when the owner lets the viewer see it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_seen_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub online: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub relationship: Option<Relationship>,
}

fn public_view(p: &Profile, viewer: Uuid, friends: bool, relationship: Option<Relationship>) -> PublicProfile {
    let me = p.user_id == viewer;
    let show_profile = p.privacy.profile.admits(me, friends);
    let show_status = p.privacy.online_status.admits(me, friends);
    let last_seen = if show_status { p.last_seen_at } else { None };
    PublicProfile {
        id: p.user_id,
        display_name: p.display_name.clone(),
        avatar_url: avatar_url(p),
        bio: show_profile.then(|| p.bio.clone()),
        locale: if show_profile { p.locale.clone() } else { None },
        timezone: if show_profile { p.timezone.clone() } else { None },
        last_seen_at: last_seen,
        online: show_status.then(|| last_seen.is_some_and(|t| (Utc::now() - t).num_seconds() < ONLINE_SECS)),
        relationship,
    }
}

/// The caller's profile.
#[utoipa::path(get, path = "/v1/users/me", tag = "users", security(("bearer" = [])),
    responses((status = 200, body = MyProfile), (status = 401, body = Problem, content_type = "application/problem+json")))]
async fn get_me(me: Me) -> Json<MyProfile> {
    Json(MyProfile::from(&me.profile))
}

/// Changes to the caller's privacy settings; omitted fields stay.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PrivacyUpdate {
    pub profile: Option<Audience>,
    pub online_status: Option<Audience>,
    pub friend_requests: Option<Audience>,
}

/// Changes to the caller's profile. Omitted fields stay as they are; `null`
/// clears `locale` and `timezone`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateProfile {
    pub display_name: Option<String>,
    pub bio: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub locale: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub timezone: Option<Option<String>>,
    pub privacy: Option<PrivacyUpdate>,
}

/// Tells a present `null` (clear) from an absent field (keep).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// Updates the caller's profile.
#[utoipa::path(put, path = "/v1/users/me", tag = "users", security(("bearer" = [])), request_body = UpdateProfile,
    responses((status = 200, body = MyProfile),
        (status = 409, description = "Display name taken", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json")))]
async fn update_me(
    State(state): State<AppState>,
    me: Me,
    Json(req): Json<UpdateProfile>,
) -> Result<Json<MyProfile>, UsersError> {
    let mut errors = FieldErrors::new();
    let mut changes = ProfileChanges::default();
    if let Some(name) = &req.display_name {
        changes.display_name = errors.check("display_name", DisplayName::parse(name));
    }
    if let Some(bio) = &req.bio {
        changes.bio = errors.check("bio", parse_bio(bio));
    }
    if let Some(locale) = &req.locale {
        changes.locale = match locale {
            None => Some(None),
            Some(l) => errors.check("locale", parse_locale(l)).map(Some),
        };
    }
    if let Some(tz) = &req.timezone {
        changes.timezone = match tz {
            None => Some(None),
            Some(t) => errors.check("timezone", parse_timezone(t)).map(Some),
        };
    }
    errors.finish()?;
    if let Some(p) = &req.privacy {
        let current = me.profile.privacy;
        let friend_requests = p.friend_requests.unwrap_or(current.friend_requests);
        changes.privacy = Some(Privacy {
            profile: p.profile.unwrap_or(current.profile),
            online_status: p.online_status.unwrap_or(current.online_status),
            friend_requests,
        });
    }
    let updated = state
        .store
        .update_profile(me.caller.user_id, &changes, Utc::now())
        .await?
        .ok_or_else(UsersError::no_such_user)?;
    Ok(Json(MyProfile::from(&updated)))
}

/// Erases the caller's account (GDPR art. 17): the profile is anonymised, the
/// avatar deleted, friendships and blocks removed, and `user_erased` tells
/// every other service to erase what it holds (auth disables the sign-in).
/// Needs a recent sign-in (access token at most 10 minutes old).
#[utoipa::path(delete, path = "/v1/users/me", tag = "users", security(("bearer" = [])),
    responses((status = 202, description = "Erased here; other services follow through the event bus"),
        (status = 401, description = "Sign in again first", body = Problem, content_type = "application/problem+json")))]
async fn erase_me(State(state): State<AppState>, me: Me) -> Result<StatusCode, UsersError> {
    if Utc::now().timestamp() - me.caller.issued_at > FRESH_LOGIN_SECS {
        return Err(UsersError::from(
            Problem::new(StatusCode::UNAUTHORIZED)
                .with_type("login-required", "Recent sign-in required")
                .with_detail("erasing an account needs a sign-in from the last 10 minutes; sign in again and retry"),
        ));
    }
    let now = Utc::now();
    let id = me.caller.user_id;
    let avatar = state.store.erase(id, now, &UserErased { user_id: id, erased_at: now }).await?;
    if let Some(etag) = avatar
        && let Err(e) = state.avatars.delete(id, &etag).await
    {
        tracing::error!(user_id = %id, error = %e, "erased user's avatar could not be deleted; delete avatars/{id}/ by hand");
    }
    tracing::info!(user_id = %id, "account erased");
    Ok(StatusCode::ACCEPTED)
}

/// Everything Panal holds about the caller, as one JSON document (GDPR art.
/// 15 and 20). Users asks every other service for its part.
#[utoipa::path(get, path = "/v1/users/me/export", tag = "users", security(("bearer" = [])),
    responses((status = 200, description = "The archive", body = Object)))]
async fn export_me(State(state): State<AppState>, me: Me, headers: HeaderMap) -> Result<Response, UsersError> {
    let id = me.caller.user_id;
    let relations = state.store.relations(id).await?;
    let blocks = state.store.blocks(id).await?;
    let users_part = serde_json::json!({
        "profile": MyProfile::from(&me.profile),
        "friends": relations.iter().filter(|r| r.state == "accepted").map(|r| serde_json::json!({
            "user_id": r.other.user_id, "display_name": r.other.display_name, "since": r.since })).collect::<Vec<_>>(),
        "friend_requests": relations.iter().filter(|r| r.state == "pending").map(|r| serde_json::json!({
            "user_id": r.other.user_id, "display_name": r.other.display_name,
            "direction": if r.requested_by == id { "outgoing" } else { "incoming" }, "since": r.since })).collect::<Vec<_>>(),
        "blocks": blocks.iter().map(|(p, at)| serde_json::json!({ "user_id": p.user_id, "display_name": p.display_name, "since": at })).collect::<Vec<_>>(),
    });
    let mut services = serde_json::Map::new();
    services.insert("users".to_owned(), users_part);
    // The caller's own token goes on: each service exports what it holds
    // about whoever the token names, and nobody else.
    let credentials = match headers.get(header::AUTHORIZATION) {
        Some(value) => Credentials::Forward(value),
        None => Credentials::None,
    };
    for peer in &state.exporters {
        let service = peer.name();
        let response = peer.get(&format!("/v1/{service}/me/export"), credentials).await.map_err(kit::Error::from)?;
        if !response.status().is_success() {
            return Err(UsersError::internal(anyhow::anyhow!(
                "{service} answered {} to the export",
                response.status()
            )));
        }
        let part = response.json::<serde_json::Value>().await.map_err(UsersError::internal)?;
        services.insert(service.to_owned(), part);
    }
    let archive = serde_json::json!({
        "format": "panal-export/1",
        "user_id": id,
        "generated_at": Utc::now(),
        "services": services,
    });
    Ok((
        [(header::CONTENT_DISPOSITION, HeaderValue::from_static("attachment; filename=\"panal-export.json\""))],
        Json(archive),
    )
        .into_response())
}

/// Replaces the caller's avatar with an uploaded image (multipart field
/// `avatar`; PNG, JPEG, WebP or GIF; at most 5 MiB and 6000×6000 pixels). The
/// image is decoded, cropped square, resized to 256 and 64 pixels and
/// re-encoded, which drops its metadata. The file name is ignored.
#[utoipa::path(put, path = "/v1/users/me/avatar", tag = "users", security(("bearer" = [])),
    request_body(content_type = "multipart/form-data", description = "field `avatar`: the image"),
    responses((status = 200, body = MyProfile),
        (status = 413, body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not an image", body = Problem, content_type = "application/problem+json")))]
async fn upload_avatar(
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
    let now = Utc::now();
    let event = AvatarChanged { user_id: id, avatar_url: events::avatar_url(id, &processed.etag), changed_at: now };
    let previous = state.store.set_avatar(id, Some(&processed.etag), now, &event).await?;
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
async fn remove_avatar(State(state): State<AppState>, me: Me) -> Result<Json<MyProfile>, UsersError> {
    let id = me.caller.user_id;
    let now = Utc::now();
    let event =
        AvatarChanged { user_id: id, avatar_url: events::avatar_url(id, &avatars::default_etag(id)), changed_at: now };
    if let Some(old) = state.store.set_avatar(id, None, now, &event).await?
        && let Err(e) = state.avatars.delete(id, &old).await
    {
        tracing::warn!(error = %e, "the removed avatar could not be deleted");
    }
    let profile = state.store.profile(id).await?.ok_or_else(UsersError::no_such_user)?;
    Ok(Json(MyProfile::from(&profile)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AvatarQuery {
    /// 256 (default) or 64.
    pub size: Option<u32>,
    /// The version, for caches; ignored by the server.
    pub v: Option<String>,
}

/// A user's avatar (no token needed, so it works in `<img>`). Answers 304 to a
/// matching `If-None-Match`.
#[utoipa::path(get, path = "/v1/users/{id}/avatar", tag = "users", params(("id" = Uuid, Path), AvatarQuery),
    responses((status = 200, description = "The image", content_type = "image/jpeg"), (status = 304), (status = 404, body = Problem, content_type = "application/problem+json")))]
async fn get_avatar(
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
    let profile =
        state.store.profile(id).await?.filter(|p| p.status == Status::Active).ok_or_else(UsersError::no_such_user)?;
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

async fn relationship(state: &AppState, viewer: Uuid, other: Uuid) -> Result<(bool, Relationship, bool), UsersError> {
    let view = state.store.between(viewer, other).await?;
    let friends = view.state.as_deref() == Some("accepted");
    let request = (view.state.as_deref() == Some("pending"))
        .then(|| if view.requested_by == Some(viewer) { "outgoing" } else { "incoming" });
    Ok((friends, Relationship { friends, request, blocked: view.viewer_blocked }, view.blocked_viewer))
}

/// A user's public profile: what its owner lets the caller see. A user who
/// blocked the caller does not exist for them.
#[utoipa::path(get, path = "/v1/users/{id}", tag = "users", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 200, body = PublicProfile), (status = 404, body = Problem, content_type = "application/problem+json")))]
async fn get_profile(
    State(state): State<AppState>,
    me: Me,
    Path(id): Path<Uuid>,
) -> Result<Json<PublicProfile>, UsersError> {
    let viewer = me.caller.user_id;
    let profile =
        state.store.profile(id).await?.filter(|p| p.status == Status::Active).ok_or_else(UsersError::no_such_user)?;
    let (friends, rel, blocked_viewer) = relationship(&state, viewer, id).await?;
    if id != viewer && blocked_viewer {
        return Err(UsersError::no_such_user());
    }
    Ok(Json(public_view(&profile, viewer, friends, (id != viewer).then_some(rel))))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct SearchQuery {
    /// The beginning of a display name (compared without regard to case or
    /// look-alike characters).
    pub q: Option<String>,
    /// 1 to 50 (default 20).
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// A search result.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserSummary {
    pub id: Uuid,
    pub display_name: String,
    pub avatar_url: String,
}

/// The sort key of a search result: the lower-cased name, then the id.
fn search_key((p, name): &(Profile, String)) -> (String, Uuid) {
    (name.clone(), p.user_id)
}

/// Finds users by the beginning of their display name.
#[utoipa::path(get, path = "/v1/users", tag = "users", security(("bearer" = [])), params(SearchQuery),
    responses((status = 200, body = Page<UserSummary>), (status = 422, body = Problem, content_type = "application/problem+json")))]
async fn search(
    State(state): State<AppState>,
    me: Me,
    query: Option<Query<SearchQuery>>,
) -> Result<Json<Page<UserSummary>>, UsersError> {
    let q = query.map(|q| q.0).unwrap_or(SearchQuery { q: None, limit: None, cursor: None });
    let page = PageRequest::<(String, Uuid)>::parse(q.limit, q.cursor.as_deref())?;
    let prefix = key_of(q.q.as_deref().unwrap_or("").trim());
    if prefix.chars().count() > 32 {
        return Err(UsersError::invalid("q must be at most 32 characters".to_owned()));
    }
    let rows = state
        .store
        .search(&prefix, Some(me.caller.user_id), &[Status::Active], page.after.clone(), page.sql_limit())
        .await?;
    Ok(Json(Page::of(rows, &page, search_key, |(p, _)| UserSummary {
        id: p.user_id,
        display_name: p.display_name.clone(),
        avatar_url: avatar_url(&p),
    })))
}

/// A friend, with their online status when they share it with friends.
#[derive(Debug, Serialize, ToSchema)]
pub struct Friend {
    #[serde(flatten)]
    pub profile: PublicProfile,
    pub since: DateTime<Utc>,
}

/// The caller's friends.
#[utoipa::path(get, path = "/v1/users/me/friends", tag = "friends", security(("bearer" = [])),
    responses((status = 200, body = Vec<Friend>)))]
async fn list_friends(State(state): State<AppState>, me: Me) -> Result<Json<Vec<Friend>>, UsersError> {
    let id = me.caller.user_id;
    let friends = state
        .store
        .relations(id)
        .await?
        .into_iter()
        .filter(|r| r.state == "accepted" && r.other.status == Status::Active)
        .map(|r| Friend { profile: public_view(&r.other, id, true, None), since: r.since })
        .collect();
    Ok(Json(friends))
}

/// A pending request.
#[derive(Debug, Serialize, ToSchema)]
pub struct FriendRequest {
    pub user: UserSummary,
    pub since: DateTime<Utc>,
}

/// Pending friend requests, to and from the caller.
#[derive(Debug, Serialize, ToSchema)]
pub struct FriendRequests {
    pub incoming: Vec<FriendRequest>,
    pub outgoing: Vec<FriendRequest>,
}

/// Pending friend requests.
#[utoipa::path(get, path = "/v1/users/me/friends/requests", tag = "friends", security(("bearer" = [])),
    responses((status = 200, body = FriendRequests)))]
async fn list_requests(State(state): State<AppState>, me: Me) -> Result<Json<FriendRequests>, UsersError> {
    let id = me.caller.user_id;
    let mut out = FriendRequests { incoming: Vec::new(), outgoing: Vec::new() };
    for r in state
        .store
        .relations(id)
        .await?
        .into_iter()
        .filter(|r| r.state == "pending" && r.other.status == Status::Active)
    {
        let entry = FriendRequest {
            user: UserSummary {
                id: r.other.user_id,
                display_name: r.other.display_name.clone(),
                avatar_url: avatar_url(&r.other),
            },
            since: r.since,
        };
        if r.requested_by == id { out.outgoing.push(entry) } else { out.incoming.push(entry) }
    }
    Ok(Json(out))
}

/// Whom to ask.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRequest {
    #[schema(required = true)]
    pub user_id: Option<Uuid>,
}

/// The state of a friendship after a request.
#[derive(Debug, Serialize, ToSchema)]
pub struct RequestResult {
    /// `requested`, or `friends` when they had asked you first.
    pub state: &'static str,
}

/// Asks a user to be friends. If they had already asked the caller, the two
/// become friends.
#[utoipa::path(post, path = "/v1/users/me/friends/requests", tag = "friends", security(("bearer" = [])), request_body = NewRequest,
    responses((status = 201, body = RequestResult), (status = 200, description = "Now friends", body = RequestResult),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json")))]
async fn send_request(
    State(state): State<AppState>,
    me: Me,
    Json(req): Json<NewRequest>,
) -> Result<(StatusCode, Json<RequestResult>), UsersError> {
    let id = me.caller.user_id;
    let Some(other) = req.user_id else {
        return Err(UsersError::from(FieldErrors::single("user_id", "is required")));
    };
    if other == id {
        return Err(UsersError::invalid("you cannot send a friend request to yourself".to_owned()));
    }
    let target = state
        .store
        .profile(other)
        .await?
        .filter(|p| p.status == Status::Active)
        .ok_or_else(UsersError::no_such_user)?;
    if state.store.blocked(other, id).await? {
        return Err(UsersError::forbidden("this user does not accept friend requests from you".to_owned()));
    }
    if state.store.blocked(id, other).await? {
        return Err(UsersError::conflict("you have blocked this user; unblock them first".to_owned()));
    }
    let pending_from_them = state.store.relation(id, other).await?.is_some_and(|(s, by)| s == "pending" && by == other);
    if target.privacy.friend_requests != Audience::Everyone && !pending_from_them {
        return Err(UsersError::forbidden("this user does not accept friend requests".to_owned()));
    }
    let outcome = state.store.request_friend(id, other, Utc::now()).await?;
    match outcome {
        RequestOutcome::Requested => Ok((StatusCode::CREATED, Json(RequestResult { state: "requested" }))),
        RequestOutcome::Accepted => Ok((StatusCode::OK, Json(RequestResult { state: "friends" }))),
        RequestOutcome::AlreadyRequested => Err(UsersError::conflict("you have already asked this user".to_owned())),
        RequestOutcome::AlreadyFriends => Err(UsersError::conflict("you are already friends".to_owned())),
        RequestOutcome::Blocked => {
            Err(UsersError::forbidden("this user does not accept friend requests from you".to_owned()))
        }
    }
}

/// Accepts the request a user sent the caller.
#[utoipa::path(post, path = "/v1/users/me/friends/requests/{id}/accept", tag = "friends", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 200, body = RequestResult), (status = 404, body = Problem, content_type = "application/problem+json")))]
async fn accept_request(
    State(state): State<AppState>,
    me: Me,
    Path(other): Path<Uuid>,
) -> Result<Json<RequestResult>, UsersError> {
    let id = me.caller.user_id;
    let now = Utc::now();
    let event = FriendshipChanged { actor: id, other, state: FriendshipState::Accepted, changed_at: now };
    if !state.store.accept_friend(id, other, now, &event).await? {
        return Err(UsersError::not_found("no pending request from this user"));
    }
    Ok(Json(RequestResult { state: "friends" }))
}

/// Which relation a decline, cancel or removal ends.
struct Ending {
    /// `pending` or `accepted`.
    row_state: &'static str,
    /// For requests: who must have sent it.
    requested_by: Option<Uuid>,
    event: FriendshipState,
    /// The 404's words when there is nothing to end.
    missing: &'static str,
}

async fn end(state: &AppState, me: Uuid, other: Uuid, ending: Ending) -> Result<StatusCode, UsersError> {
    let event = FriendshipChanged { actor: me, other, state: ending.event, changed_at: Utc::now() };
    if !state.store.end_relation(me, other, ending.row_state, ending.requested_by, &event).await? {
        return Err(UsersError::not_found(ending.missing));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Declines the request a user sent the caller.
#[utoipa::path(post, path = "/v1/users/me/friends/requests/{id}/decline", tag = "friends", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 204), (status = 404, body = Problem, content_type = "application/problem+json")))]
async fn decline_request(
    State(state): State<AppState>,
    me: Me,
    Path(other): Path<Uuid>,
) -> Result<StatusCode, UsersError> {
    let ending = Ending {
        row_state: "pending",
        requested_by: Some(other),
        event: FriendshipState::Declined,
        missing: "no pending request from this user",
    };
    end(&state, me.caller.user_id, other, ending).await
}

/// Withdraws a request the caller sent.
#[utoipa::path(delete, path = "/v1/users/me/friends/requests/{id}", tag = "friends", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 204), (status = 404, body = Problem, content_type = "application/problem+json")))]
async fn cancel_request(
    State(state): State<AppState>,
    me: Me,
    Path(other): Path<Uuid>,
) -> Result<StatusCode, UsersError> {
    let id = me.caller.user_id;
    let ending = Ending {
        row_state: "pending",
        requested_by: Some(id),
        event: FriendshipState::Cancelled,
        missing: "no pending request to this user",
    };
    end(&state, id, other, ending).await
}

/// Ends a friendship.
#[utoipa::path(delete, path = "/v1/users/me/friends/{id}", tag = "friends", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 204), (status = 404, body = Problem, content_type = "application/problem+json")))]
async fn remove_friend(
    State(state): State<AppState>,
    me: Me,
    Path(other): Path<Uuid>,
) -> Result<StatusCode, UsersError> {
    let ending = Ending {
        row_state: "accepted",
        requested_by: None,
        event: FriendshipState::Removed,
        missing: "you are not friends with this user",
    };
    end(&state, me.caller.user_id, other, ending).await
}

/// Someone the caller blocked.
#[derive(Debug, Serialize, ToSchema)]
pub struct Blocked {
    pub user: UserSummary,
    pub since: DateTime<Utc>,
}

/// The users the caller blocked.
#[utoipa::path(get, path = "/v1/users/me/blocks", tag = "blocks", security(("bearer" = [])), responses((status = 200, body = Vec<Blocked>)))]
async fn list_blocks(State(state): State<AppState>, me: Me) -> Result<Json<Vec<Blocked>>, UsersError> {
    let list = state
        .store
        .blocks(me.caller.user_id)
        .await?
        .into_iter()
        .map(|(p, since)| Blocked {
            user: UserSummary { id: p.user_id, display_name: p.display_name.clone(), avatar_url: avatar_url(&p) },
            since,
        })
        .collect();
    Ok(Json(list))
}

/// Blocks a user: they can no longer see the caller's profile or ask to be
/// friends, and any friendship ends. Chat and game learn it from
/// `user_blocked`.
#[utoipa::path(put, path = "/v1/users/me/blocks/{id}", tag = "blocks", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 204), (status = 404, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json")))]
async fn block(State(state): State<AppState>, me: Me, Path(other): Path<Uuid>) -> Result<StatusCode, UsersError> {
    let id = me.caller.user_id;
    if other == id {
        return Err(UsersError::invalid("you cannot block yourself".to_owned()));
    }
    state.store.profile(other).await?.filter(|p| p.status != Status::Erased).ok_or_else(UsersError::no_such_user)?;
    let now = Utc::now();
    state.store.block(id, other, now, &UserBlocked { blocker: id, blocked: other, blocked_at: now }).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Lifts a block.
#[utoipa::path(delete, path = "/v1/users/me/blocks/{id}", tag = "blocks", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 204)))]
async fn unblock(State(state): State<AppState>, me: Me, Path(other): Path<Uuid>) -> Result<StatusCode, UsersError> {
    let id = me.caller.user_id;
    let event = UserUnblocked { blocker: id, blocked: other, unblocked_at: Utc::now() };
    state.store.unblock(id, other, &event).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AdminQuery {
    pub q: Option<String>,
    /// `active`, `banned`, `erased` or `all` (default).
    pub status: Option<String>,
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

/// Lists and searches every profile (administrators).
#[utoipa::path(get, path = "/v1/users/admin/users", tag = "admin", security(("bearer" = [])), params(AdminQuery),
    responses((status = 200, body = Page<MyProfile>), (status = 403, body = Problem, content_type = "application/problem+json")))]
async fn admin_list(
    State(state): State<AppState>,
    _admin: Authorized<Admin>,
    query: Option<Query<AdminQuery>>,
) -> Result<Json<Page<MyProfile>>, UsersError> {
    let q = query.map(|q| q.0).unwrap_or(AdminQuery { q: None, status: None, limit: None, cursor: None });
    let page = PageRequest::<(String, Uuid)>::parse(q.limit, q.cursor.as_deref())?;
    let statuses = match q.status.as_deref() {
        None | Some("all") => vec![Status::Active, Status::Banned, Status::Erased],
        Some("active") => vec![Status::Active],
        Some("banned") => vec![Status::Banned],
        Some("erased") => vec![Status::Erased],
        Some(other) => {
            return Err(UsersError::invalid(format!("status must be active, banned, erased or all, not {other:?}")));
        }
    };
    let prefix = key_of(q.q.as_deref().unwrap_or("").trim());
    let rows = state.store.search(&prefix, None, &statuses, page.after.clone(), page.sql_limit()).await?;
    Ok(Json(Page::of(rows, &page, search_key, |(p, _)| MyProfile::from(&p))))
}

/// Any profile, whole (administrators).
#[utoipa::path(get, path = "/v1/users/admin/users/{id}", tag = "admin", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 200, body = MyProfile), (status = 404, body = Problem, content_type = "application/problem+json")))]
async fn admin_get(
    State(state): State<AppState>,
    _admin: Authorized<Admin>,
    Path(id): Path<Uuid>,
) -> Result<Json<MyProfile>, UsersError> {
    let p = state.store.profile(id).await?.ok_or_else(UsersError::no_such_user)?;
    Ok(Json(MyProfile::from(&p)))
}

/// Why a user is banned.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BanRequest {
    #[schema(required = true)]
    pub reason: Option<String>,
}

/// Bans a user: their profile disappears for others, and auth disables the
/// account (through `user_banned`).
#[utoipa::path(post, path = "/v1/users/admin/users/{id}/ban", tag = "admin", security(("bearer" = [])), params(("id" = Uuid, Path)), request_body = BanRequest,
    responses((status = 200, body = MyProfile), (status = 404, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json")))]
async fn admin_ban(
    State(state): State<AppState>,
    Authorized(admin, _): Authorized<Admin>,
    Path(id): Path<Uuid>,
    Json(req): Json<BanRequest>,
) -> Result<Json<MyProfile>, UsersError> {
    let reason = req.reason.unwrap_or_default().trim().to_owned();
    if reason.is_empty() || reason.chars().count() > 500 {
        return Err(UsersError::from(FieldErrors::single("reason", "is required, at most 500 characters")));
    }
    if id == admin.user_id {
        return Err(UsersError::invalid("you cannot ban yourself".to_owned()));
    }
    let now = Utc::now();
    let event = UserBanned { user_id: id, banned_by: admin.user_id, reason: reason.clone(), banned_at: now };
    if !state.store.set_ban(id, Some(&reason), now, Some(&event)).await? {
        return Err(UsersError::no_such_user());
    }
    tracing::info!(user_id = %id, admin = %admin.user_id, "user banned");
    let p = state.store.profile(id).await?.ok_or_else(UsersError::no_such_user)?;
    Ok(Json(MyProfile::from(&p)))
}

/// Lifts a ban (the account must be re-enabled in auth separately).
#[utoipa::path(post, path = "/v1/users/admin/users/{id}/unban", tag = "admin", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 200, body = MyProfile), (status = 404, body = Problem, content_type = "application/problem+json")))]
async fn admin_unban(
    State(state): State<AppState>,
    _admin: Authorized<Admin>,
    Path(id): Path<Uuid>,
) -> Result<Json<MyProfile>, UsersError> {
    if !state.store.set_ban(id, None, Utc::now(), None::<&UserBanned>).await? {
        return Err(UsersError::no_such_user());
    }
    let p = state.store.profile(id).await?.ok_or_else(UsersError::no_such_user)?;
    Ok(Json(MyProfile::from(&p)))
}
