//! Notify's HTTP API: the caller's inbox and preferences, the kinds, the
//! administrators' template preview, the caller's export.

use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use kit::auth::{Admin, Authorized, Caller, ServiceClient};
use kit::extract::{Path, Query};
use kit::{FieldErrors, Json, Problem};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::AppState;
use crate::domain::{self, Channel, Kind, LOCALES};
use crate::error::NotifyApiError;
use crate::store::Item;

pub(crate) fn router(state: AppState) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(inbox))
        .routes(routes!(read_one))
        .routes(routes!(read_all))
        .routes(routes!(preferences, set_preference))
        .routes(routes!(quiet_hours, set_quiet_hours, clear_quiet_hours))
        .routes(routes!(unsubscribe))
        .routes(routes!(kinds))
        .routes(routes!(preview))
        .routes(routes!(push_key))
        .routes(routes!(push_subscriptions, subscribe_push))
        .routes(routes!(unsubscribe_push))
        .routes(routes!(retry_delivery))
        .routes(routes!(security_mail))
        .routes(routes!(email_webhook))
        .routes(routes!(phone, set_phone, delete_phone))
        .routes(routes!(verify_phone))
        .routes(routes!(sms_webhook))
        .routes(routes!(export_notify_data))
        .with_state(state)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ItemView {
    pub id: Uuid,
    pub kind: Kind,
    #[schema(example = "Friend request")]
    pub title: String,
    #[schema(example = "Bob wants to be your friend.")]
    pub body: String,
    /// Where it leads in the web app.
    #[schema(example = "/friends")]
    pub link: Option<String>,
    pub created_at: DateTime<Utc>,
    pub read_at: Option<DateTime<Utc>>,
}

impl From<Item> for ItemView {
    fn from(i: Item) -> Self {
        Self {
            id: i.id,
            kind: Kind::parse(&i.kind).unwrap_or(Kind::FriendRequest),
            title: i.title,
            body: i.body,
            link: i.link,
            created_at: i.created_at,
            read_at: i.read_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct InboxPage {
    pub items: Vec<ItemView>,
    /// Unread items in all.
    #[schema(example = 3)]
    pub unread: i64,
    /// More items are older than the last: ask with `before` its id.
    #[schema(example = false)]
    pub has_more: bool,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct InboxQuery {
    /// 1 to 100 (default 20).
    pub limit: Option<u32>,
    /// Items older than this one.
    pub before: Option<Uuid>,
}

/// The caller's inbox, newest first, and how many are unread. New items
/// also arrive live on `user:<id>` as `{"type": "notification", …}`.
#[utoipa::path(get, path = "/v1/notify/inbox", operation_id = "notify_inbox", tag = "notify", security(("bearer" = [])),
    params(InboxQuery),
    responses((status = 200, body = InboxPage),
        (status = 422, description = "A limit out of 1–100", body = Problem, content_type = "application/problem+json")))]
async fn inbox(
    State(state): State<AppState>,
    caller: Caller,
    query: Option<Query<InboxQuery>>,
) -> Result<Json<InboxPage>, NotifyApiError> {
    let q = query.map(|q| q.0).unwrap_or(InboxQuery { limit: None, before: None });
    let limit = q.limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(FieldErrors::single("limit", "must be between 1 and 100").into());
    }
    let mut items = state.store.inbox(caller.user_id, q.before, i64::from(limit) + 1).await?;
    let has_more = items.len() > limit as usize;
    items.truncate(limit as usize);
    let unread = state.store.unread(caller.user_id).await?;
    Ok(Json(InboxPage { items: items.into_iter().map(ItemView::from).collect(), unread, has_more }))
}

/// Marks one item read.
#[utoipa::path(post, path = "/v1/notify/inbox/{id}/read", operation_id = "notify_read", tag = "notify", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 204, description = "Read"),
        (status = 404, description = "No such item in the caller's inbox", body = Problem, content_type = "application/problem+json")))]
async fn read_one(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, NotifyApiError> {
    if !state.store.read(caller.user_id, id, Utc::now()).await? {
        return Err(Problem::not_found("no such item in your inbox").into());
    }
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReadAll {
    /// Items that were unread.
    #[schema(example = 3)]
    pub marked: u64,
}

/// Marks every item read.
#[utoipa::path(post, path = "/v1/notify/inbox/read", operation_id = "notify_read_all", tag = "notify", security(("bearer" = [])),
    responses((status = 200, body = ReadAll)))]
async fn read_all(State(state): State<AppState>, caller: Caller) -> Result<Json<ReadAll>, NotifyApiError> {
    Ok(Json(ReadAll { marked: state.store.read_all(caller.user_id, Utc::now()).await? }))
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Preference {
    pub kind: Kind,
    pub channel: Channel,
    #[schema(example = true)]
    pub enabled: bool,
    /// A security message's e-mail: always sent, cannot be turned off.
    #[schema(example = false)]
    pub locked: bool,
}

async fn preferences_of(state: &AppState, user: Uuid) -> Result<Vec<Preference>, NotifyApiError> {
    let choices = state.store.choices(user).await?;
    let mut out = Vec::new();
    for kind in Kind::ALL {
        for &channel in kind.channels() {
            let choice = choices.iter().find(|c| c.0 == kind.as_str() && c.1 == channel.as_str()).map(|c| c.2);
            let locked = domain::locked(kind, channel);
            out.push(Preference { kind, channel, enabled: domain::enabled(kind, channel, choice), locked });
        }
    }
    Ok(out)
}

/// The caller's preferences: every kind on every channel it goes out on.
#[utoipa::path(get, path = "/v1/notify/preferences", operation_id = "notify_preferences", tag = "notify", security(("bearer" = [])),
    responses((status = 200, body = Vec<Preference>)))]
async fn preferences(State(state): State<AppState>, caller: Caller) -> Result<Json<Vec<Preference>>, NotifyApiError> {
    Ok(Json(preferences_of(&state, caller.user_id).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetPreference {
    pub kind: Kind,
    pub channel: Channel,
    #[schema(example = false)]
    pub enabled: bool,
}

/// Turns a kind on or off on a channel, for the caller (only ever their
/// own: there is no user in the request).
#[utoipa::path(put, path = "/v1/notify/preferences", operation_id = "notify_set_preference", tag = "notify", security(("bearer" = [])),
    request_body(content = SetPreference, example = json!({"kind": "friend_request", "channel": "email", "enabled": false})),
    responses((status = 200, body = Vec<Preference>),
        (status = 422, description = "An unknown kind or channel, a channel the kind does not use, or a security e-mail turned off", body = Problem, content_type = "application/problem+json")))]
async fn set_preference(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<SetPreference>,
) -> Result<Json<Vec<Preference>>, NotifyApiError> {
    if !body.kind.channels().contains(&body.channel) {
        return Err(FieldErrors::single("channel", "this kind does not go out on this channel").into());
    }
    if domain::locked(body.kind, body.channel) && !body.enabled {
        return Err(FieldErrors::single("enabled", "a security message cannot be turned off on this channel").into());
    }
    state.store.choose(caller.user_id, body.kind, body.channel, body.enabled, Utc::now()).await?;
    Ok(Json(preferences_of(&state, caller.user_id).await?))
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuietHours {
    /// Local time, `HH:MM`.
    #[schema(example = "22:00")]
    pub from: String,
    /// Local time, `HH:MM`; earlier than `from`: the window passes midnight.
    #[schema(example = "07:00")]
    pub to: String,
    /// An IANA time zone; absent: the profile's, else UTC.
    #[schema(example = "Europe/Madrid")]
    pub timezone: Option<String>,
}

/// The caller's quiet hours: no e-mail or push but security messages in
/// them; what they hold goes at their end.
#[utoipa::path(get, path = "/v1/notify/quiet-hours", operation_id = "notify_quiet_hours", tag = "notify", security(("bearer" = [])),
    responses((status = 200, body = QuietHours),
        (status = 404, description = "None set", body = Problem, content_type = "application/problem+json")))]
async fn quiet_hours(State(state): State<AppState>, caller: Caller) -> Result<Json<QuietHours>, NotifyApiError> {
    let (from, to, timezone) =
        state.store.quiet_hours(caller.user_id).await?.ok_or_else(|| Problem::not_found("no quiet hours set"))?;
    Ok(Json(QuietHours { from, to, timezone }))
}

/// Sets the caller's quiet hours.
#[utoipa::path(put, path = "/v1/notify/quiet-hours", operation_id = "notify_set_quiet_hours", tag = "notify", security(("bearer" = [])),
    request_body(content = QuietHours, example = json!({"from": "22:00", "to": "07:00", "timezone": "Europe/Madrid"})),
    responses((status = 200, body = QuietHours),
        (status = 422, description = "A time not `HH:MM`, an empty window, or an unknown time zone", body = Problem, content_type = "application/problem+json")))]
async fn set_quiet_hours(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<QuietHours>,
) -> Result<Json<QuietHours>, NotifyApiError> {
    let mut errors = FieldErrors::new();
    let (from, to) = (domain::parse_time(&body.from), domain::parse_time(&body.to));
    if from.is_none() {
        errors.add("from", "must be a time of day, HH:MM");
    }
    if to.is_none() {
        errors.add("to", "must be a time of day, HH:MM");
    }
    if from.is_some() && from == to {
        errors.add("to", "must differ from `from`: the window would be empty");
    }
    if body.timezone.as_deref().is_some_and(|tz| domain::parse_tz(tz).is_none()) {
        errors.add("timezone", "must be an IANA time zone, such as Europe/Madrid");
    }
    errors.finish()?;
    let (from, to) = (body.from.clone(), body.to.clone());
    state.store.set_quiet_hours(caller.user_id, &from, &to, body.timezone.as_deref(), Utc::now()).await?;
    Ok(Json(body))
}

/// Removes the caller's quiet hours.
#[utoipa::path(delete, path = "/v1/notify/quiet-hours", operation_id = "notify_clear_quiet_hours", tag = "notify", security(("bearer" = [])),
    responses((status = 204, description = "Removed"),
        (status = 404, description = "None set", body = Problem, content_type = "application/problem+json")))]
async fn clear_quiet_hours(State(state): State<AppState>, caller: Caller) -> Result<StatusCode, NotifyApiError> {
    if !state.store.clear_quiet_hours(caller.user_id).await? {
        return Err(Problem::not_found("no quiet hours set").into());
    }
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct UnsubscribeQuery {
    /// From the e-mail's `List-Unsubscribe` link.
    pub token: String,
}

/// One-click unsubscribe (RFC 8058): the address a mail client POSTs to
/// from an e-mail's `List-Unsubscribe` header turns that kind's e-mail off
/// for its recipient. No token needed (the link is signed); GET does
/// nothing, so a link scanner cannot unsubscribe anyone.
#[utoipa::path(post, path = "/v1/notify/unsubscribe", operation_id = "notify_unsubscribe", tag = "notify",
    params(UnsubscribeQuery),
    responses((status = 200, body = Preference),
        (status = 403, description = "A link notify did not sign, or altered", body = Problem, content_type = "application/problem+json")))]
async fn unsubscribe(
    State(state): State<AppState>,
    Query(q): Query<UnsubscribeQuery>,
) -> Result<Json<Preference>, NotifyApiError> {
    let (user, kind) = domain::read_unsubscribe_token(&state.unsubscribe_key, &q.token)
        .ok_or_else(|| Problem::forbidden("this unsubscribe link is not valid"))?;
    state.store.choose(user, kind, Channel::Email, false, Utc::now()).await?;
    Ok(Json(Preference { kind, channel: Channel::Email, enabled: false, locked: false }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct KindView {
    pub kind: Kind,
    pub channels: Vec<Channel>,
    /// Security messages: their e-mail is always sent.
    #[schema(example = false)]
    pub security: bool,
    /// The variables its templates get (besides `name` and `link`).
    #[schema(example = json!(["from"]))]
    pub variables: Vec<String>,
}

/// The kinds of notification.
#[utoipa::path(get, path = "/v1/notify/kinds", operation_id = "notify_kinds", tag = "notify", security(("bearer" = [])),
    responses((status = 200, body = Vec<KindView>)))]
async fn kinds(_caller: Caller) -> Json<Vec<KindView>> {
    Json(
        Kind::ALL
            .into_iter()
            .map(|kind| KindView {
                kind,
                channels: kind.channels().to_vec(),
                security: kind.security(),
                variables: kind.variables().iter().map(|v| (*v).to_owned()).collect(),
            })
            .collect(),
    )
}

/// A kind's templates rendered; each absent where the kind does not go out
/// on its channel.
#[derive(Debug, Serialize, ToSchema)]
pub struct Preview {
    #[schema(example = "Bob wants to be your friend on Panal")]
    pub subject: Option<String>,
    #[schema(example = "Friend request")]
    pub title: Option<String>,
    #[schema(example = "Bob wants to be your friend.")]
    pub body: Option<String>,
    #[schema(example = "Hello Ada,\n\nBob asked to be your friend on Panal.")]
    pub text: Option<String>,
    #[schema(example = "<p>Hello Ada,</p>")]
    pub html: Option<String>,
    #[schema(example = "Panal: Bob invites you to play Pong. http://localhost:8000/")]
    pub sms: Option<String>,
}

/// A kind's templates in a language, rendered with sample values
/// (administrators).
#[utoipa::path(get, path = "/v1/notify/admin/templates/{kind}/{locale}", operation_id = "notify_preview", tag = "notify",
    security(("bearer" = ["admin"])), params(("kind" = String, Path), ("locale" = String, Path)),
    responses((status = 200, body = Preview),
        (status = 403, description = "Not an administrator", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such kind, or no templates in that language", body = Problem, content_type = "application/problem+json")))]
async fn preview(
    _admin: Authorized<Admin>,
    Path((kind, locale)): Path<(String, String)>,
) -> Result<Json<Preview>, NotifyApiError> {
    let kind = Kind::parse(&kind).ok_or_else(|| Problem::not_found("no such kind"))?;
    if !LOCALES.contains(&locale.as_str()) {
        return Err(Problem::not_found(format!("no templates in {locale:?}; there are: {}", LOCALES.join(", "))).into());
    }
    let failed = |e: String| <NotifyApiError as kit::Fail>::internal(anyhow::anyhow!(e));
    let sample = kind.sample();
    let mut preview = Preview { subject: None, title: None, body: None, text: None, html: None, sms: None };
    if kind.channels().iter().any(|c| *c != Channel::Sms) {
        let r = crate::templates::render(kind, &locale, &sample).map_err(failed)?;
        (preview.subject, preview.title, preview.body) = (Some(r.subject), Some(r.title), Some(r.body));
        (preview.text, preview.html) = (Some(r.text), Some(r.html));
    }
    if kind.channels().contains(&Channel::Sms) {
        preview.sms = Some(crate::templates::render_sms(kind, &locale, &sample).map_err(failed)?);
    }
    Ok(Json(preview))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PushKey {
    /// Notify's VAPID public key (base64url, uncompressed P-256): the
    /// `applicationServerKey` a browser subscribes with.
    #[schema(example = "BP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A8")]
    pub public_key: String,
}

/// The key a browser subscribes to Web Push with
/// (`pushManager.subscribe({applicationServerKey})`).
#[utoipa::path(get, path = "/v1/notify/push/key", operation_id = "notify_push_key", tag = "notify", security(("bearer" = [])),
    responses((status = 200, body = PushKey)))]
async fn push_key(State(state): State<AppState>, _caller: Caller) -> Json<PushKey> {
    Json(PushKey { public_key: state.sender.pusher.vapid.public_key() })
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionKeys {
    /// The browser's P-256 public key, base64url.
    #[schema(example = "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4")]
    pub p256dh: String,
    /// The shared authentication secret, base64url (16 bytes).
    #[schema(example = "BTBZMqHH6r4Tts7J_aSIgg")]
    pub auth: String,
}

/// A browser's `PushSubscription.toJSON()`, and a name for the device.
#[derive(Debug, Deserialize, ToSchema)]
pub struct NewPushSubscription {
    /// The push service's address for this browser (https).
    #[schema(example = "https://fcm.googleapis.com/fcm/send/dGVzdA")]
    pub endpoint: String,
    pub keys: SubscriptionKeys,
    /// What the person calls the device (at most 100 characters).
    #[schema(example = "Firefox on my laptop")]
    pub device: Option<String>,
    /// Sent by browsers, unused.
    #[serde(default, rename = "expirationTime")]
    #[schema(value_type = Option<i64>, example = json!(null))]
    pub expiration_time: Option<serde_json::Value>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SubscriptionView {
    pub id: Uuid,
    #[schema(example = "https://fcm.googleapis.com/fcm/send/dGVzdA")]
    pub endpoint: String,
    #[schema(example = "Firefox on my laptop")]
    pub device: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl From<crate::store::Subscription> for SubscriptionView {
    fn from(s: crate::store::Subscription) -> Self {
        Self { id: s.id, endpoint: s.endpoint, device: s.device, created_at: s.created_at }
    }
}

/// The longest push endpoint taken.
const MAX_ENDPOINT: usize = 2048;

/// Subscribes one of the caller's browsers to Web Push: notifications
/// then also go there, encrypted for it. The same endpoint again replaces
/// the keys (and moves it to the caller, if another account had it).
#[utoipa::path(post, path = "/v1/notify/push/subscriptions", operation_id = "notify_subscribe_push", tag = "notify", security(("bearer" = [])),
    request_body(content = NewPushSubscription, example = json!({"endpoint": "https://fcm.googleapis.com/fcm/send/dGVzdA",
        "keys": {"p256dh": "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4", "auth": "BTBZMqHH6r4Tts7J_aSIgg"},
        "device": "Firefox on my laptop"})),
    responses((status = 201, body = SubscriptionView),
        (status = 422, description = "An endpoint not https or on a private address, keys that are not a P-256 key and a 16-byte secret, a device name too long", body = Problem, content_type = "application/problem+json")))]
async fn subscribe_push(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<NewPushSubscription>,
) -> Result<(StatusCode, Json<SubscriptionView>), NotifyApiError> {
    let mut errors = FieldErrors::new();
    match url::Url::parse(&body.endpoint) {
        _ if body.endpoint.len() > MAX_ENDPOINT => errors.add("endpoint", "must be at most 2048 bytes"),
        Ok(url) => {
            if let Some(problem) = state.sender.pusher.endpoint_problem(&url) {
                errors.add("endpoint", problem);
            }
        }
        Err(_) => errors.add("endpoint", "must be a URL"),
    }
    let keys = crate::push::BrowserKeys::parse(&body.keys.p256dh, &body.keys.auth)
        .map_err(|(field, message)| errors.add(field, message))
        .ok();
    let device = body.device.as_deref().map(str::trim).filter(|d| !d.is_empty());
    if device.is_some_and(|d| d.chars().count() > 100) {
        errors.add("device", "must be at most 100 characters");
    }
    errors.finish()?;
    let Some(keys) = keys else { return Err(FieldErrors::single("keys", "are invalid").into()) };
    let new =
        crate::store::NewSubscription { endpoint: &body.endpoint, p256dh: &keys.p256dh, auth: &keys.auth, device };
    let now = Utc::now();
    let id = state.store.subscribe(caller.user_id, &new, now).await?;
    let view = SubscriptionView { id, endpoint: body.endpoint, device: device.map(str::to_owned), created_at: now };
    Ok((StatusCode::CREATED, Json(view)))
}

/// The caller's browsers subscribed to Web Push.
#[utoipa::path(get, path = "/v1/notify/push/subscriptions", operation_id = "notify_push_subscriptions", tag = "notify", security(("bearer" = [])),
    responses((status = 200, body = Vec<SubscriptionView>)))]
async fn push_subscriptions(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<SubscriptionView>>, NotifyApiError> {
    let subs = state.store.subscriptions(caller.user_id).await?;
    Ok(Json(subs.into_iter().map(SubscriptionView::from).collect()))
}

/// Unsubscribes one of the caller's browsers.
#[utoipa::path(delete, path = "/v1/notify/push/subscriptions/{id}", operation_id = "notify_unsubscribe_push", tag = "notify", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 204, description = "Unsubscribed"),
        (status = 404, description = "No such subscription of the caller's", body = Problem, content_type = "application/problem+json")))]
async fn unsubscribe_push(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, NotifyApiError> {
    if !state.store.unsubscribe_browser(caller.user_id, id).await? {
        return Err(Problem::not_found("no such push subscription").into());
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Sends a failed delivery again from its first attempt, and removes its
/// dead letter (administrators; `panal events dead-letters` lists them
/// under `notify.sender`).
#[utoipa::path(post, path = "/v1/notify/admin/deliveries/{id}/retry", operation_id = "notify_retry_delivery", tag = "notify",
    security(("bearer" = ["admin"])), params(("id" = Uuid, Path)),
    responses((status = 204, description = "Pending again"),
        (status = 403, description = "Not an administrator", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No failed delivery with that id", body = Problem, content_type = "application/problem+json")))]
async fn retry_delivery(
    State(state): State<AppState>,
    _admin: Authorized<Admin>,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, NotifyApiError> {
    if !state.store.retry(id, Utc::now()).await? {
        return Err(Problem::not_found("no failed delivery with that id").into());
    }
    Ok(StatusCode::NO_CONTENT)
}

/// The scope a service client needs to hand notify a security mail (auth's).
pub const SECURITY_MAIL_SCOPE: &str = "notify:security_mail";

/// A mail auth hands over: the link it made (which signs its reader in),
/// the address, and how long the link lasts.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SecurityMail {
    /// `verify_email`, `password_reset` or `account_exists`.
    pub kind: Kind,
    pub user_id: Uuid,
    #[schema(example = "ada@example.com")]
    pub to: String,
    /// Absolute (auth's web app address).
    #[schema(example = "https://panal.example/verify-email#token=…")]
    pub link: String,
    /// How long the link is valid.
    #[schema(example = 30)]
    pub valid_for_minutes: Option<u64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MailAccepted {
    /// False when this id had been handed over already (nothing more is sent).
    #[schema(example = true)]
    pub new: bool,
}

/// Takes a security mail from auth (a service client with the
/// `notify:security_mail` scope) and sends it as soon as it can. The id is
/// auth's: the same call again sends nothing more. The link is wiped from
/// notify's database once the mail is sent or given up; it is never in an
/// event.
#[utoipa::path(put, path = "/v1/notify/security-mail/{id}", operation_id = "notify_security_mail", tag = "notify",
    security(("bearer" = [])), params(("id" = Uuid, Path)),
    request_body(content = SecurityMail, example = json!({"kind": "password_reset", "user_id": "0190f5f6-8d3c-7b4e-9f0a-1c2d3e4f5a6b",
        "to": "ada@example.com", "link": "https://panal.example/reset-password#token=abc", "valid_for_minutes": 30})),
    responses((status = 202, body = MailAccepted),
        (status = 403, description = "Not a service client with the notify:security_mail scope", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Not a security mail kind, a bad address or link", body = Problem, content_type = "application/problem+json")))]
async fn security_mail(
    State(state): State<AppState>,
    client: ServiceClient,
    Path(id): Path<Uuid>,
    Json(body): Json<SecurityMail>,
) -> Result<(StatusCode, Json<MailAccepted>), NotifyApiError> {
    client.require_scope(SECURITY_MAIL_SCOPE)?;
    let mut errors = FieldErrors::new();
    if !Kind::SECURITY_MAIL.contains(&body.kind) {
        errors.add("kind", "must be verify_email, password_reset or account_exists");
    }
    if body.to.parse::<lettre::message::Mailbox>().is_err() || body.to.len() > 254 {
        errors.add("to", "must be an e-mail address");
    }
    if !matches!(url::Url::parse(&body.link), Ok(u) if matches!(u.scheme(), "http" | "https")) || body.link.len() > 2048
    {
        errors.add("link", "must be an absolute http(s) URL");
    }
    if body.valid_for_minutes.is_some_and(|m| m > 60 * 24 * 30) {
        errors.add("valid_for_minutes", "must be at most 30 days");
    }
    errors.finish()?;
    let minutes = body.valid_for_minutes.unwrap_or(0);
    let vars = serde_json::json!({
        "to": body.to, "link": body.link, "minutes": minutes, "hours": minutes.div_ceil(60),
    });
    let new = state.store.direct(id, body.kind, Channel::Email, body.user_id, &vars, Utc::now()).await?;
    Ok((StatusCode::ACCEPTED, Json(MailAccepted { new })))
}

/// One event of the provider's report (SendGrid's Event Webhook shape; the
/// fields notify does not use are ignored).
#[derive(Debug, Deserialize, ToSchema)]
pub struct ProviderReport {
    /// The address the message went to.
    #[schema(example = "ada@example.com")]
    pub email: String,
    /// `delivered`, `bounce`, `dropped`, `spamreport` (others are ignored).
    #[schema(example = "bounce")]
    pub event: String,
    /// The message's `Message-ID`, which names notify's delivery.
    #[serde(rename = "smtp-id")]
    #[schema(example = "<0190f5f6-8d3c-7b4e-9f0a-1c2d3e4f5a6b@panal>")]
    pub smtp_id: Option<String>,
    /// A bounce's kind: `bounce` (the address does not exist) or `blocked`.
    #[serde(rename = "type")]
    #[schema(example = "bounce")]
    pub bounce_type: Option<String>,
    #[schema(example = "550 5.1.1 The email account that you tried to reach does not exist")]
    pub reason: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReportRecorded {
    /// Deliveries whose state moved.
    #[schema(example = 1)]
    pub recorded: usize,
}

/// Events in one call, at most.
const MAX_REPORTS: usize = 1000;

/// How far the signed timestamp may be from now (a replayed call is refused).
const WEBHOOK_SKEW_SECS: i64 = 600;

/// The e-mail provider's delivery events: delivered, bounced, complained.
/// Signed by the provider (ECDSA P-256 over the timestamp and the body,
/// `X-Twilio-Email-Event-Webhook-Signature` and `-Timestamp`, checked
/// with `notify.email_webhook_key`); no token. A hard bounce stops all
/// e-mail to the address, a complaint all but security mail.
#[utoipa::path(post, path = "/v1/notify/webhooks/email", operation_id = "notify_email_webhook", tag = "notify",
    request_body(content = Vec<ProviderReport>, example = json!([{"email": "ada@example.com", "event": "bounce", "type": "bounce",
        "smtp-id": "<0190f5f6-8d3c-7b4e-9f0a-1c2d3e4f5a6b@panal>", "reason": "550 5.1.1 no such user"}])),
    responses((status = 200, body = ReportRecorded),
        (status = 400, description = "Not a JSON array of events, or more than 1000", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "No valid signature, or a timestamp more than 10 minutes away", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No provider webhook is configured", body = Problem, content_type = "application/problem+json")))]
async fn email_webhook(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<ReportRecorded>, NotifyApiError> {
    let Some(key) = &state.webhook_key else {
        return Err(Problem::not_found("no e-mail provider webhook is configured (notify.email_webhook_key)").into());
    };
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let timestamp = header("x-twilio-email-event-webhook-timestamp");
    let signature = header("x-twilio-email-event-webhook-signature");
    let now = Utc::now();
    let fresh = timestamp.parse::<i64>().is_ok_and(|t| (now.timestamp() - t).abs() <= WEBHOOK_SKEW_SECS);
    if !fresh || !domain::webhook_signed(key, timestamp, &body, signature) {
        return Err(Problem::forbidden("the call is not signed by the e-mail provider, or is too old").into());
    }
    let reports: Vec<ProviderReport> = serde_json::from_slice(&body)
        .map_err(|e| Problem::bad_request(format!("the body is not a JSON array of events: {e}")))?;
    if reports.len() > MAX_REPORTS {
        return Err(Problem::bad_request(format!("at most {MAX_REPORTS} events in one call")).into());
    }
    let mut recorded = 0;
    for r in &reports {
        let Some(event) = domain::provider_event(&r.event, r.bounce_type.as_deref()) else { continue };
        if let Some(id) = r.smtp_id.as_deref().and_then(domain::delivery_of_message_id)
            && state.store.reported(id, event.status(), now).await?
        {
            recorded += 1;
        }
        let reason = match event {
            domain::ProviderEvent::Bounced { hard: true } => "bounce",
            domain::ProviderEvent::Complained => "complaint",
            _ => continue,
        };
        tracing::info!(reason, "the e-mail provider reported an address");
        state.store.suppress(&r.email, reason, r.reason.as_deref(), now).await?;
    }
    Ok(Json(ReportRecorded { recorded }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PhoneView {
    #[schema(example = "+34600123456")]
    pub number: String,
    /// Only a verified number gets SMS.
    #[schema(example = true)]
    pub verified: bool,
}

/// The caller's phone number for SMS.
#[utoipa::path(get, path = "/v1/notify/phone", operation_id = "notify_phone", tag = "notify", security(("bearer" = [])),
    responses((status = 200, body = PhoneView),
        (status = 404, description = "No number set", body = Problem, content_type = "application/problem+json")))]
async fn phone(State(state): State<AppState>, caller: Caller) -> Result<Json<PhoneView>, NotifyApiError> {
    let p = state.store.phone(caller.user_id).await?.ok_or_else(|| Problem::not_found("no phone number set"))?;
    Ok(Json(PhoneView { number: p.number, verified: p.verified_at.is_some() }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetPhone {
    /// E.164, `+` and the country code.
    #[schema(example = "+34 600 123 456")]
    pub number: String,
}

/// A new code, at most once a minute.
const PHONE_CODE_EVERY_SECS: i64 = 60;

/// Sets the caller's phone number and sends a six-digit code to it by SMS
/// (valid ten minutes, five tries); SMS go to it once the code is
/// confirmed (`POST /v1/notify/phone/verify`).
#[utoipa::path(put, path = "/v1/notify/phone", operation_id = "notify_set_phone", tag = "notify", security(("bearer" = [])),
    request_body(content = SetPhone, example = json!({"number": "+34600123456"})),
    responses((status = 202, body = PhoneView),
        (status = 409, description = "SMS is not configured on this platform", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Not an E.164 number", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "A code was sent less than a minute ago", body = Problem, content_type = "application/problem+json")))]
async fn set_phone(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<SetPhone>,
) -> Result<(StatusCode, Json<PhoneView>), NotifyApiError> {
    if state.sender.sms.is_none() {
        return Err(Problem::conflict("SMS is not configured on this platform").into());
    }
    let number = domain::parse_phone(&body.number)
        .ok_or_else(|| FieldErrors::single("number", "must be an international number: +, country code, number"))?;
    let now = Utc::now();
    let minutes = chrono::Duration::minutes(domain::PHONE_CODE_MINUTES);
    if let Some(expires) = state.store.phone(caller.user_id).await?.and_then(|p| p.code_expires_at) {
        let wait = (expires - minutes + chrono::Duration::seconds(PHONE_CODE_EVERY_SECS) - now).num_seconds();
        if wait > 0 {
            let retry = axum::http::HeaderValue::from(wait);
            return Err(Problem::new(StatusCode::TOO_MANY_REQUESTS)
                .with_detail("a code was sent less than a minute ago")
                .with_header(axum::http::header::RETRY_AFTER, retry)
                .into());
        }
    }
    let code = format!("{:06}", rand::random_range(0..1_000_000u32));
    let tag = domain::phone_code_tag(&state.unsubscribe_key, caller.user_id, &code);
    state.store.set_phone(caller.user_id, &number, &tag, now + minutes, now).await?;
    let vars = serde_json::json!({"code": code, "to": number});
    state.store.direct(Uuid::now_v7(), Kind::PhoneCode, Channel::Sms, caller.user_id, &vars, now).await?;
    Ok((StatusCode::ACCEPTED, Json(PhoneView { number, verified: false })))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyPhone {
    #[schema(example = "123456")]
    pub code: String,
}

/// Confirms the caller's number with the code sent to it.
#[utoipa::path(post, path = "/v1/notify/phone/verify", operation_id = "notify_verify_phone", tag = "notify", security(("bearer" = [])),
    request_body(content = VerifyPhone, example = json!({"code": "123456"})),
    responses((status = 200, body = PhoneView),
        (status = 404, description = "No number waiting for a code", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A wrong code, or one expired or tried five times (ask for a new one)", body = Problem, content_type = "application/problem+json")))]
async fn verify_phone(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<VerifyPhone>,
) -> Result<Json<PhoneView>, NotifyApiError> {
    let phone = state.store.phone(caller.user_id).await?;
    let Some((phone, tag, expires)) = phone
        .and_then(|p| Some((p.clone(), p.code_hash?, p.code_expires_at?)))
        .filter(|(p, ..)| p.verified_at.is_none())
    else {
        return Err(Problem::not_found("no phone number is waiting for a code").into());
    };
    let now = Utc::now();
    if expires <= now || phone.code_attempts >= domain::PHONE_CODE_TRIES {
        return Err(FieldErrors::single("code", "has expired or was tried too often; ask for a new one").into());
    }
    state.store.phone_code_tried(caller.user_id).await?;
    if !domain::phone_code_matches(&state.unsubscribe_key, caller.user_id, body.code.trim(), &tag) {
        return Err(FieldErrors::single("code", "is not the code sent").into());
    }
    state.store.phone_verified(caller.user_id, now).await?;
    Ok(Json(PhoneView { number: phone.number, verified: true }))
}

/// Removes the caller's phone number: no more SMS.
#[utoipa::path(delete, path = "/v1/notify/phone", operation_id = "notify_delete_phone", tag = "notify", security(("bearer" = [])),
    responses((status = 204, description = "Removed"),
        (status = 404, description = "No number set", body = Problem, content_type = "application/problem+json")))]
async fn delete_phone(State(state): State<AppState>, caller: Caller) -> Result<StatusCode, NotifyApiError> {
    if !state.store.delete_phone(caller.user_id).await? {
        return Err(Problem::not_found("no phone number set").into());
    }
    Ok(StatusCode::NO_CONTENT)
}

/// The SMS provider's status callback (Twilio's: form-encoded `MessageSid`
/// and `MessageStatus`, signed in `X-Twilio-Signature` with the auth
/// token over this URL and the parameters). `delivered` and
/// `undelivered`/`failed` move the delivery; the rest are noted only.
#[utoipa::path(post, path = "/v1/notify/webhooks/sms", operation_id = "notify_sms_webhook", tag = "notify",
    request_body(content = String, content_type = "application/x-www-form-urlencoded",
        example = "MessageSid=SM0123456789abcdef0123456789abcdef&MessageStatus=delivered"),
    responses((status = 204, description = "Recorded"),
        (status = 403, description = "Not signed with the provider's auth token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "SMS is not configured", body = Problem, content_type = "application/problem+json")))]
async fn sms_webhook(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Result<StatusCode, NotifyApiError> {
    let Some(provider) = &state.sender.sms else {
        return Err(Problem::not_found("SMS is not configured").into());
    };
    let params: Vec<(String, String)> = url::form_urlencoded::parse(&body).into_owned().collect();
    let signature = headers.get("x-twilio-signature").and_then(|v| v.to_str().ok()).unwrap_or_default();
    if !domain::twilio_signed(provider.auth_token().expose(), &provider.callback_url, &params, signature) {
        return Err(Problem::forbidden("the callback is not signed by the SMS provider").into());
    }
    let param = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let status = match param("MessageStatus") {
        Some("delivered") => Some("delivered"),
        Some("undelivered" | "failed") => Some("failed"),
        _ => None,
    };
    if let (Some(sid), Some(status)) = (param("MessageSid"), status) {
        state.store.sms_reported(sid, status, Utc::now()).await?;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// What notify holds about the caller: their address and language, their
/// choices, their inbox and every delivery to them (GDPR articles 15 and
/// 20). Erasure comes from users' `user_erased`.
#[utoipa::path(get, path = "/v1/notify/me/export", tag = "notify", security(("bearer" = [])),
    responses((status = 200, description = "Notify's part of the archive", body = Object)))]
async fn export_notify_data(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<serde_json::Value>, NotifyApiError> {
    let id = caller.user_id;
    let recipient = state.store.recipient(id).await?;
    let reported = match recipient.as_ref().and_then(|r| r.email.as_deref()) {
        Some(address) => state.store.suppression(address).await?,
        None => None,
    };
    let inbox: Vec<ItemView> = state.store.inbox(id, None, i64::MAX).await?.into_iter().map(ItemView::from).collect();
    Ok(Json(serde_json::json!({
        "recipient": recipient.map(|r| serde_json::json!({
            "email": r.email, "display_name": r.display_name, "locale": r.locale, "timezone": r.timezone,
        })),
        "preferences": preferences_of(&state, id).await?,
        "quiet_hours": state.store.quiet_hours(id).await?.map(|(from, to, timezone)| QuietHours { from, to, timezone }),
        "inbox": inbox,
        "deliveries": state.store.deliveries(id).await?,
        "email_reported_by_provider": reported,
        "phone": state.store.phone(id).await?.map(|p| PhoneView { number: p.number, verified: p.verified_at.is_some() }),
        "push_subscriptions": state.store.subscriptions(id).await?.into_iter().map(SubscriptionView::from).collect::<Vec<_>>(),
    })))
}
