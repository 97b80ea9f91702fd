//! Users' HTTP API: where each request lands, by area.
//!
//! - the caller's and others' profiles, search: [`profiles`]
//! - avatars: [`avatars`]
//! - friends and requests: [`friends`]
//! - blocks: [`blocks`]
//! - moderation: [`admin`]
//! - GDPR export and erasure: [`gdpr`]
//!
//! The views here are shared by several areas.

mod admin;
mod avatars;
mod blocks;
mod friends;
mod gdpr;
mod profiles;

use axum::extract::FromRequestParts;
use axum::http::{HeaderValue, header};
use chrono::{DateTime, Utc};
use kit::auth::Caller;
use kit::{Fail, Problem};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::AppState;
use crate::domain::{Between, Direction, Privacy, Profile, Status};
use crate::error::UsersError;
use crate::events;

pub use gdpr::FRESH_LOGIN_SECS;

pub(crate) fn router(state: AppState) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(profiles::get_me, profiles::update_me, gdpr::erase_me))
        .routes(routes!(gdpr::export_me))
        .routes(routes!(avatars::upload_avatar, avatars::remove_avatar))
        .routes(routes!(avatars::get_avatar))
        .routes(routes!(profiles::get_profile))
        .routes(routes!(profiles::search))
        .routes(routes!(friends::list_friends))
        .routes(routes!(friends::list_requests, friends::send_request))
        .routes(routes!(friends::accept_request))
        .routes(routes!(friends::decline_request))
        .routes(routes!(friends::cancel_request))
        .routes(routes!(friends::remove_friend))
        .routes(routes!(blocks::list_blocks))
        .routes(routes!(blocks::block, blocks::unblock))
        .routes(routes!(admin::admin_list))
        .routes(routes!(admin::admin_get))
        .routes(routes!(admin::admin_ban))
        .routes(routes!(admin::admin_unban))
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
        // Profiles are made from auth's `user_registered`, a moment after
        // sign-up: until then the service is, for this caller, not ready yet.
        let profile = state.store.profile(caller.user_id).await?.ok_or_else(|| {
            UsersError::from(
                Problem::new(http::StatusCode::SERVICE_UNAVAILABLE)
                    .with_type("profile-pending", "Profile not ready")
                    .with_detail("your profile is being created; retry in a moment")
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
    events::avatar_url(p.user_id, p.avatar_etag.as_deref().unwrap_or(&crate::avatars::default_etag(p.user_id)))
}

/// A profile as its owner sees it.
#[derive(Debug, Serialize, ToSchema)]
pub struct MyProfile {
    pub id: Uuid,
    #[schema(example = "Ada")]
    pub display_name: String,
    #[schema(example = "Pong since 1972.")]
    pub bio: String,
    #[schema(example = "en")]
    pub locale: Option<String>,
    #[schema(example = "Europe/Madrid")]
    pub timezone: Option<String>,
    pub privacy: Privacy,
    #[schema(example = "/v1/users/01a23ce5-3f4f-7d4b-8ada-5bdc3de59327/avatar?v=3")]
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
    pub request: Option<Direction>,
    /// You have blocked them.
    pub blocked: bool,
}

impl Relationship {
    fn of(between: &Between, viewer: Uuid) -> Self {
        Self { friends: between.friends(), request: between.request(viewer), blocked: between.viewer_blocked }
    }
}

/// A user in a list: search results, requests, blocks.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserSummary {
    pub id: Uuid,
    #[schema(example = "Ada")]
    pub display_name: String,
    #[schema(example = "/v1/users/01a23ce5-3f4f-7d4b-8ada-5bdc3de59327/avatar?v=3")]
    pub avatar_url: String,
}

impl From<&Profile> for UserSummary {
    fn from(p: &Profile) -> Self {
        Self { id: p.user_id, display_name: p.display_name.clone(), avatar_url: avatar_url(p) }
    }
}

/// A profile that exists for everyone: not banned, not erased.
fn active(profile: Option<Profile>) -> Result<Profile, UsersError> {
    profile.filter(|p| p.status == Status::Active).ok_or_else(UsersError::no_such_user)
}

/// A profile as someone else sees it: only what its owner made visible.
#[derive(Debug, Serialize, ToSchema)]
pub struct PublicProfile {
    pub id: Uuid,
    #[schema(example = "Ada")]
    pub display_name: String,
    #[schema(example = "/v1/users/01a23ce5-3f4f-7d4b-8ada-5bdc3de59327/avatar?v=3")]
    pub avatar_url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "Pong since 1972.")]
    pub bio: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "en")]
    pub locale: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "Europe/Madrid")]
    pub timezone: Option<String>,
    /// Present when the owner lets the viewer see it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_seen_at: Option<DateTime<Utc>>,
    /// Connected to realtime now (any device), when the owner lets the
    /// viewer see it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub online: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub relationship: Option<Relationship>,
}

/// `online`: whether realtime vouches for the user now (see `Store::online`).
fn public_view(
    p: &Profile,
    viewer: Uuid,
    friends: bool,
    relationship: Option<Relationship>,
    online: bool,
) -> PublicProfile {
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
        online: show_status.then_some(online),
        relationship,
    }
}
