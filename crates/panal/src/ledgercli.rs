//! `panal ledger verify <tournament>`: checks a tournament's result the
//! way anyone could, from what the ledger publishes through the gateway —
//! the entry, its inclusion proof, the signed checkpoint, and what the
//! chain holds — with the arithmetic done here, not by the ledger.

use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use ledger::api::{ChainResultView, ChainRootView, CheckView, EntryView, LedgerInfo};
use serde::de::DeserializeOwned;

#[derive(Debug, Subcommand)]
pub enum LedgerCommand {
    /// Check that a finished tournament's result is in the log, that the
    /// checkpoint proving it is signed, and that the chain holds the same
    /// root and result; say which check fails when something was altered.
    /// Exits 1 when a check fails.
    Verify(VerifyArgs),
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The tournament's id.
    tournament: uuid::Uuid,
    /// The gateway (the ledger's API is public).
    #[arg(long, default_value = "http://127.0.0.1:8000", env = "PANAL_GATEWAY")]
    gateway: String,
    /// The ledger's public key (base64), as you noted it earlier: checks
    /// the checkpoint with it rather than with the key the ledger shows now.
    #[arg(long)]
    key: Option<String>,
}

/// GETs `path`; `None` on 404.
async fn get<T: DeserializeOwned>(http: &reqwest::Client, base: &str, path: &str) -> anyhow::Result<Option<T>> {
    let r = http.get(format!("{base}{path}")).send().await.with_context(|| format!("reaching {base}"))?;
    if r.status() == reqwest::StatusCode::NOT_FOUND {
        return Ok(None);
    }
    if !r.status().is_success() {
        let status = r.status();
        let body: serde_json::Value = r.json().await.unwrap_or_default();
        let detail = body["detail"].as_str().unwrap_or("error").to_owned();
        anyhow::bail!("GET {path}: {detail} ({})", status.as_u16());
    }
    Ok(Some(r.json().await.with_context(|| format!("GET {path}: not the ledger's answer"))?))
}

#[allow(clippy::print_stdout)]
pub async fn run(command: LedgerCommand) -> anyhow::Result<bool> {
    let LedgerCommand::Verify(args) = command;
    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build()?;
    let base = args.gateway.trim_end_matches('/');
    let id = args.tournament;
    let info: LedgerInfo = get(&http, base, "/v1/ledger").await?.context("no ledger behind this gateway")?;
    let key_text = args.key.as_deref().unwrap_or(&info.public_key);
    let key = ledger::domain::public_key(key_text).context("--key: not an Ed25519 public key (32 bytes, base64)")?;
    if args.key.is_some() && key_text.trim() != info.public_key {
        println!("note: the ledger now shows another key ({}); checking with yours", info.public_key);
    }
    let entry: EntryView = get(&http, base, &format!("/v1/ledger/entries/{id}"))
        .await?
        .with_context(|| format!("tournament {id} is not in the log"))?;
    let size = entry.checkpoint.size;
    let root: Option<ChainRootView> = get(&http, base, &format!("/v1/ledger/chain/roots/{size}")).await?;
    let result: Option<ChainResultView> = get(&http, base, &format!("/v1/ledger/chain/results/{id}")).await?;
    let chain_root = root.and_then(|r| ledger::api::unhex(&r.root));
    let chain_result = result.and_then(|r| ledger::api::unhex(&r.leaf).map(|leaf| (r.position, leaf)));
    let checks = ledger::api::checks_of(&entry, &info.origin, &key, chain_root, chain_result, None);
    let anchored = entry.checkpoint.anchor.as_ref().map_or(String::from("not anchored"), |a| {
        format!("anchored in block {} of chain {}", a.block, info.chain.chain_id)
    });
    println!(
        "tournament {id}: entry {} of the log {}; checkpoint of {size} entries, {anchored}",
        entry.position, info.origin
    );
    for CheckView { check, ok, detail } in &checks {
        let mark = match ok {
            Some(true) => "ok  ",
            Some(false) => "FAIL",
            None => "-   ",
        };
        let name = serde_json::to_value(check)?.as_str().unwrap_or_default().to_owned();
        println!("  {mark} {name:<13} {detail}");
    }
    let verified = checks.iter().all(|c| c.ok == Some(true));
    if verified {
        for s in &entry.standings {
            println!("  {}. {} ({})", s.place, s.alias, s.entrant_id);
        }
        println!("verified");
    } else {
        println!("NOT verified");
    }
    Ok(verified)
}
