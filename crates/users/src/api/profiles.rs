//! The caller's profile, other users' profiles, and search.

use axum::extract::State;
use chrono::Utc;
use kit::extract::{Path, Query};
use kit::page::{Page, PageRequest};
use kit::{Fail, FieldErrors, Json, Problem};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::{Me, MyProfile, PublicProfile, Relationship, UserSummary, active, public_view};
use crate::AppState;
use crate::domain::{Audience, DisplayName, Privacy, Status, key_of, parse_bio, parse_locale, parse_timezone};
use crate::error::UsersError;
use crate::store::{Hit, ProfileChanges};

/// The caller's profile.
#[utoipa::path(get, path = "/v1/users/me", tag = "users", security(("bearer" = [])),
    responses((status = 200, body = MyProfile)))]
pub(super) async fn get_me(me: Me) -> Json<MyProfile> {
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
    /// 1 to 32 characters, no invisible characters, one writing system.
    #[schema(min_length = 1, max_length = 32, example = "Ada L")]
    pub display_name: Option<String>,
    /// Up to 500 characters.
    #[schema(max_length = 500, example = "Engines and poetry.")]
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
pub(super) async fn update_me(
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

/// A user's public profile: what its owner lets the caller see. A user who
/// blocked the caller does not exist for them.
#[utoipa::path(get, path = "/v1/users/{id}", tag = "users", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 200, body = PublicProfile), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub(super) async fn get_profile(
    State(state): State<AppState>,
    me: Me,
    Path(id): Path<Uuid>,
) -> Result<Json<PublicProfile>, UsersError> {
    let viewer = me.caller.user_id;
    let profile = active(state.store.profile(id).await?)?;
    let online = state.store.online(&[id], Utc::now()).await?.contains(&id);
    if id == viewer {
        return Ok(Json(public_view(&profile, viewer, false, None, online)));
    }
    let between = state.store.between(viewer, id).await?;
    if between.blocked_viewer {
        return Err(UsersError::no_such_user());
    }
    Ok(Json(public_view(&profile, viewer, between.friends(), Some(Relationship::of(&between, viewer)), online)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
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

/// The sort key of a search result: the lower-cased name, then the id.
pub(super) fn search_key(hit: &Hit) -> (String, Uuid) {
    (hit.sort_name.clone(), hit.profile.user_id)
}

/// Finds users by the beginning of their display name.
#[utoipa::path(get, path = "/v1/users", tag = "users", security(("bearer" = [])), params(SearchQuery),
    responses((status = 200, body = Page<UserSummary>), (status = 422, body = Problem, content_type = "application/problem+json")))]
pub(super) async fn search(
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
    Ok(Json(Page::of(rows, &page, search_key, |hit| UserSummary::from(&hit.profile))))
}
