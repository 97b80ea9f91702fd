//! `kit` is what every Panal service stands on.
//!
//! A service crate declares itself ([`Service`]: name, migrations, settings,
//! state, routes, event handlers, workers) and kit builds the rest
//! ([`service::build`]): a [`http::Server`] that [`http::serve`] runs with the
//! plumbing every service shares — request ids, trace context, access logs,
//! metrics, health and readiness, body limits, timeouts, graceful shutdown,
//! problem+json errors, the outbox relay and the event consumer. Keeping that
//! here means a service crate contains only its own rules and its own SQL.

pub mod auth;
pub mod bus;
pub mod catalog;
pub mod config;
pub mod credentials;
pub mod db;
pub mod error;
pub mod extract;
pub mod hash;
pub mod http;
pub mod json;
pub mod limit;
pub mod local;
pub mod metrics;
pub mod openapi;
pub mod outbox;
pub mod page;
pub mod peer;
pub mod problem;
pub mod resilience;
pub mod scope;
pub mod secret;
pub mod service;
pub mod socket;
pub mod telemetry;
pub mod text;
pub mod trace;

#[cfg(feature = "testing")]
pub mod testing;

pub use json::Json;

/// Makes ring the process's TLS crypto provider, which HTTPS clients
/// (reqwest, object stores) need before they are built. Call it first thing;
/// calling it again does nothing.
pub fn install_crypto() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// What a service gets from the process that runs it.
#[derive(Clone)]
pub struct Context {
    pub config: config::Config,
    pub bus: bus::Bus,
    /// The services this binary mounts and where they answer (`auth` →
    /// `http://127.0.0.1:8001`), as the process that runs this one knows them.
    pub peers: std::sync::Arc<Vec<service::Peer>>,
}

impl Context {
    /// The base URL of `service`: the process's map, else `PANAL_<SERVICE>_URL`
    /// or the service's default port.
    pub fn service_url(&self, service: &str) -> Result<String, config::ConfigError> {
        match self.peers.iter().find(|p| p.name == service) {
            Some(peer) => Ok(peer.url.clone()),
            None => self.config.service_url(service),
        }
    }

    /// The same context knowing `peers` instead.
    pub fn with_peers(&self, peers: Vec<service::Peer>) -> Self {
        Self { config: self.config.clone(), bus: self.bus.clone(), peers: std::sync::Arc::new(peers) }
    }
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context").field("bus", &self.bus.backend()).finish_non_exhaustive()
    }
}
pub use error::{Error, Fail};
pub use problem::{FieldErrors, Problem};
pub use secret::Secret;
pub use service::Service;

#[doc(hidden)]
pub use contracts as __contracts;
