//! Rooms: creating and finding them, joining and leaving, invitations,
//! roles, kicks, bans, mutes, and each room's audit log.

use axum::extract::State;
use axum::http::StatusCode;
use chrono::Utc;
use kit::extract::{Path, Query};
use kit::page::{Page, PageRequest};
use kit::{Fail, FieldErrors, Json, Problem};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::{MemberView, RoomView, actor, membership, room};
use crate::AppState;
use crate::domain::{self, MemberAction, Role, Visibility};
use crate::error::ChatError;
use crate::store::{Audit, AuditEntry, Conversation};
use kit::auth::Caller;

/// A new room.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRoom {
    /// 1 to 40 characters, unique without regard to case.
    #[schema(example = "pong-lovers")]
    pub name: String,
    #[schema(example = "Everything Pong")]
    pub topic: Option<String>,
    pub visibility: Visibility,
    /// Required for a `password` room: 4 to 128 bytes.
    #[schema(example = "let me in")]
    pub password: Option<String>,
}

/// Checks a room password and hashes it (Argon2id, off the async threads).
async fn hash_password(password: Option<&str>, errors: &mut FieldErrors) -> Result<Option<String>, ChatError> {
    let Some(password) = password else {
        errors.add("password", "is required for a password-protected room");
        return Ok(None);
    };
    if !(domain::MIN_PASSWORD..=domain::MAX_PASSWORD).contains(&password.len()) {
        errors.add("password", format!("must be {} to {} bytes", domain::MIN_PASSWORD, domain::MAX_PASSWORD));
        return Ok(None);
    }
    let password = password.to_owned();
    let hashed = tokio::task::spawn_blocking(move || {
        use argon2::PasswordHasher;
        argon2::Argon2::default().hash_password(password.as_bytes()).map(|h| h.to_string())
    })
    .await
    .map_err(ChatError::internal)?
    .map_err(|e| ChatError::internal(anyhow::anyhow!("hashing a room password: {e}")))?;
    Ok(Some(hashed))
}

async fn verify_password(hash: &str, password: &str) -> Result<bool, ChatError> {
    let (hash, password) = (hash.to_owned(), password.to_owned());
    tokio::task::spawn_blocking(move || {
        use argon2::PasswordVerifier;
        argon2::Argon2::default().verify_password(password.as_bytes(), hash.as_str()).is_ok()
    })
    .await
    .map_err(ChatError::internal)
}

/// Creates a room; the caller owns it.
#[utoipa::path(post, path = "/v1/chat/rooms", tag = "rooms", security(("bearer" = [])), request_body = CreateRoom,
    responses((status = 201, body = RoomView),
        (status = 409, description = "A room with this name exists", body = Problem, content_type = "application/problem+json")))]
pub(super) async fn create_room(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<CreateRoom>,
) -> Result<(StatusCode, Json<RoomView>), ChatError> {
    let mut errors = FieldErrors::new();
    let name = errors.check("name", domain::parse_room_name(&body.name));
    let topic = errors.check("topic", domain::parse_topic(body.topic.as_deref().unwrap_or("")));
    let password = match body.visibility {
        Visibility::Password => hash_password(body.password.as_deref(), &mut errors).await?,
        _ if body.password.is_some() => {
            errors.add("password", "only a password-protected room takes one");
            None
        }
        _ => None,
    };
    errors.finish()?;
    let (Some(name), Some(topic)) = (name, topic) else { return Err(ChatError::invalid("invalid room")) };
    let owned = state.store.rooms_owned(caller.user_id).await?;
    if owned >= i64::from(state.settings.rooms_per_user) {
        return Err(ChatError::invalid(format!(
            "you own {owned} rooms, the most one user may; hand one over or leave it first"
        )));
    }
    let room = state
        .store
        .create_room(caller.user_id, &name, &topic, body.visibility, password.as_deref(), Utc::now())
        .await?;
    Ok((StatusCode::CREATED, Json(RoomView::of(&room, 1, Some(Role::Owner)))))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DirectoryQuery {
    /// Part of the name (without regard to case).
    pub q: Option<String>,
    /// 1 to 50 (default 20).
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// Public and password-protected rooms, by name (private ones are not listed).
#[utoipa::path(get, path = "/v1/chat/rooms", tag = "rooms", security(("bearer" = [])), params(DirectoryQuery),
    responses((status = 200, body = Page<RoomView>)))]
pub(super) async fn directory(
    State(state): State<AppState>,
    _caller: Caller,
    query: Option<Query<DirectoryQuery>>,
) -> Result<Json<Page<RoomView>>, ChatError> {
    let q = query.map(|q| q.0).unwrap_or(DirectoryQuery { q: None, limit: None, cursor: None });
    let page = PageRequest::<String>::parse(q.limit, q.cursor.as_deref())?;
    let needle = q.q.unwrap_or_default();
    if needle.chars().count() > domain::MAX_ROOM_NAME {
        return Err(FieldErrors::single("q", format!("must be at most {} characters", domain::MAX_ROOM_NAME)).into());
    }
    let rows = state.store.directory(needle.trim(), page.after.as_deref(), page.sql_limit()).await?;
    Ok(Json(Page::of(
        rows,
        &page,
        |r| domain::room_name_key(r.conversation.name.as_deref().unwrap_or("")),
        |r| RoomView::of(&r.conversation, r.members, None),
    )))
}

/// A room: any listed room, or a private one the caller belongs to.
#[utoipa::path(get, path = "/v1/chat/rooms/{id}", tag = "rooms", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 200, body = RoomView),
        (status = 404, description = "No such room (or a private one the caller is not in)", body = Problem, content_type = "application/problem+json")))]
pub(super) async fn get_room(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<Json<RoomView>, ChatError> {
    let room = room(&state, id).await?;
    let me = state.store.member(id, caller.user_id).await?;
    if me.is_none() && room.visibility == Some(Visibility::Private) && !state.store.invited(id, caller.user_id).await? {
        return Err(ChatError::no_such_conversation());
    }
    let members = state.store.member_count(id).await?;
    Ok(Json(RoomView::of(&room, members, me.map(|m| m.role))))
}

/// Changes to a room; what is absent stays.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateRoom {
    #[schema(example = "Finals tonight")]
    pub topic: Option<String>,
    /// 0 (off) to 86400.
    #[schema(example = 10)]
    pub slow_mode_secs: Option<u32>,
    /// The owner only; `password` requires `password`.
    pub visibility: Option<Visibility>,
    #[schema(example = "let me in")]
    pub password: Option<String>,
}

/// Changes a room's topic and slow mode (admins), or who may join (the owner).
#[utoipa::path(patch, path = "/v1/chat/rooms/{id}", tag = "rooms", security(("bearer" = [])), params(("id" = Uuid, Path)),
    request_body = UpdateRoom,
    responses((status = 200, body = RoomView),
        (status = 403, description = "Not allowed to", body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json")))]
pub(super) async fn update_room(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
    Json(body): Json<UpdateRoom>,
) -> Result<Json<RoomView>, ChatError> {
    let room = room(&state, id).await?;
    let (_, me) = membership(&state, id, caller.user_id).await?;
    let mut errors = FieldErrors::new();
    let topic = body.topic.as_deref().and_then(|t| errors.check("topic", domain::parse_topic(t)));
    let slow = body.slow_mode_secs.filter(|s| {
        let ok = *s <= domain::MAX_SLOW_MODE_SECS;
        if !ok {
            errors.add("slow_mode_secs", format!("must be 0 to {}", domain::MAX_SLOW_MODE_SECS));
        }
        ok
    });
    let password = match (body.visibility, &body.password) {
        (Some(Visibility::Password), p) => hash_password(p.as_deref(), &mut errors).await?,
        (_, Some(_)) => {
            errors.add("password", "only goes with `visibility: password`");
            None
        }
        _ => None,
    };
    errors.finish()?;
    let who = actor(&caller, Some(&me));
    if topic.is_some() || slow.is_some() {
        domain::may_configure(who, false)?;
    }
    if body.visibility.is_some() {
        domain::may_configure(who, true)?;
    }
    let entry = AuditEntry {
        conversation: Some(id),
        actor: caller.user_id,
        action: "configure",
        target_user: None,
        target_message: None,
        detail: "",
    };
    let slow = slow.map(|s| i32::try_from(s).unwrap_or(i32::MAX));
    let access = body.visibility.map(|v| (v, password.as_deref()));
    state.store.configure(&entry, topic.as_deref(), slow, access, Utc::now()).await?;
    let updated = state.store.conversation(id).await?.unwrap_or(room);
    let members = state.store.member_count(id).await?;
    Ok(Json(RoomView::of(&updated, members, Some(me.role))))
}

/// Joining a room.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JoinRoom {
    /// For a password-protected room.
    #[schema(example = "let me in")]
    pub password: Option<String>,
}

/// Joins a room: a public one (body `{}`), a password one with its
/// password, a private one with an invitation. Joining twice is harmless.
#[utoipa::path(post, path = "/v1/chat/rooms/{id}/join", tag = "rooms", security(("bearer" = [])), params(("id" = Uuid, Path)),
    request_body = JoinRoom,
    responses((status = 200, body = RoomView),
        (status = 403, description = "Banned, or a wrong password", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such room (or a private one without an invitation)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The room is full", body = Problem, content_type = "application/problem+json")))]
pub(super) async fn join(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
    Json(body): Json<JoinRoom>,
) -> Result<Json<RoomView>, ChatError> {
    let room = room(&state, id).await?;
    let user = caller.user_id;
    if let Some(me) = state.store.member(id, user).await? {
        let members = state.store.member_count(id).await?;
        return Ok(Json(RoomView::of(&room, members, Some(me.role))));
    }
    let invited = state.store.invited(id, user).await?;
    match room.visibility {
        Some(Visibility::Private) if !invited => return Err(ChatError::no_such_conversation()),
        _ if state.store.banned(id, user).await? => return Err(ChatError::forbidden("you are banned from this room")),
        Some(Visibility::Password) if !invited => {
            let hash = room.password_hash.as_deref().unwrap_or("");
            let given = body.password.as_deref().unwrap_or("");
            if given.len() > domain::MAX_PASSWORD || !verify_password(hash, given).await? {
                return Err(ChatError::forbidden("wrong password for this room"));
            }
        }
        _ => {}
    }
    let members = state.store.member_count(id).await?;
    if members >= i64::from(state.settings.max_room_members) {
        return Err(ChatError::conflict("this room is full"));
    }
    state.store.join(id, user, Utc::now()).await?;
    Ok(Json(RoomView::of(&room, members + 1, Some(Role::Member))))
}

/// Leaves a room. The owner hands it over first, unless they are the last
/// one in it (then the room closes).
#[utoipa::path(post, path = "/v1/chat/rooms/{id}/leave", tag = "rooms", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 204),
        (status = 403, description = "Not a member", body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The owner must hand the room over first", body = Problem, content_type = "application/problem+json")))]
pub(super) async fn leave(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, ChatError> {
    room(&state, id).await?;
    let (_, me) = membership(&state, id, caller.user_id).await?;
    if me.role == Role::Owner && state.store.member_count(id).await? > 1 {
        return Err(ChatError::conflict("the owner hands the room over (PUT …/members/{user}/role) before leaving"));
    }
    state.store.remove_member(id, caller.user_id, "member_left", None).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The members of a room the caller belongs to.
#[utoipa::path(get, path = "/v1/chat/rooms/{id}/members", tag = "rooms", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 200, body = Vec<MemberView>),
        (status = 403, description = "Not a member", body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json")))]
pub(super) async fn members(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<Json<Vec<MemberView>>, ChatError> {
    room(&state, id).await?;
    membership(&state, id, caller.user_id).await?;
    Ok(Json(state.store.members(id).await?.iter().map(MemberView::from).collect()))
}

/// The room and the caller's standing in it, for acting on `target`:
/// their membership (`None`: a platform moderator who is not in the room).
async fn acting(
    state: &AppState,
    caller: &Caller,
    id: Uuid,
    action: MemberAction,
    target: Uuid,
) -> Result<Conversation, ChatError> {
    let room = room(state, id).await?;
    let me = match membership(state, id, caller.user_id).await {
        Ok((_, me)) => Some(me),
        Err(_) if super::is_moderator(caller) => None,
        Err(e) => return Err(e),
    };
    if target == caller.user_id {
        return Err(ChatError::conflict("you cannot do this to yourself"));
    }
    let target_role = state.store.member(id, target).await?.map(|m| m.role);
    domain::may_act(actor(caller, me.as_ref()), action, target_role)?;
    Ok(room)
}

fn entry<'a>(caller: &Caller, room: Uuid, action: &'a str, target: Uuid, detail: &'a str) -> AuditEntry<'a> {
    AuditEntry {
        conversation: Some(room),
        actor: caller.user_id,
        action,
        target_user: Some(target),
        target_message: None,
        detail,
    }
}

/// Removes a member (admins remove members; the owner anyone; never the owner).
#[utoipa::path(delete, path = "/v1/chat/rooms/{id}/members/{user}", tag = "rooms", security(("bearer" = [])),
    params(("id" = Uuid, Path), ("user" = Uuid, Path)),
    responses((status = 204),
        (status = 403, description = "Not allowed to", body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not a member, or yourself", body = Problem, content_type = "application/problem+json")))]
pub(super) async fn kick(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, user)): Path<(Uuid, Uuid)>,
) -> Result<StatusCode, ChatError> {
    acting(&state, &caller, id, MemberAction::Kick, user).await?;
    let audit = entry(&caller, id, "kick", user, "");
    state.store.remove_member(id, user, "member_kicked", Some((&audit, Utc::now()))).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetRole {
    /// `admin`, `member`, or `owner` (hands the room over; the old owner becomes an admin).
    pub role: Role,
}

/// Names an admin, makes an admin a member again, or hands the room over (the owner only).
#[utoipa::path(put, path = "/v1/chat/rooms/{id}/members/{user}/role", tag = "rooms", security(("bearer" = [])),
    params(("id" = Uuid, Path), ("user" = Uuid, Path)), request_body = SetRole,
    responses((status = 204),
        (status = 403, description = "Not allowed to", body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not a member, or yourself", body = Problem, content_type = "application/problem+json")))]
pub(super) async fn set_role(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, user)): Path<(Uuid, Uuid)>,
    Json(body): Json<SetRole>,
) -> Result<StatusCode, ChatError> {
    let action = match body.role {
        Role::Owner => MemberAction::TransferOwnership,
        Role::Admin => MemberAction::Promote,
        Role::Member => MemberAction::Demote,
    };
    acting(&state, &caller, id, action, user).await?;
    let what = match body.role {
        Role::Owner => "transfer_ownership",
        Role::Admin => "promote",
        Role::Member => "demote",
    };
    state.store.set_role(&entry(&caller, id, what, user, ""), user, body.role, Utc::now()).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Mute {
    /// 1 to 2592000 (thirty days).
    #[schema(example = 600)]
    pub seconds: u32,
}

/// Mutes a member for a while: they read but cannot post.
#[utoipa::path(put, path = "/v1/chat/rooms/{id}/members/{user}/mute", tag = "rooms", security(("bearer" = [])),
    params(("id" = Uuid, Path), ("user" = Uuid, Path)), request_body = Mute,
    responses((status = 204),
        (status = 403, description = "Not allowed to", body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not a member, or yourself", body = Problem, content_type = "application/problem+json")))]
pub(super) async fn mute(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, user)): Path<(Uuid, Uuid)>,
    Json(body): Json<Mute>,
) -> Result<StatusCode, ChatError> {
    if !(1..=domain::MAX_MUTE_SECS).contains(&body.seconds) {
        return Err(FieldErrors::single("seconds", format!("must be 1 to {}", domain::MAX_MUTE_SECS)).into());
    }
    acting(&state, &caller, id, MemberAction::Mute, user).await?;
    let now = Utc::now();
    let until = now + chrono::Duration::seconds(i64::from(body.seconds));
    let detail = format!("{} s", body.seconds);
    state.store.mute(&entry(&caller, id, "mute", user, &detail), user, Some(until), now).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Lifts a mute.
#[utoipa::path(delete, path = "/v1/chat/rooms/{id}/members/{user}/mute", tag = "rooms", security(("bearer" = [])),
    params(("id" = Uuid, Path), ("user" = Uuid, Path)),
    responses((status = 204),
        (status = 403, description = "Not allowed to", body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not a member, or yourself", body = Problem, content_type = "application/problem+json")))]
pub(super) async fn unmute(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, user)): Path<(Uuid, Uuid)>,
) -> Result<StatusCode, ChatError> {
    acting(&state, &caller, id, MemberAction::Mute, user).await?;
    state.store.mute(&entry(&caller, id, "unmute", user, ""), user, None, Utc::now()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A ban in a room.
#[derive(Debug, Serialize, ToSchema)]
pub struct BanView {
    pub user_id: Uuid,
    #[schema(example = "Mallory")]
    pub display_name: Option<String>,
    pub banned_by: Uuid,
    #[schema(example = "spam")]
    pub reason: String,
    pub banned_at: chrono::DateTime<Utc>,
}

/// Who is banned from a room (its admins and platform moderators).
#[utoipa::path(get, path = "/v1/chat/rooms/{id}/bans", tag = "rooms", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 200, body = Vec<BanView>),
        (status = 403, description = "Not a room admin", body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json")))]
pub(super) async fn bans(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<Json<Vec<BanView>>, ChatError> {
    room_admin(&state, &caller, id).await?;
    let list = state
        .store
        .bans(id)
        .await?
        .into_iter()
        .map(|b| BanView {
            user_id: b.user_id,
            display_name: b.display_name,
            banned_by: b.banned_by,
            reason: b.reason,
            banned_at: b.banned_at,
        })
        .collect();
    Ok(Json(list))
}

/// 403 unless the caller is an admin of room `id` or a platform moderator.
async fn room_admin(state: &AppState, caller: &Caller, id: Uuid) -> Result<(), ChatError> {
    room(state, id).await?;
    if super::is_moderator(caller) {
        return Ok(());
    }
    let (_, me) = membership(state, id, caller.user_id).await?;
    if me.role < Role::Admin {
        return Err(ChatError::forbidden("this needs a room admin"));
    }
    Ok(())
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
// Users has a `BanRequest` (a platform ban); the merged document is one namespace.
#[schema(as = RoomBanRequest)]
pub struct BanRequest {
    /// Up to 500 characters; kept in the audit log.
    #[schema(example = "spam")]
    pub reason: Option<String>,
}

/// Bans a user from a room (a member is removed; anyone can be banned ahead).
#[utoipa::path(put, path = "/v1/chat/rooms/{id}/bans/{user}", tag = "rooms", security(("bearer" = [])),
    params(("id" = Uuid, Path), ("user" = Uuid, Path)), request_body = BanRequest,
    responses((status = 204),
        (status = 403, description = "Not allowed to", body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Yourself", body = Problem, content_type = "application/problem+json")))]
pub(super) async fn ban(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, user)): Path<(Uuid, Uuid)>,
    Json(body): Json<BanRequest>,
) -> Result<StatusCode, ChatError> {
    let reason = body.reason.unwrap_or_default();
    let reason = domain::parse_reason(&reason).map_err(|e| FieldErrors::single("reason", e))?;
    acting(&state, &caller, id, MemberAction::Ban, user).await?;
    let audit = entry(&caller, id, "ban", user, &reason);
    state.store.remove_member(id, user, "member_banned", Some((&audit, Utc::now()))).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Lifts a ban.
#[utoipa::path(delete, path = "/v1/chat/rooms/{id}/bans/{user}", tag = "rooms", security(("bearer" = [])),
    params(("id" = Uuid, Path), ("user" = Uuid, Path)),
    responses((status = 204),
        (status = 403, description = "Not a room admin", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such room, or no such ban", body = Problem, content_type = "application/problem+json")))]
pub(super) async fn unban(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, user)): Path<(Uuid, Uuid)>,
) -> Result<StatusCode, ChatError> {
    room_admin(&state, &caller, id).await?;
    if !state.store.unban(&entry(&caller, id, "unban", user, ""), user, Utc::now()).await? {
        return Err(ChatError::not_found("that user is not banned here"));
    }
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Invite {
    pub user_id: Uuid,
}

/// Invites a user into a room (in a private room, admins invite). The
/// invitee is told on their own channel — unless they blocked the caller,
/// in which case nothing reaches them (and the caller is not told).
#[utoipa::path(post, path = "/v1/chat/rooms/{id}/invitations", tag = "rooms", security(("bearer" = [])),
    params(("id" = Uuid, Path)), request_body = Invite,
    responses((status = 204),
        (status = 403, description = "Not allowed to", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such room or user", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Already a member, or banned here", body = Problem, content_type = "application/problem+json")))]
pub(super) async fn invite(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
    Json(body): Json<Invite>,
) -> Result<StatusCode, ChatError> {
    let room = room(&state, id).await?;
    let (_, me) = membership(&state, id, caller.user_id).await?;
    if room.visibility == Some(Visibility::Private) && me.role < Role::Admin {
        return Err(ChatError::forbidden("in a private room, admins invite"));
    }
    let user = body.user_id;
    if !state.store.person_exists(user).await? {
        return Err(ChatError::not_found("no such user"));
    }
    if state.store.member(id, user).await?.is_some() {
        return Err(ChatError::conflict("that user is already a member"));
    }
    if state.store.banned(id, user).await? {
        return Err(ChatError::conflict("that user is banned from this room; lift the ban first"));
    }
    if state.store.blocked(user, caller.user_id).await? {
        return Ok(StatusCode::NO_CONTENT);
    }
    state.store.invite(&room, user, caller.user_id, Utc::now()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// An invitation waiting for the caller's answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct InvitationView {
    pub room_id: Uuid,
    #[schema(example = "pong-lovers")]
    pub room_name: String,
    pub invited_by: super::Person,
    pub invited_at: chrono::DateTime<Utc>,
}

/// The caller's invitations (accept by joining, decline by deleting).
#[utoipa::path(get, path = "/v1/chat/invitations", tag = "rooms", security(("bearer" = [])),
    responses((status = 200, body = Vec<InvitationView>)))]
pub(super) async fn invitations(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<InvitationView>>, ChatError> {
    let list = state
        .store
        .invitations(caller.user_id)
        .await?
        .into_iter()
        .map(|i| InvitationView {
            room_id: i.conversation_id,
            room_name: i.room_name,
            invited_by: super::person(i.invited_by, i.inviter_name.as_ref(), None),
            invited_at: i.invited_at,
        })
        .collect();
    Ok(Json(list))
}

/// Declines an invitation.
#[utoipa::path(delete, path = "/v1/chat/invitations/{room}", tag = "rooms", security(("bearer" = [])),
    params(("room" = Uuid, Path)),
    responses((status = 204), (status = 404, description = "No such invitation", body = Problem, content_type = "application/problem+json")))]
pub(super) async fn decline(
    State(state): State<AppState>,
    caller: Caller,
    Path(room): Path<Uuid>,
) -> Result<StatusCode, ChatError> {
    if !state.store.decline(room, caller.user_id).await? {
        return Err(ChatError::not_found("no such invitation"));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// A moderation action, as the audit log keeps it.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditView {
    pub id: Uuid,
    pub conversation_id: Option<Uuid>,
    pub actor_id: Uuid,
    /// `kick`, `ban`, `unban`, `mute`, `unmute`, `promote`, `demote`,
    /// `transfer_ownership`, `configure`, `delete_message`, `resolve_report`.
    #[schema(example = "ban")]
    pub action: String,
    pub target_user: Option<Uuid>,
    pub target_message: Option<Uuid>,
    #[schema(example = "spam")]
    pub detail: String,
    pub at: chrono::DateTime<Utc>,
}

impl From<Audit> for AuditView {
    fn from(a: Audit) -> Self {
        Self {
            id: a.id,
            conversation_id: a.conversation_id,
            actor_id: a.actor_id,
            action: a.action,
            target_user: a.target_user,
            target_message: a.target_message,
            detail: a.detail,
            at: a.at,
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    /// 1 to 50 (default 20).
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// The room's moderation log, newest first (its admins and platform moderators).
#[utoipa::path(get, path = "/v1/chat/rooms/{id}/audit", tag = "rooms", security(("bearer" = [])),
    params(("id" = Uuid, Path), PageQuery),
    responses((status = 200, body = Page<AuditView>),
        (status = 403, description = "Not a room admin", body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json")))]
pub(super) async fn room_audit(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
    query: Option<Query<PageQuery>>,
) -> Result<Json<Page<AuditView>>, ChatError> {
    room_admin(&state, &caller, id).await?;
    audit_page(&state, Some(id), query).await
}

pub(super) async fn audit_page(
    state: &AppState,
    room: Option<Uuid>,
    query: Option<Query<PageQuery>>,
) -> Result<Json<Page<AuditView>>, ChatError> {
    let q = query.map(|q| q.0).unwrap_or(PageQuery { limit: None, cursor: None });
    let page = PageRequest::<Uuid>::parse(q.limit, q.cursor.as_deref())?;
    let rows = state.store.audit_log(room, page.after, page.sql_limit()).await?;
    Ok(Json(Page::of(rows, &page, |a| a.id, AuditView::from)))
}
