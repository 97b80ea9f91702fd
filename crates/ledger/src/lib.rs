//! Ledger (port 8009): a tamper-evident log of tournament results,
//! anchored on an EVM chain. See `docs/ledger.md`.
//!
//! Each `tournament_finished` becomes an entry (aliases and opaque ids
//! only) appended to an RFC 6962 Merkle tree, in the consumer's
//! transaction; the [`notary`] signs a checkpoint over the new entries and
//! anchors it with the `PanalLedger` contract on the chain ([`chain`]: by
//! default the embedded EVM, [`evm`], whose blocks live in this service's
//! database). Anyone can then check a result offline: the API serves the
//! entry, its inclusion proof, the signed checkpoint and what the chain
//! holds; [`domain::verify`] (also `panal ledger verify`) says which check
//! fails when something was altered.
//!
//! - the proofs and the checks, pure: [`domain`]; the SQL: [`store`]
//! - where a request lands: [`api`]

pub mod api;
pub mod chain;
pub mod domain;
pub mod error;
pub mod evm;
pub mod notary;
pub mod store;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::DecodePrivateKey;
use kit::db::Migrations;
use kit::http::Worker;
use kit::service::Setup;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;
use utoipa_axum::router::OpenApiRouter;

use crate::chain::Embedded;
use crate::notary::Notary;
use crate::store::Store;

/// The ledger's migrations, for SQLite and PostgreSQL.
pub const MIGRATIONS: Migrations = Migrations {
    sqlite: &[(1, "init", include_str!("../migrations/sqlite/0001_init.sql"))],
    postgres: &[(1, "init", include_str!("../migrations/postgres/0001_init.sql"))],
    table: kit::db::SERVICE_MIGRATIONS_TABLE,
};

/// The ledger's settings: `[ledger]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// The log's name, the first line of every checkpoint. Changing it
    /// makes every earlier checkpoint another log's.
    pub origin: String,
    /// A PKCS#8 PEM file with the Ed25519 key that signs checkpoints (a
    /// secret mounted as a file: `openssl genpkey -algorithm ed25519`).
    /// Without one, a key is made at the first start and kept in the
    /// ledger's database.
    pub signing_key_file: Option<PathBuf>,
    /// How often the notary looks for entries to sign and anchor, in
    /// milliseconds.
    pub interval_ms: u64,
    /// The most entries one checkpoint adds (one anchor's gas grows with
    /// it; a hundred stays far under a block's).
    pub batch: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Self { origin: "panal.ledger/local".into(), signing_key_file: None, interval_ms: 500, batch: 100 }
    }
}

/// What the ledger's handlers share.
pub struct State {
    pub(crate) store: Arc<Store>,
    pub(crate) chain: Arc<Embedded>,
    pub(crate) key: SigningKey,
    pub(crate) origin: String,
    notary: Arc<Notary>,
}

impl State {
    /// Runs one notary round now (tests and `panal ledger` use it rather
    /// than wait for the worker).
    pub async fn notarise(&self) -> Result<notary::Round, chain::ChainError> {
        self.notary.round(Utc::now()).await
    }

    pub fn store(&self) -> &Store {
        &self.store
    }
}

pub(crate) type AppState = Arc<State>;

/// The ledger service.
pub struct LedgerService;

/// The key that signs checkpoints: the configured file's, or the one kept
/// in the database (made at the first start).
async fn signing_key(settings: &Settings, store: &Store) -> anyhow::Result<SigningKey> {
    if let Some(path) = &settings.signing_key_file {
        let pem = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("ledger.signing_key_file {}: {e}", path.display()))?;
        return SigningKey::from_pkcs8_pem(&pem).map_err(|e| {
            anyhow::anyhow!("ledger.signing_key_file {}: not an Ed25519 PKCS#8 PEM key: {e}", path.display())
        });
    }
    let seed = match store.signing_seed().await? {
        Some(seed) => seed,
        None => store.keep_signing_seed(rand::random(), Utc::now()).await?,
    };
    Ok(SigningKey::from_bytes(&seed))
}

impl kit::Service for LedgerService {
    const NAME: &'static str = "ledger";
    const MIGRATIONS: Option<&'static Migrations> = Some(&MIGRATIONS);
    type Settings = Settings;
    type State = State;

    fn validate(s: &Settings) -> anyhow::Result<()> {
        if s.origin.is_empty() || s.origin.contains(char::is_whitespace) {
            anyhow::bail!("ledger.origin must be a name without spaces");
        }
        if s.interval_ms == 0 || s.batch == 0 {
            anyhow::bail!("ledger.interval_ms and ledger.batch must be above 0");
        }
        Ok(())
    }

    async fn state(setup: Setup<Settings>) -> anyhow::Result<State> {
        let store = Arc::new(Store::new(setup.db()?));
        let key = signing_key(&setup.settings, &store).await?;
        let chain = Arc::new(Embedded::new(store.clone()));
        let notary = Arc::new(Notary {
            store: store.clone(),
            chain: chain.clone(),
            key: key.clone(),
            origin: setup.settings.origin.clone(),
            batch: setup.settings.batch,
            interval: Duration::from_millis(setup.settings.interval_ms),
        });
        Ok(State { store, chain, key, origin: setup.settings.origin.clone(), notary })
    }

    fn routes(state: &Arc<State>) -> OpenApiRouter {
        api::router(state.clone())
    }

    /// Finished tournaments become entries.
    fn handlers() -> kit::bus::Handlers {
        kit::bus::Handlers::new().on::<contracts::tournament::TournamentFinished, _>(|tx, e, _| {
            Box::pin(async move {
                let entry = domain::Entry {
                    tournament_id: e.tournament_id,
                    finished_at: e.finished_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                    standings: e
                        .standings
                        .iter()
                        .map(|s| domain::Standing { place: s.place, alias: s.alias.clone(), entrant_id: s.entrant_id })
                        .collect(),
                };
                Store::append(tx, &entry, Utc::now()).await?;
                Ok(())
            })
        })
    }

    fn workers(state: &Arc<State>) -> Vec<Worker> {
        let notary = state.notary.clone();
        vec![Box::new(move |stop: CancellationToken| Box::pin(notary.run(stop)))]
    }
}
