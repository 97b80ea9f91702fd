//! Realtime's HTTP side: the clients' socket, and publishing for services.

use axum::extract::State;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::response::Response;
use kit::Json;
use kit::Problem;
use kit::auth::ServiceClient;
use kit::problem::FieldErrors;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::domain::Channel;
use crate::{AppState, MAX_MESSAGE_BYTES};

/// The scope a service client needs to publish.
pub const PUBLISH_SCOPE: &str = "realtime:publish";

pub fn router(state: AppState) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(socket))
        .routes(routes!(publish))
        .routes(routes!(publish_live))
        .with_state(state)
}

/// The clients' WebSocket: the Centrifugo client protocol v2, JSON format
/// (docs/realtime.md). The access token goes in the first command
/// (`connect`), not in the request.
#[utoipa::path(get, path = "/v1/ws", tag = "realtime",
    responses(
        (status = 101, description = "Switching to the WebSocket protocol"),
        (status = 400, description = "Not a WebSocket upgrade", body = Problem, content_type = "application/problem+json"),
        (status = 426, description = "Upgrade required", body = Problem, content_type = "application/problem+json"),
    ))]
async fn socket(
    State(state): State<AppState>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, Problem> {
    // Not an upgrade (a plain GET, a missing header): said as a problem
    // document, like every other refusal.
    let upgrade = upgrade.map_err(|rejection| Problem::new(rejection.status()).with_detail(rejection.body_text()))?;
    let shutdown = state.shutdown.clone();
    Ok(upgrade
        // The socket reads up to four times the limit, so that a message a
        // little over it is refused with its own close code (3511) rather
        // than a torn connection; beyond that the socket is cut.
        .max_message_size(4 * MAX_MESSAGE_BYTES)
        .max_frame_size(4 * MAX_MESSAGE_BYTES)
        // Small buffers: most connections are idle most of the time, and
        // tungstenite's default read buffer alone is 128 KiB per connection
        // (measured: 136 KiB per idle connection with it, 8.9 KiB with 1 KiB,
        // 7.7 KiB with 256 bytes; docs/benchmarks.md). It grows to hold a
        // larger frame, read 256 bytes at a time: clients send commands of a
        // few hundred bytes, so the extra reads are for rare large ones.
        .read_buffer_size(256)
        .write_buffer_size(0)
        .on_upgrade(move |socket| crate::session::run(socket, state, shutdown)))
}

/// A publication a service makes.
#[derive(Debug, Deserialize, ToSchema)]
pub struct PublishRequest {
    /// `user:<id>`, `chat:<room>`, `game:<match>`, `tournament:<id>`.
    #[schema(example = "user:01a23ce5-3f4f-7d4b-8ada-5bdc3de59327")]
    pub channel: String,
    /// Any JSON, delivered as it is.
    #[schema(value_type = Object, example = json!({"type": "friend_request", "from": "Ada"}))]
    pub data: Box<RawValue>,
}

impl PublishRequest {
    /// Its channel, when it names one and the data is within the limit;
    /// else what is wrong, under `prefix` + the field's name.
    fn check(&self, prefix: &str, errors: &mut FieldErrors) -> Option<Channel> {
        let Ok(channel) = Channel::parse(&self.channel) else {
            errors.add(&format!("{prefix}channel"), "is not a channel name (`user:<id>`, `chat:<room>`, …)");
            return None;
        };
        if self.data.get().len() > MAX_MESSAGE_BYTES {
            errors.add(&format!("{prefix}data"), "is over the 64 KiB message limit");
            return None;
        }
        Some(channel)
    }
}

/// Where the publication landed in the channel's stream.
#[derive(Debug, Serialize, ToSchema)]
pub struct Published {
    #[schema(example = 42)]
    pub offset: u64,
    #[schema(example = "9f3c1a2b7d4e")]
    pub epoch: String,
    /// Subscribers it was queued to (one realtime process); absent when
    /// replicas share channels through Redis (each delivers as Redis
    /// hands it the publication, after this answer).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = 2)]
    pub delivered: Option<usize>,
}

/// Publishes to a channel (a service client with the `realtime:publish` scope).
#[utoipa::path(post, path = "/v1/realtime/publish", tag = "realtime",
    security(("bearer" = [])),
    request_body = PublishRequest,
    responses(
        (status = 200, body = Published),
        (status = 403, description = "The token is not a service client's with the realtime:publish scope", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Redis (shared channels) cannot be reached; retry", body = Problem, content_type = "application/problem+json"),
    ))]
async fn publish(
    State(state): State<AppState>,
    client: ServiceClient,
    Json(request): Json<PublishRequest>,
) -> Result<Json<Published>, Problem> {
    client.require_scope(PUBLISH_SCOPE)?;
    let mut errors = FieldErrors::new();
    let channel = request.check("", &mut errors);
    errors.finish()?;
    let Some(channel) = channel else { return Err(FieldErrors::single("channel", "is not a channel name")) };
    let (position, delivered) = state
        .channels
        .publish(channel.as_str(), request.data, None, Vec::new())
        .await
        .map_err(|_| Problem::unavailable("realtime cannot reach Redis to publish; retry shortly", 1))?;
    state.metrics.publications.inc();
    state.metrics.deliveries.inc_by(delivered.unwrap_or(0) as u64);
    Ok(Json(Published { offset: position.offset, epoch: position.epoch, delivered }))
}

/// The most publications one live batch may carry.
pub const MAX_LIVE_BATCH: usize = 2_000;

/// Live state for many channels at once: what a game server sends 30 times
/// a second, one frame per match.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LiveBatch {
    /// Up to 2,000.
    pub publications: Vec<PublishRequest>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LivePublished {
    /// Publications taken.
    #[schema(example = 120)]
    pub published: usize,
    /// Subscribers they were queued to (this process; absent through Redis).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivered: Option<usize>,
}

/// Publishes live state to many channels in one request: ephemeral (no
/// offset, no history; whoever is subscribed now gets it; a client that
/// recovers never sees it). For state that the next publication replaces,
/// sent many times a second — a match's frames.
#[utoipa::path(post, path = "/v1/realtime/publish/live", tag = "realtime",
    security(("bearer" = [])),
    request_body = LiveBatch,
    responses(
        (status = 200, body = LivePublished),
        (status = 403, description = "The token is not a service client's with the realtime:publish scope", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A channel that is not one, data over 64 KiB, or over 2,000 publications", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Redis (shared channels) cannot be reached; retry", body = Problem, content_type = "application/problem+json"),
    ))]
async fn publish_live(
    State(state): State<AppState>,
    client: ServiceClient,
    Json(batch): Json<LiveBatch>,
) -> Result<Json<LivePublished>, Problem> {
    client.require_scope(PUBLISH_SCOPE)?;
    if batch.publications.len() > MAX_LIVE_BATCH {
        return Err(FieldErrors::single("publications", format!("at most {MAX_LIVE_BATCH} in one batch")));
    }
    let mut errors = FieldErrors::new();
    let mut checked = Vec::with_capacity(batch.publications.len());
    for (i, p) in batch.publications.into_iter().enumerate() {
        if let Some(channel) = p.check(&format!("publications[{i}]."), &mut errors) {
            checked.push((channel, p.data));
        }
    }
    errors.finish()?;
    let published = checked.len();
    let mut delivered = Some(0);
    for (channel, data) in checked {
        let d = state
            .channels
            .publish_ephemeral(channel.as_str(), data, &[])
            .await
            .map_err(|_| Problem::unavailable("realtime cannot reach Redis to publish; retry shortly", 1))?;
        delivered = delivered.zip(d).map(|(a, b)| a + b);
    }
    state.metrics.publications.inc_by(published as u64);
    state.metrics.deliveries.inc_by(delivered.unwrap_or(0) as u64);
    Ok(Json(LivePublished { published, delivered }))
}

/// Publishes what a service recorded on the bus (`panal.realtime.publication.v1`).
/// One that cannot be published (a channel that is not one, data over the
/// limit) is logged and dropped: retrying would not make it valid. One that
/// fails because Redis is away is retried (every second) until it goes
/// through or realtime stops: the next waits, so the order holds.
pub(crate) async fn publish_recorded(state: &AppState, p: contracts::realtime::Publication) {
    let Ok(channel) = Channel::parse(&p.channel) else {
        tracing::warn!(channel = %p.channel, "a recorded publication names no channel; dropped");
        return;
    };
    let data = match serde_json::value::to_raw_value(&p.data) {
        Ok(data) if data.get().len() <= MAX_MESSAGE_BYTES => data,
        _ => {
            tracing::warn!(channel = %p.channel, "a recorded publication is over the 64 KiB limit; dropped");
            return;
        }
    };
    let skip = p.skip_users.iter().map(ToString::to_string).collect::<Vec<_>>();
    loop {
        let published = if p.ephemeral {
            state.channels.publish_ephemeral(channel.as_str(), data.clone(), &skip).await
        } else {
            state.channels.publish(channel.as_str(), data.clone(), None, skip.clone()).await.map(|(_, d)| d)
        };
        match published {
            Ok(delivered) => {
                state.metrics.publications.inc();
                state.metrics.deliveries.inc_by(delivered.unwrap_or(0) as u64);
                return;
            }
            // Typing a second late is worthless: dropped.
            Err(_) if p.ephemeral => return,
            Err(_) => {
                tokio::select! {
                    () = state.shutdown.cancelled() => return,
                    () = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
                }
            }
        }
    }
}
