//! `kit` is what every Panal service stands on.
//!
//! A service crate builds a [`http::Service`] (its router, its OpenAPI document,
//! its database and its background workers) and hands it to [`http::serve`], which
//! adds the plumbing every service shares: request ids, trace context, access logs,
//! metrics, health and readiness, body limits, timeouts, graceful shutdown and
//! problem+json errors. Keeping that here means a service crate contains only its
//! own rules and its own SQL.

pub mod auth;
pub mod bus;
pub mod catalog;
pub mod config;
pub mod db;
pub mod http;
pub mod json;
pub mod metrics;
pub mod openapi;
pub mod outbox;
pub mod problem;
pub mod secret;
pub mod telemetry;
pub mod trace;

#[cfg(feature = "testing")]
pub mod testing;

pub use json::Json;

/// What a service gets from the process that runs it.
#[derive(Clone)]
pub struct Context {
    pub config: config::Config,
    pub bus: bus::Bus,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context").field("bus", &self.bus.backend()).finish_non_exhaustive()
    }
}
pub use problem::{FieldErrors, Problem};
pub use secret::Secret;

#[doc(hidden)]
pub use contracts as __contracts;
