//! `/admin/*` on the gateway, for administrators: the upstreams' state, and
//! reloading the route table. SIGHUP reloads too.

use axum::extract::State;
use axum::http::HeaderMap;
use kit::auth::bearer_token;
use kit::{Json, Problem};
use serde::Serialize;

use crate::AppState;
use crate::balance::PoolView;

async fn require_admin(state: &AppState, headers: &HeaderMap) -> Result<(), Problem> {
    let token = bearer_token(headers)?
        .ok_or_else(|| Problem::unauthorized("this endpoint needs an access token (`Authorization: Bearer …`)"))?;
    let claims = crate::proxy::verify(state, token, std::time::Instant::now()).await?;
    if !claims.roles.iter().any(|r| r == "admin") {
        return Err(Problem::forbidden("this action needs the `admin` role"));
    }
    Ok(())
}

/// Every upstream: its breaker and instances.
#[derive(Debug, Serialize)]
pub struct Upstreams {
    pub upstreams: Vec<PoolView>,
    pub revoked_sessions: usize,
}

pub(crate) async fn upstreams(State(state): State<AppState>, headers: HeaderMap) -> Result<Json<Upstreams>, Problem> {
    require_admin(&state, &headers).await?;
    let table = state.table();
    state.metrics.observe_pools(&table);
    Ok(Json(Upstreams { upstreams: table.pools().map(|p| p.view()).collect(), revoked_sessions: state.denied.len() }))
}

pub(crate) async fn reload(State(state): State<AppState>, headers: HeaderMap) -> Result<Json<Upstreams>, Problem> {
    require_admin(&state, &headers).await?;
    state.reload().map_err(|e| {
        Problem::new(http::StatusCode::UNPROCESSABLE_ENTITY)
            .with_detail(format!("the configuration was not reloaded: {e:#}"))
    })?;
    let table = state.table();
    Ok(Json(Upstreams { upstreams: table.pools().map(|p| p.view()).collect(), revoked_sessions: state.denied.len() }))
}

/// Reloads the route table on SIGHUP.
pub(crate) fn reload_on_sighup(state: AppState) -> kit::http::Worker {
    Box::new(move |stop: tokio_util::sync::CancellationToken| {
        Box::pin(async move {
            #[cfg(unix)]
            {
                let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
                    return tracing::warn!("cannot listen for SIGHUP; reload with POST /admin/reload");
                };
                loop {
                    tokio::select! {
                        _ = hup.recv() => {
                            if let Err(e) = state.reload() {
                                tracing::error!(error = format!("{e:#}"), "configuration not reloaded; the previous routes stay");
                            }
                        }
                        () = stop.cancelled() => return,
                    }
                }
            }
            #[cfg(not(unix))]
            stop.cancelled().await;
        })
    })
}
