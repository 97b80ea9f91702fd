//! Sends the arena's frames to realtime: one request per broadcast with
//! every match's frame (`POST /v1/realtime/publish/live`), in game's own
//! name (a service client with `realtime:publish`). When realtime is slower
//! than the frames come, the ones in between are skipped: each frame
//! replaces the one before, so only the latest is worth sending.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kit::credentials::ServiceToken;
use kit::peer::{Credentials, PeerClient};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::arena::{Broadcast, Published};
use crate::metrics::Metrics;

/// `POST /v1/realtime/publish/live`'s body: the frames are raw JSON already,
/// written into it as they are.
#[derive(serde::Serialize)]
struct LiveBatch<'a> {
    publications: &'a [Published],
}

/// Frames per request.
const BATCH: usize = 1_000;

pub async fn run(
    mut frames: watch::Receiver<Arc<Broadcast>>,
    realtime: Arc<PeerClient>,
    token: Arc<ServiceToken>,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) {
    let mut last_seq = 0;
    let mut last_warning: Option<Instant> = None;
    let mut warn = |what: &str| {
        // At most one warning every ten seconds: 30 failures a second would
        // drown the log.
        if last_warning.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
            tracing::warn!(error = what, "frames could not be published to realtime");
            last_warning = Some(Instant::now());
        }
    };
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            changed = frames.changed() => if changed.is_err() { return },
        }
        let broadcast = frames.borrow_and_update().clone();
        metrics.skipped_broadcasts.inc_by(broadcast.seq.saturating_sub(last_seq + 1));
        last_seq = broadcast.seq;
        let bearer = match token.bearer().await {
            Ok(bearer) => bearer,
            Err(e) => {
                warn(&e.to_string());
                continue;
            }
        };
        // Realtime takes up to 2,000 a request.
        for chunk in broadcast.frames.chunks(BATCH) {
            let body = LiveBatch { publications: chunk };
            let path = "/v1/realtime/publish/live";
            match realtime.send(reqwest::Method::POST, path, Credentials::Bearer(&bearer), Some(&body)).await {
                Ok(r) if r.status().is_success() => {}
                Ok(r) if r.status() == reqwest::StatusCode::UNAUTHORIZED => {
                    token.forget().await;
                    warn("realtime refused game's token (401)");
                }
                Ok(r) => warn(&format!("realtime answered {}", r.status())),
                Err(e) => warn(&e.to_string()),
            }
        }
    }
}
