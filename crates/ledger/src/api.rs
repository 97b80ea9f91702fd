//! The ledger's HTTP API: everything a verifier needs, and nothing that
//! needs trusting the ledger. All of it is public: the log holds aliases
//! and opaque ids only.

use axum::extract::State;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use kit::extract::{Path, Query};
use kit::{FieldErrors, Json, Problem};
use revm::primitives::hex;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::AppState;
use crate::domain::{self, Check, Entry, Hash};
use crate::error::LedgerApiError;
use crate::store::StoredCheckpoint;

pub(crate) fn router(state: AppState) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(info))
        .routes(routes!(latest_checkpoint))
        .routes(routes!(checkpoint))
        .routes(routes!(consistency))
        .routes(routes!(entry))
        .routes(routes!(verification))
        .routes(routes!(chain_root))
        .routes(routes!(chain_result))
        .with_state(state)
}

/// `0x` and the hex of `bytes`.
pub(crate) fn hex0x(bytes: &[u8]) -> String {
    hex::encode_prefixed(bytes)
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ChainView {
    /// `embedded`: the EVM inside the ledger, its blocks in the ledger's
    /// database; `json-rpc`: a real chain, through its node.
    #[schema(example = "embedded")]
    pub kind: String,
    #[schema(example = 31337)]
    pub chain_id: u64,
    /// The `PanalLedger` contract (absent until the first anchor deploys it).
    #[schema(example = "0x5fbdb2315678afecb367f032d93f642f64180aa3")]
    pub contract: Option<String>,
    /// The account that anchors: the contract's owner.
    #[schema(example = "0x8f6cbe2d46a0fe9c0a22f8de2a4bdc0dd0eb6b91")]
    pub owner: String,
    /// The chain's last block.
    #[schema(example = 3)]
    pub head: u64,
    /// The size of the log the chain last anchored.
    #[schema(example = 2)]
    pub anchored_size: u64,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct LedgerInfo {
    /// The log's name, the first line of every checkpoint.
    #[schema(example = "panal.ledger/local")]
    pub origin: String,
    #[schema(example = "Ed25519")]
    pub algorithm: String,
    /// The key checkpoints are signed with (32 bytes, base64). Pin it:
    /// `panal ledger verify --key`.
    #[schema(example = "Gb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=")]
    pub public_key: String,
    /// Entries in the latest checkpoint.
    #[schema(example = 2)]
    pub size: u64,
    pub chain: ChainView,
}

/// Where a checkpoint was anchored.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AnchorView {
    #[schema(example = 3)]
    pub block: u64,
    #[schema(example = "0x9c1d5e0ec5d0b1c7e6f1e0d7a2c1b6e8f3a4d5c6b7a8e9f0a1b2c3d4e5f6a7b8")]
    pub transaction: String,
    pub anchored_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CheckpointView {
    #[schema(example = 2)]
    pub size: u64,
    /// The tree's root (hex).
    #[schema(example = "0x3d7ae6ef0a2c8fe1e06d2aa3b2e0b4b8a1e21c1f9d6de5f3c1a2b3c4d5e6f708")]
    pub root: String,
    /// The signed note: origin, size and base64 root, a blank line, and the
    /// signature line.
    #[schema(
        example = "panal.ledger/local\n2\nPXrm7woqj+HgbSqjsuC0uKHiHB+dbeXzwaKzxNXm9wg=\n\n\u{2014} panal.ledger/local 7Yx1…\n"
    )]
    pub note: String,
    pub signed_at: DateTime<Utc>,
    /// Absent until anchored on the chain.
    pub anchor: Option<AnchorView>,
}

impl From<StoredCheckpoint> for CheckpointView {
    fn from(c: StoredCheckpoint) -> Self {
        Self {
            size: c.size,
            root: hex0x(&c.root),
            note: c.note,
            signed_at: c.signed_at,
            anchor: c.anchor.map(|a| AnchorView {
                block: a.block,
                transaction: hex0x(a.transaction.as_slice()),
                anchored_at: a.anchored_at,
            }),
        }
    }
}

/// The ledger: its name, key, size and chain.
#[utoipa::path(get, path = "/v1/ledger", operation_id = "ledger_info", tag = "ledger",
    responses((status = 200, body = LedgerInfo)))]
async fn info(State(state): State<AppState>) -> Result<Json<LedgerInfo>, LedgerApiError> {
    let size = state.store.checkpoint(None).await?.map_or(0, |c| c.size);
    let chain = state.chain.info().await?;
    Ok(Json(LedgerInfo {
        origin: state.origin.clone(),
        algorithm: "Ed25519".into(),
        public_key: STANDARD.encode(state.key.verifying_key().as_bytes()),
        size,
        chain: ChainView {
            kind: chain.kind.into(),
            chain_id: chain.chain_id,
            contract: chain.contract.map(|c| hex0x(c.as_slice())),
            owner: hex0x(chain.sender.as_slice()),
            head: chain.head,
            anchored_size: chain.anchored_size,
        },
    }))
}

/// The latest signed checkpoint.
#[utoipa::path(get, path = "/v1/ledger/checkpoint", operation_id = "ledger_latest_checkpoint", tag = "ledger",
    responses((status = 200, body = CheckpointView),
        (status = 404, description = "Nothing signed yet: the log is empty", body = Problem, content_type = "application/problem+json")))]
async fn latest_checkpoint(State(state): State<AppState>) -> Result<Json<CheckpointView>, LedgerApiError> {
    let c = state.store.checkpoint(None).await?.ok_or_else(|| Problem::not_found("the log is empty"))?;
    Ok(Json(c.into()))
}

/// The checkpoint of a log of `size` entries.
#[utoipa::path(get, path = "/v1/ledger/checkpoints/{size}", operation_id = "ledger_checkpoint", tag = "ledger",
    params(("size" = u64, Path, minimum = 1)),
    responses((status = 200, body = CheckpointView),
        (status = 404, description = "No checkpoint of that size", body = Problem, content_type = "application/problem+json")))]
async fn checkpoint(
    State(state): State<AppState>,
    Path(size): Path<u64>,
) -> Result<Json<CheckpointView>, LedgerApiError> {
    let c = state.store.checkpoint(Some(size)).await?.ok_or_else(|| no_checkpoint(size))?;
    Ok(Json(c.into()))
}

fn no_checkpoint(size: u64) -> Problem {
    Problem::not_found(format!("no checkpoint of {size} entries"))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ConsistencyQuery {
    /// The earlier checkpoint's size.
    #[param(minimum = 1)]
    pub first: u64,
    /// The later checkpoint's size.
    #[param(minimum = 1)]
    pub second: u64,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ConsistencyView {
    #[schema(example = 1)]
    pub first: u64,
    #[schema(example = 2)]
    pub second: u64,
    /// RFC 6962 §2.1.2's proof (hex hashes).
    #[schema(example = json!(["0x6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"]))]
    pub proof: Vec<String>,
}

/// A proof that the checkpoint of `second` entries extends the one of
/// `first` without changing it.
#[utoipa::path(get, path = "/v1/ledger/consistency", operation_id = "ledger_consistency", tag = "ledger",
    params(ConsistencyQuery),
    responses((status = 200, body = ConsistencyView),
        (status = 404, description = "No checkpoint of one of the sizes", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`first` above `second`", body = Problem, content_type = "application/problem+json")))]
async fn consistency(
    State(state): State<AppState>,
    Query(q): Query<ConsistencyQuery>,
) -> Result<Json<ConsistencyView>, LedgerApiError> {
    if q.first > q.second {
        return Err(FieldErrors::single("first", "must not be above second").into());
    }
    for size in [q.first, q.second] {
        state.store.checkpoint(Some(size)).await?.ok_or_else(|| no_checkpoint(size))?;
    }
    let leaves = state.store.leaves(q.second).await?;
    let first = usize::try_from(q.first).unwrap_or(usize::MAX);
    let proof = domain::consistency_proof(first, &leaves);
    Ok(Json(ConsistencyView { first: q.first, second: q.second, proof: proof.iter().map(|h| hex0x(h)).collect() }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct EntryQuery {
    /// Prove the entry in the checkpoint of this size (default: the latest
    /// anchored one holding it, or the latest).
    #[param(minimum = 1)]
    pub size: Option<u64>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(as = LedgerStanding)]
pub struct StandingView {
    #[schema(example = 1)]
    pub place: u32,
    #[schema(example = "Ada")]
    pub alias: String,
    pub entrant_id: Uuid,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EntryView {
    pub tournament_id: Uuid,
    /// The entry's place in the log (0 the first).
    #[schema(example = 1)]
    pub position: u64,
    /// The exact bytes the leaf hashes (the entry's JSON): hash these, not
    /// a re-encoding of `standings`.
    #[schema(
        example = "{\"tournament_id\":\"01a23ce5-3f4f-7d4b-8ada-5bdc3de59327\",\"finished_at\":\"2026-12-04T10:00:00Z\",\"standings\":[]}"
    )]
    pub data: String,
    #[schema(example = "2026-12-04T10:00:00Z")]
    pub finished_at: String,
    pub standings: Vec<StandingView>,
    /// SHA-256(0x00 ‖ data), hex.
    #[schema(example = "0x6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d")]
    pub leaf: String,
    /// The checkpoint the proof leads to.
    pub checkpoint: CheckpointView,
    /// RFC 6962 §2.1.1's audit path (hex hashes).
    #[schema(example = json!(["0x6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"]))]
    pub proof: Vec<String>,
}

/// A tournament's result with its inclusion proof in a signed checkpoint.
#[utoipa::path(get, path = "/v1/ledger/entries/{tournament_id}", operation_id = "ledger_entry", tag = "ledger",
    params(("tournament_id" = Uuid, Path), EntryQuery),
    responses((status = 200, body = EntryView),
        (status = 404, description = "The tournament is not in the log, or no checkpoint of that size", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Recorded, but no checkpoint holds it yet (a moment: checkpoints follow within a second)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A checkpoint too small to hold the entry", body = Problem, content_type = "application/problem+json")))]
async fn entry(
    State(state): State<AppState>,
    Path(tournament_id): Path<Uuid>,
    query: Option<Query<EntryQuery>>,
) -> Result<Json<EntryView>, LedgerApiError> {
    let size = query.and_then(|q| q.0.size);
    Ok(Json(entry_view(&state, tournament_id, size).await?))
}

async fn entry_view(state: &AppState, tournament_id: Uuid, size: Option<u64>) -> Result<EntryView, LedgerApiError> {
    let stored = state.store.entry(tournament_id).await?.ok_or_else(not_in_log)?;
    let checkpoint = match size {
        Some(size) => {
            let c = state.store.checkpoint(Some(size)).await?.ok_or_else(|| no_checkpoint(size))?;
            if c.size <= stored.position {
                return Err(FieldErrors::single("size", "the checkpoint does not hold this entry").into());
            }
            c
        }
        None => {
            // The latest checkpoint, if anchored; else the last anchored
            // one that holds the entry; else the first that holds it.
            let latest = state.store.checkpoint(None).await?;
            match latest {
                Some(c) if c.size > stored.position && c.anchor.is_some() => c,
                _ => state.store.anchored_holding(stored.position).await?.map_or_else(
                    || {
                        latest.filter(|c| c.size > stored.position).ok_or_else(|| {
                            Problem::conflict(
                                "the result is recorded, but no checkpoint holds it yet; ask again in a moment",
                            )
                        })
                    },
                    Ok,
                )?,
            }
        }
    };
    let leaves = state.store.leaves(checkpoint.size).await?;
    let position = usize::try_from(stored.position).unwrap_or(usize::MAX);
    let proof = domain::inclusion_proof(position, &leaves);
    // Shown as stored; a verifier hashes `data`, which a changed entry
    // no longer matches.
    let parsed: Option<Entry> = serde_json::from_str(&stored.data).ok();
    Ok(EntryView {
        tournament_id,
        position: stored.position,
        finished_at: parsed.as_ref().map(|e| e.finished_at.clone()).unwrap_or_default(),
        standings: parsed
            .map(|e| {
                e.standings
                    .into_iter()
                    .map(|s| StandingView { place: s.place, alias: s.alias, entrant_id: s.entrant_id })
                    .collect()
            })
            .unwrap_or_default(),
        data: stored.data,
        leaf: hex0x(&stored.leaf),
        checkpoint: checkpoint.into(),
        proof: proof.iter().map(|h| hex0x(h)).collect(),
    })
}

fn not_in_log() -> Problem {
    Problem::not_found("this tournament is not in the log")
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CheckView {
    pub check: Check,
    /// `true` passed, `false` failed, absent: not reached (an earlier check
    /// failed).
    #[schema(example = true)]
    pub ok: Option<bool>,
    #[schema(example = "the chain holds the checkpoint's root")]
    pub detail: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct VerificationView {
    pub tournament_id: Uuid,
    /// Every check passed.
    #[schema(example = true)]
    pub verified: bool,
    pub checks: Vec<CheckView>,
}

/// Checks a tournament's result as `panal ledger verify` does: the entry
/// is in the log, the checkpoint is signed, and the chain holds the same
/// root and result. For showing "verified"; a verifier who trusts nobody
/// makes the checks from `GET /v1/ledger/entries/{id}` and the chain.
#[utoipa::path(get, path = "/v1/ledger/entries/{tournament_id}/verification", operation_id = "ledger_verification", tag = "ledger",
    params(("tournament_id" = Uuid, Path)),
    responses((status = 200, body = VerificationView),
        (status = 404, description = "The tournament is not in the log", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Recorded, but no checkpoint holds it yet", body = Problem, content_type = "application/problem+json")))]
async fn verification(
    State(state): State<AppState>,
    Path(tournament_id): Path<Uuid>,
) -> Result<Json<VerificationView>, LedgerApiError> {
    let view = entry_view(&state, tournament_id, None).await?;
    let (chain_root, chain_result, chain_error) =
        match (state.chain.root(view.checkpoint.size).await, state.chain.result(tournament_id).await) {
            (Ok(root), Ok(result)) => (root, result.map(|r| (r.position, r.leaf)), None),
            (Err(e), _) | (_, Err(e)) => (None, None, Some(e.to_string())),
        };
    let key = state.key.verifying_key();
    let checks = checks_of(&view, &state.origin, &key, chain_root, chain_result, chain_error.as_deref());
    Ok(Json(VerificationView { tournament_id, verified: checks.iter().all(|c| c.ok == Some(true)), checks }))
}

/// The checks of an entry as the API serves it, against `key` and what the
/// chain holds (`chain_error`: the chain could not be read).
pub fn checks_of(
    view: &EntryView,
    origin: &str,
    key: &ed25519_dalek::VerifyingKey,
    chain_root: Option<Hash>,
    chain_result: Option<(u64, Hash)>,
    chain_error: Option<&str>,
) -> Vec<CheckView> {
    // A proof that is not hashes proves nothing: one no tree accepts.
    let proof: Vec<Hash> = view
        .proof
        .iter()
        .map(|h| unhex(h))
        .collect::<Option<_>>()
        .unwrap_or_else(|| vec![[0; 32]; view.proof.len().max(1) + 64]);
    let evidence = domain::Evidence {
        tournament_id: view.tournament_id,
        data: view.data.as_bytes(),
        position: view.position,
        proof: &proof,
        note: &view.checkpoint.note,
        origin,
        key,
        chain_root,
        chain_result,
    };
    checks(&evidence, chain_error)
}

/// The checks, each passed, failed (with why) or not reached.
pub fn checks(evidence: &domain::Evidence<'_>, chain_error: Option<&str>) -> Vec<CheckView> {
    let failure = match (domain::verify(evidence).err(), chain_error) {
        (Some(f), _) if !matches!(f.check, Check::ChainRoot | Check::ChainResult) => Some(f),
        (_, Some(e)) => {
            Some(domain::Failure { check: Check::ChainRoot, reason: format!("the chain could not be read: {e}") })
        }
        (f, None) => f,
    };
    let mut reached = true;
    Check::ALL
        .iter()
        .map(|&check| {
            let (ok, detail) = match &failure {
                _ if !reached => (None, "not checked".to_owned()),
                Some(f) if f.check == check => {
                    reached = false;
                    (Some(false), f.reason.clone())
                }
                _ => (Some(true), passed(check).to_owned()),
            };
            CheckView { check, ok, detail }
        })
        .collect()
}

fn passed(check: Check) -> &'static str {
    match check {
        Check::Entry => "the entry is this tournament's result",
        Check::Checkpoint => "the checkpoint is signed with the ledger's key",
        Check::Inclusion => "the result is in the log the checkpoint signs",
        Check::ChainRoot => "the chain holds the checkpoint's root",
        Check::ChainResult => "the chain records this result at this position",
    }
}

/// A hex hash (`0x` optional), as the API writes them.
pub fn unhex(s: &str) -> Option<Hash> {
    hex::decode(s).ok().and_then(|b| b.try_into().ok())
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ChainRootView {
    #[schema(example = 2)]
    pub size: u64,
    #[schema(example = "0x3d7ae6ef0a2c8fe1e06d2aa3b2e0b4b8a1e21c1f9d6de5f3c1a2b3c4d5e6f708")]
    pub root: String,
}

/// The root the chain's contract holds for a log of `size` entries.
#[utoipa::path(get, path = "/v1/ledger/chain/roots/{size}", operation_id = "ledger_chain_root", tag = "ledger",
    params(("size" = u64, Path, minimum = 1)),
    responses((status = 200, body = ChainRootView),
        (status = 404, description = "The chain holds no root for that size", body = Problem, content_type = "application/problem+json")))]
async fn chain_root(
    State(state): State<AppState>,
    Path(size): Path<u64>,
) -> Result<Json<ChainRootView>, LedgerApiError> {
    let root = state
        .chain
        .root(size)
        .await?
        .ok_or_else(|| Problem::not_found(format!("the chain holds no root for a log of {size} entries")))?;
    Ok(Json(ChainRootView { size, root: hex0x(&root) }))
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ChainResultView {
    pub tournament_id: Uuid,
    #[schema(example = 1)]
    pub position: u64,
    #[schema(example = "0x6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d")]
    pub leaf: String,
}

/// The result (leaf hash and position) the chain's contract records for a
/// tournament.
#[utoipa::path(get, path = "/v1/ledger/chain/results/{tournament_id}", operation_id = "ledger_chain_result", tag = "ledger",
    params(("tournament_id" = Uuid, Path)),
    responses((status = 200, body = ChainResultView),
        (status = 404, description = "The chain records no result for that tournament", body = Problem, content_type = "application/problem+json")))]
async fn chain_result(
    State(state): State<AppState>,
    Path(tournament_id): Path<Uuid>,
) -> Result<Json<ChainResultView>, LedgerApiError> {
    let r = state
        .chain
        .result(tournament_id)
        .await?
        .ok_or_else(|| Problem::not_found("the chain records no result for this tournament"))?;
    Ok(Json(ChainResultView { tournament_id, position: r.position, leaf: hex0x(&r.leaf) }))
}
