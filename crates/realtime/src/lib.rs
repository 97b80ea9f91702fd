//! Realtime: every client's one WebSocket, and the channels services push to.
//!
//! Clients speak the Centrifugo client protocol (v2, JSON), so its SDKs —
//! `centrifuge` on npm, `centrifuge-python` on PyPI, and the Go, Dart,
//! Swift, Java and C# ones — work unchanged. A client connects with its
//! access token, subscribes to channels it may read (its own `user:<id>`;
//! `chat:`, `game:` and `tournament:` channels as their owners grant), and
//! receives publications in order, recovering what it missed across a
//! reconnect. Services publish with `POST /v1/realtime/publish`.
//! See `docs/realtime.md`.
//!
//! - the wire format: [`protocol`]; channel names and permissions: [`domain`]
//! - channels, history and fan-out: [`hub`]; one connection: [`session`]
//! - asking a channel's owner, forwarding rpc: [`owners`]; HTTP: [`api`]

pub mod api;
pub mod channels;
pub mod domain;
pub mod hub;
pub mod metrics;
pub mod owners;
pub mod presence;
pub mod protocol;
pub mod revocations;
pub mod session;
pub mod shared;

use std::sync::Arc;
use std::time::Duration;

use kit::http::{Server, Worker};
use kit::service::Setup;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;
use utoipa_axum::router::OpenApiRouter;

use crate::channels::Channels;
use crate::hub::HistoryLimits;
use crate::metrics::Metrics;
use crate::owners::Owners;
use crate::session::Limits;

/// Largest message a client may send, and largest publication: 64 KiB.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// Realtime's settings: `[realtime]` in `panal.toml`, `PANAL_REALTIME__*`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// Time a new socket has to send its connect command, in milliseconds.
    pub connect_timeout_ms: u64,
    /// Seconds between the server's pings (the SDKs expect 25).
    pub ping_interval_secs: u64,
    /// Seconds a client has to answer a ping.
    pub pong_timeout_secs: u64,
    /// Frames queued for one connection before it counts as too slow and is closed.
    pub send_queue: usize,
    /// Subscriptions one connection may hold.
    pub max_subscriptions: usize,
    /// Commands per second one connection may send (bursts of twice that).
    pub commands_per_second: u32,
    /// Publications kept per channel for recovery and history.
    pub history_size: usize,
    /// Seconds a publication is kept.
    pub history_ttl_secs: u64,
    /// This process's name on the bus, for following revocations: every
    /// replica needs its own (each must hear every revocation).
    pub instance_id: String,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            connect_timeout_ms: 5_000,
            ping_interval_secs: 25,
            pong_timeout_secs: 10,
            send_queue: 256,
            max_subscriptions: 128,
            commands_per_second: 50,
            history_size: 100,
            history_ttl_secs: 300,
            instance_id: "realtime".to_owned(),
        }
    }
}

/// What realtime's connections and handlers share.
pub struct State {
    pub(crate) channels: Channels,
    /// Cancelled (and replaced) when this replica may have missed
    /// publications (its Redis link dropped): every connection is closed
    /// with 3010 and its SDK reconnects and recovers.
    pub(crate) resync: std::sync::Mutex<CancellationToken>,
    pub(crate) verifier: Arc<kit::auth::TokenVerifier>,
    pub(crate) owners: Owners,
    pub(crate) limits: Limits,
    pub(crate) metrics: Metrics,
    /// Open connections by session, for revocations.
    pub(crate) sessions: revocations::Sessions,
    /// Who is connected here, announced to users.
    pub(crate) presence: Arc<presence::Presence>,
    pub(crate) bus: kit::bus::Bus,
    pub(crate) instance_id: String,
    /// Cancelled when the service stops: every connection closes with 3001.
    pub(crate) shutdown: CancellationToken,
}

pub(crate) type AppState = Arc<State>;

impl State {
    /// Sends every connection here to reconnect (3010): they may have
    /// missed publications.
    pub(crate) fn resync_all(&self) {
        let fresh = CancellationToken::new();
        let old = std::mem::replace(&mut *self.resync.lock().unwrap_or_else(std::sync::PoisonError::into_inner), fresh);
        old.cancel();
    }

    pub(crate) fn resync_token(&self) -> CancellationToken {
        self.resync.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }
}

/// The realtime service.
pub struct Realtime;

impl kit::Service for Realtime {
    const NAME: &'static str = "realtime";
    /// A live batch carries up to 2,000 frames of a few hundred bytes.
    const BODY_LIMITS: &'static [(&'static str, usize)] = &[("/v1/realtime/publish/live", 4 * 1024 * 1024)];
    const FOLLOWS: &'static [&'static str] = &[
        <contracts::auth::SessionRevoked as contracts::Event>::TYPE,
        <contracts::realtime::Publication as contracts::Event>::TYPE,
    ];
    type Settings = Settings;
    type State = State;

    fn validate(s: &Settings) -> anyhow::Result<()> {
        if s.ping_interval_secs == 0 || s.pong_timeout_secs == 0 || s.send_queue == 0 || s.commands_per_second == 0 {
            anyhow::bail!(
                "invalid configuration: realtime's ping_interval_secs, pong_timeout_secs, send_queue and commands_per_second must be above 0"
            );
        }
        Ok(())
    }

    async fn state(setup: Setup<Settings>) -> anyhow::Result<State> {
        let s = &setup.settings;
        let limits = Limits {
            connect_timeout: Duration::from_millis(s.connect_timeout_ms),
            ping_interval: Duration::from_secs(s.ping_interval_secs),
            pong_timeout: Duration::from_secs(s.pong_timeout_secs),
            send_queue: s.send_queue,
            max_subscriptions: s.max_subscriptions,
            commands_per_second: s.commands_per_second,
        };
        let history = HistoryLimits { size: s.history_size, ttl: Duration::from_secs(s.history_ttl_secs) };
        Ok(State {
            channels: Channels::new(
                history,
                setup.ctx.config.settings.redis_url.as_ref().map(|s| s.expose().as_str()),
            )?,
            resync: std::sync::Mutex::new(CancellationToken::new()),
            verifier: setup.verifier.clone(),
            owners: Owners::new(&setup.ctx)?,
            limits,
            metrics: Metrics::default(),
            sessions: revocations::Sessions::default(),
            presence: Arc::new(presence::Presence::new(s.instance_id.clone())),
            bus: setup.ctx.bus.clone(),
            instance_id: s.instance_id.clone(),
            shutdown: CancellationToken::new(),
        })
    }

    fn routes(state: &Arc<State>) -> OpenApiRouter {
        api::router(state.clone())
    }

    fn workers(state: &Arc<State>) -> Vec<Worker> {
        let sweeper = state.clone();
        let closer = state.clone();
        let consumer = format!("{}-revocations", state.instance_id);
        let publisher = state.clone();
        let mut workers: Vec<Worker> = vec![
            revocations::worker(state.clone(), state.bus.clone(), consumer),
            state.presence.clone().worker(state.bus.clone()),
            // Publications services recorded in their outboxes. One consumer
            // for every replica: each publication is taken once, by one of
            // them.
            kit::bus::follow::<contracts::realtime::Publication, _, _>(
                state.bus.clone(),
                "realtime-publications".to_owned(),
                move |p| {
                    let state = publisher.clone();
                    async move { api::publish_recorded(&state, p).await }
                },
            ),
            // Channels nobody listens to whose history expired are dropped.
            Box::new(move |stop: CancellationToken| {
                Box::pin(async move {
                    loop {
                        tokio::select! {
                            () = stop.cancelled() => return,
                            () = tokio::time::sleep(Duration::from_secs(10)) => sweeper.channels.sweep().await,
                        }
                    }
                })
            }),
            // Upgraded sockets outlive the HTTP server's graceful stop: they
            // are told to go (3001, the SDKs reconnect elsewhere).
            Box::new(move |stop: CancellationToken| {
                Box::pin(async move {
                    stop.cancelled().await;
                    closer.shutdown.cancel();
                })
            }),
        ];
        if let Some(shared) = state.channels.shared.clone() {
            let (hub, listener) = (state.channels.hub.clone(), state.clone());
            let (renewer, renewed) = (shared.clone(), hub.clone());
            workers.push(Box::new(move |stop: CancellationToken| {
                Box::pin(shared.listen(hub, move || listener.resync_all(), stop))
            }));
            workers.push(Box::new(move |stop: CancellationToken| Box::pin(renewer.renew_presence(renewed, stop))));
        }
        workers
    }

    fn finish(mut server: Server, state: &Arc<State>) -> anyhow::Result<Server> {
        state.metrics.register(server.metrics_mut().registry_mut(), &state.channels.hub);
        Ok(server)
    }
}
