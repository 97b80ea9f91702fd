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
pub mod rpc;
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

use crate::chain::{Chain, Embedded};
use crate::notary::Notary;
use crate::store::Store;

/// The ledger's migrations, for SQLite and PostgreSQL.
pub const MIGRATIONS: Migrations = Migrations {
    sqlite: &[
        (1, "init", include_str!("../migrations/sqlite/0001_init.sql")),
        (2, "chain_contracts", include_str!("../migrations/sqlite/0002_chain_contracts.sql")),
    ],
    postgres: &[
        (1, "init", include_str!("../migrations/postgres/0001_init.sql")),
        (2, "chain_contracts", include_str!("../migrations/postgres/0002_chain_contracts.sql")),
    ],
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
    /// Where checkpoints are anchored: the embedded chain unless `rpc_url`.
    pub chain: ChainSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            origin: "panal.ledger/local".into(),
            signing_key_file: None,
            interval_ms: 500,
            batch: 100,
            chain: ChainSettings::default(),
        }
    }
}

/// `[ledger.chain]`: a real EVM chain instead of the embedded one.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChainSettings {
    /// The chain's JSON-RPC endpoint (Avalanche Fuji:
    /// `https://api.avax-test.network/ext/bc/C/rpc`; a local node:
    /// `http://127.0.0.1:8545`). Unset: the embedded chain.
    pub rpc_url: Option<String>,
    /// A file holding the hex secp256k1 private key of the account that
    /// deploys the contract and anchors (a secret; fund it on the chain).
    pub key_file: Option<PathBuf>,
    /// A `PanalLedger` contract deployed already, owned by that account.
    /// Unset: the ledger deploys one at its first anchor and keeps its
    /// address.
    pub contract: Option<String>,
    /// How long to wait for a transaction to be mined, in seconds.
    pub receipt_timeout_secs: u64,
}

impl Default for ChainSettings {
    fn default() -> Self {
        Self { rpc_url: None, key_file: None, contract: None, receipt_timeout_secs: 120 }
    }
}

/// What the ledger's handlers share.
pub struct State {
    pub(crate) store: Arc<Store>,
    pub(crate) chain: Arc<Chain>,
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
        let c = &s.chain;
        match (&c.rpc_url, &c.key_file) {
            (Some(url), Some(_)) if !(url.starts_with("http://") || url.starts_with("https://")) => {
                anyhow::bail!("ledger.chain.rpc_url must be an http(s) URL")
            }
            (Some(_), None) => {
                anyhow::bail!("ledger.chain.rpc_url needs ledger.chain.key_file (the anchoring account)")
            }
            (None, _) if c.key_file.is_some() || c.contract.is_some() => {
                anyhow::bail!("ledger.chain.key_file and ledger.chain.contract need ledger.chain.rpc_url")
            }
            _ => {}
        }
        if let Some(contract) = &c.contract
            && contract.parse::<revm::primitives::Address>().is_err()
        {
            anyhow::bail!("ledger.chain.contract must be an address (0x and 40 hex digits)");
        }
        Ok(())
    }

    async fn state(setup: Setup<Settings>) -> anyhow::Result<State> {
        let store = Arc::new(Store::new(setup.db()?));
        let key = signing_key(&setup.settings, &store).await?;
        let chain = Arc::new(match &setup.settings.chain {
            ChainSettings { rpc_url: Some(url), key_file: Some(key_file), contract, receipt_timeout_secs } => {
                let key = std::fs::read_to_string(key_file)
                    .map_err(|e| anyhow::anyhow!("ledger.chain.key_file {}: {e}", key_file.display()))?;
                let contract = contract.as_deref().and_then(|c| c.parse().ok());
                let timeout = Duration::from_secs(*receipt_timeout_secs);
                Chain::Rpc(rpc::Rpc::connect(url.clone(), &key, contract, timeout, &store).await?)
            }
            _ => Chain::Embedded(Embedded::new(store.clone())),
        });
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

#[cfg(test)]
mod tests {
    use kit::Service;

    use super::*;

    fn refused(toml: &str) -> String {
        let config = kit::config::Config::from_toml(toml).unwrap();
        let settings: Settings = config.section("ledger").unwrap();
        LedgerService::validate(&settings).unwrap_err().to_string()
    }

    #[test]
    fn a_chain_half_configured_is_refused_at_start() {
        assert!(
            refused("[ledger.chain]\nrpc_url = \"http://127.0.0.1:8545\"\n").contains("needs ledger.chain.key_file")
        );
        assert!(refused("[ledger.chain]\nkey_file = \"/run/key\"\n").contains("need ledger.chain.rpc_url"));
        assert!(refused("[ledger.chain]\nrpc_url = \"ftp://x\"\nkey_file = \"/run/key\"\n").contains("http(s) URL"));
        assert!(
            refused("[ledger.chain]\nrpc_url = \"http://x\"\nkey_file = \"/k\"\ncontract = \"0x12\"\n")
                .contains("must be an address")
        );
        assert!(refused("[ledger]\norigin = \"two words\"\n").contains("without spaces"));
        assert!(refused("[ledger]\nbatch = 0\n").contains("above 0"));
    }
}
