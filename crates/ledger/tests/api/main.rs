//! The ledger over real HTTP, on SQLite and (with `PANAL_TEST_POSTGRES_URL`)
//! PostgreSQL. Finished tournaments arrive as tournament's
//! `tournament_finished` on the test bus; the notary signs and anchors on
//! the embedded chain; results are checked as `panal ledger verify` checks
//! them. Then the database is altered the ways an attacker would, and each
//! alteration is caught by the check it should be.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use base64::Engine;
use chrono::Utc;
use contracts::tournament::{Standing, TournamentFinished};
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::EncodePrivateKey;
use kit::config::HttpSettings;
use kit::db::Db;
use kit::testing::{TestContext, TestDb, TestServer, assert_problem};
use kit::with_db;
use ledger::api::{ChainResultView, ChainRootView, CheckpointView, ConsistencyView, EntryView, LedgerInfo};
use ledger::domain::{self, Checkpoint};
use serde_json::Value;
use uuid::Uuid;

struct Ledger {
    ctx: TestContext,
    server: TestServer,
    db: Db,
    http: reqwest::Client,
}

const CONFIG: &str = "[bus]\nbackoff_base_ms = 20\nmax_attempts = 2\n[ledger]\ninterval_ms = 50\n";

impl Ledger {
    async fn start(db: &TestDb, extra: &str) -> Self {
        let config = kit::config::Config::from_toml(&format!("{CONFIG}{extra}")).unwrap();
        let ctx = TestContext::new(config).await;
        let ledger_db = Db::connect(&db.url, &ctx.config.settings.db).await.unwrap();
        let server = kit::testing::server::<ledger::LedgerService>(&ctx, Some(ledger_db.clone())).await;
        let server = TestServer::spawn(server, HttpSettings::default()).await;
        Self { ctx, server, db: ledger_db, http: reqwest::Client::new() }
    }

    /// The same database, served by a new process (the chain replayed).
    async fn restart(self, db: &TestDb) -> Self {
        self.restart_with(db, "").await
    }

    async fn restart_with(mut self, db: &TestDb, extra: &str) -> Self {
        self.server.stop().await.unwrap();
        Self::start(db, extra).await
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        self.http.get(self.server.url(path)).send().await.unwrap()
    }

    async fn json<T: serde::de::DeserializeOwned>(&self, path: &str) -> T {
        let r = self.get(path).await;
        assert_eq!(r.status(), 200, "GET {path}");
        r.json().await.unwrap()
    }

    /// Publishes a finished tournament and waits until its entry is in an
    /// anchored checkpoint.
    async fn finish(&self, aliases: &[&str]) -> Uuid {
        let id = Uuid::now_v7();
        self.ctx.publish(&finished(id, aliases)).await;
        self.anchored(id).await;
        id
    }

    async fn anchored(&self, id: Uuid) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let r = self.get(&format!("/v1/ledger/entries/{id}")).await;
            if r.status() == 200 {
                let e: EntryView = r.json().await.unwrap();
                if e.checkpoint.anchor.is_some() {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "tournament {id} was never anchored");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn verification(&self, id: Uuid) -> Value {
        self.json(&format!("/v1/ledger/entries/{id}/verification")).await
    }

    /// What `panal ledger verify` does: the checks made here, from what
    /// the API publishes.
    async fn verify_as_a_client(&self, id: Uuid) -> Vec<(String, Option<bool>)> {
        let info: LedgerInfo = self.json("/v1/ledger").await;
        let entry: EntryView = self.json(&format!("/v1/ledger/entries/{id}")).await;
        let key = domain::public_key(&info.public_key).unwrap();
        let root = self.get(&format!("/v1/ledger/chain/roots/{}", entry.checkpoint.size)).await;
        let root: Option<ChainRootView> = if root.status() == 200 { root.json().await.ok() } else { None };
        let result = self.get(&format!("/v1/ledger/chain/results/{id}")).await;
        let result: Option<ChainResultView> = if result.status() == 200 { result.json().await.ok() } else { None };
        let checks = ledger::api::checks_of(
            &entry,
            &info.origin,
            &key,
            root.and_then(|r| ledger::api::unhex(&r.root)),
            result.and_then(|r| ledger::api::unhex(&r.leaf).map(|l| (r.position, l))),
            None,
        );
        checks
            .into_iter()
            .map(|c| (serde_json::to_value(c.check).unwrap().as_str().unwrap().to_owned(), c.ok))
            .collect()
    }

    async fn execute(&self, sql: &'static str) {
        with_db!(write &self.db, pool => sqlx::query(sql).execute(pool).await.map(|_| ())).unwrap();
    }

    async fn seed(&self) -> [u8; 32] {
        let seed: Vec<u8> = with_db!(&self.db, pool => sqlx::query_scalar("SELECT seed FROM signing_key")
            .fetch_one(pool).await)
        .unwrap();
        seed.try_into().unwrap()
    }
}

fn finished(id: Uuid, aliases: &[&str]) -> TournamentFinished {
    TournamentFinished {
        tournament_id: id,
        name: "Friday cup".into(),
        format: "single_elimination".into(),
        kind: "online".into(),
        standings: (1..)
            .zip(aliases)
            .map(|(place, alias)| Standing { place, alias: (*alias).to_owned(), entrant_id: Uuid::now_v7() })
            .collect(),
        finished_at: Utc::now(),
    }
}

/// The verification's checks as (name, ok).
fn checks(v: &Value) -> Vec<(String, Option<bool>)> {
    v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["check"].as_str().unwrap().to_owned(), c["ok"].as_bool()))
        .collect()
}

fn expect(passed: usize, failed: &str) -> Vec<(String, Option<bool>)> {
    let names = ["entry", "checkpoint", "inclusion", "chain_root", "chain_result"];
    let at = names.iter().position(|n| *n == failed).unwrap();
    assert_eq!(at, passed, "the failing check comes after the passing ones");
    names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            (
                (*n).to_owned(),
                if i < at {
                    Some(true)
                } else if i == at {
                    Some(false)
                } else {
                    None
                },
            )
        })
        .collect()
}

fn all_pass() -> Vec<(String, Option<bool>)> {
    ["entry", "checkpoint", "inclusion", "chain_root", "chain_result"]
        .iter()
        .map(|n| ((*n).to_owned(), Some(true)))
        .collect()
}

/// The detail of the check that failed.
fn why(v: &Value) -> String {
    v["checks"].as_array().unwrap().iter().find(|c| c["ok"] == false).unwrap()["detail"].as_str().unwrap().to_owned()
}

async fn results_are_logged_signed_anchored_and_proved(db: TestDb) {
    let l = Ledger::start(&db, "").await;
    let empty = l.get("/v1/ledger/checkpoint").await;
    assert_problem(empty, 404, None).await;
    let a = l.finish(&["Ada", "Bob"]).await;
    let b = l.finish(&["Cy", "Di", "Ed"]).await;
    let c = l.finish(&["Fay", "Gus"]).await;

    // A redelivered event changes nothing.
    let again = finished(b, &["Mallory", "Bob"]);
    l.ctx.publish(&again).await;
    let d = l.finish(&["Hal", "Ivy"]).await;
    let info: LedgerInfo = l.json("/v1/ledger").await;
    assert_eq!((info.size, info.chain.anchored_size, info.algorithm.as_str()), (4, 4, "Ed25519"));
    assert_eq!(info.origin, "panal.ledger/local");
    assert!(info.chain.contract.is_some());
    let entry: EntryView = l.json(&format!("/v1/ledger/entries/{b}")).await;
    assert_eq!(entry.position, 1);
    assert_eq!(entry.standings.iter().map(|s| s.alias.as_str()).collect::<Vec<_>>(), ["Cy", "Di", "Ed"]);

    // Every result verifies, from the server and as a client checks.
    for id in [a, b, c, d] {
        let v = l.verification(id).await;
        assert_eq!(v["verified"], true, "{v}");
        assert_eq!(checks(&v), all_pass());
        assert_eq!(l.verify_as_a_client(id).await, all_pass());
    }

    // The latest checkpoint is signed by the published key; every earlier
    // checkpoint is consistent with it.
    let key = domain::public_key(&info.public_key).unwrap();
    let latest: CheckpointView = l.json("/v1/ledger/checkpoint").await;
    let second = Checkpoint::verify(&latest.note, &info.origin, &key).unwrap();
    assert_eq!(second.size, 4);
    for size in 1..4u64 {
        let Ok(first) = l.get(&format!("/v1/ledger/checkpoints/{size}")).await.json::<CheckpointView>().await else {
            continue; // two entries may share a checkpoint
        };
        let first = Checkpoint::verify(&first.note, &info.origin, &key).unwrap();
        let proof: ConsistencyView = l.json(&format!("/v1/ledger/consistency?first={size}&second=4")).await;
        let proof: Vec<_> = proof.proof.iter().map(|h| ledger::api::unhex(h).unwrap()).collect();
        assert!(domain::verify_consistency(size, 4, &first.root, &second.root, &proof));
        assert!(!domain::verify_consistency(size, 4, &domain::leaf_hash(b"x"), &second.root, &proof));
    }

    // The chain holds every root anchored and every result.
    let root: ChainRootView = l.json("/v1/ledger/chain/roots/4").await;
    assert_eq!(root.root, latest.root);
    let on_chain: ChainResultView = l.json(&format!("/v1/ledger/chain/results/{c}")).await;
    assert_eq!(
        (on_chain.position, on_chain.leaf.as_str()),
        (2, l.json::<EntryView>(&format!("/v1/ledger/entries/{c}")).await.leaf.as_str())
    );

    // Another process on the same database replays the chain to the same
    // state, and goes on from it.
    let l = l.restart(&db).await;
    let info2: LedgerInfo = l.json("/v1/ledger").await;
    assert_eq!((info2.public_key, info2.chain.contract.clone()), (info.public_key, info.chain.contract));
    let e = l.finish(&["Jo", "Kim"]).await;
    for id in [a, e] {
        assert_eq!(checks(&l.verification(id).await), all_pass());
    }
}

async fn bad_requests_are_refused_clearly(db: TestDb) {
    let l = Ledger::start(&db, "").await;
    let a = l.finish(&["Ada", "Bob"]).await;
    let b = l.finish(&["Cy", "Di"]).await;
    let unknown = Uuid::now_v7();
    for path in [
        format!("/v1/ledger/entries/{unknown}"),
        format!("/v1/ledger/entries/{unknown}/verification"),
        format!("/v1/ledger/chain/results/{unknown}"),
        "/v1/ledger/chain/roots/99".to_owned(),
        "/v1/ledger/checkpoints/99".to_owned(),
        "/v1/ledger/consistency?first=1&second=99".to_owned(),
        format!("/v1/ledger/entries/{a}?size=99"),
    ] {
        assert_problem(l.get(&path).await, 404, None).await;
    }
    for path in [
        "/v1/ledger/entries/not-a-uuid",
        "/v1/ledger/checkpoints/-1",
        "/v1/ledger/consistency?first=1",
        "/v1/ledger/consistency?first=1&second=2&third=3",
    ] {
        assert_problem(l.get(path).await, 400, None).await;
    }
    assert_problem(l.get("/v1/ledger/consistency?first=2&second=1").await, 422, None).await;
    // The checkpoint of one entry cannot hold the second.
    if l.get("/v1/ledger/checkpoints/1").await.status() == 200 {
        assert_problem(l.get(&format!("/v1/ledger/entries/{b}?size=1")).await, 422, None).await;
    }
}

async fn a_changed_result_is_detected(db: TestDb) {
    let l = Ledger::start(&db, "").await;
    let a = l.finish(&["Ada", "Bob"]).await;
    let b = l.finish(&["Cy", "Di"]).await;
    l.execute("UPDATE entries SET data = replace(data, 'Ada', 'Eve')").await;
    let v = l.verification(a).await;
    assert_eq!((v["verified"].as_bool(), checks(&v)), (Some(false), expect(2, "inclusion")));
    assert!(why(&v).contains("not in the log"), "{v}");
    assert_eq!(l.verify_as_a_client(a).await, expect(2, "inclusion"));
    // Its neighbour is untouched.
    assert_eq!(checks(&l.verification(b).await), all_pass());
    // Its leaf changed to match: the proof of its neighbour, which holds
    // that leaf, no longer leads to the signed root.
    l.execute("UPDATE entries SET leaf = (SELECT leaf FROM entries WHERE position = 1) WHERE position = 0").await;
    assert_eq!(checks(&l.verification(b).await), expect(2, "inclusion"));
}

async fn a_changed_checkpoint_is_detected(db: TestDb) {
    let l = Ledger::start(&db, "").await;
    let a = l.finish(&["Ada", "Bob"]).await;
    // Another size in the note: the signature no longer holds.
    l.execute("UPDATE checkpoints SET note = replace(note, 'local\n1\n', 'local\n2\n')").await;
    let v = l.verification(a).await;
    assert_eq!(checks(&v), expect(1, "checkpoint"));
    assert!(why(&v).contains("signature"), "{v}");
    assert_eq!(l.verify_as_a_client(a).await, expect(1, "checkpoint"));
}

async fn a_log_rewritten_with_the_key_is_caught_by_the_chain(db: TestDb) {
    let l = Ledger::start(&db, "").await;
    let a = l.finish(&["Ada", "Bob"]).await;
    // Someone with the database and the signing key rewrites the result,
    // its leaf, and the checkpoint, signed again: the log agrees with
    // itself, and only the chain remembers.
    let key = SigningKey::from_bytes(&l.seed().await);
    l.execute("UPDATE entries SET data = replace(data, 'Ada', 'Eve')").await;
    let data: String = with_db!(&l.db, pool => sqlx::query_scalar("SELECT data FROM entries WHERE position = 0")
        .fetch_one(pool).await)
    .unwrap();
    let leaf = domain::leaf_hash(data.as_bytes());
    let note = Checkpoint { origin: "panal.ledger/local".into(), size: 1, root: leaf }.sign(&key);
    with_db!(write &l.db, pool => sqlx::query("UPDATE entries SET leaf = $1 WHERE position = 0")
        .bind(leaf.to_vec()).execute(pool).await.map(|_| ()))
    .unwrap();
    with_db!(write &l.db, pool => sqlx::query("UPDATE checkpoints SET note = $1, root = $2 WHERE size = 1")
        .bind(note).bind(leaf.to_vec()).execute(pool).await.map(|_| ()))
    .unwrap();
    let v = l.verification(a).await;
    assert_eq!(checks(&v), expect(3, "chain_root"));
    assert!(why(&v).contains("different root"), "{v}");
    assert_eq!(l.verify_as_a_client(a).await, expect(3, "chain_root"));
}

async fn an_altered_chain_is_detected(db: TestDb) {
    let l = Ledger::start(&db, "").await;
    let a = l.finish(&["Ada", "Bob"]).await;
    // The anchoring transaction's input changed in storage (the root it
    // carried): the block no longer replays, in a new process.
    l.execute("UPDATE chain_blocks SET input = output WHERE number = 2").await;
    let l = l.restart(&db).await;
    let v = l.verification(a).await;
    assert_eq!(checks(&v), expect(3, "chain_root"));
    assert!(why(&v).contains("altered"), "{v}");
    assert_problem(l.get("/v1/ledger/chain/roots/1").await, 500, None).await;
}

async fn a_key_from_a_file_signs(db: TestDb) {
    let key = SigningKey::from_bytes(&[42; 32]);
    let path = std::env::temp_dir().join(format!("panal-ledger-key-{}.pem", Uuid::now_v7().simple()));
    std::fs::write(&path, key.to_pkcs8_pem(Default::default()).unwrap().as_bytes()).unwrap();
    let l = Ledger::start(&db, &format!("signing_key_file = {:?}\norigin = \"panal.ledger/test\"\n", path)).await;
    let a = l.finish(&["Ada", "Bob"]).await;
    let info: LedgerInfo = l.json("/v1/ledger").await;
    let published = base64::engine::general_purpose::STANDARD.encode(key.verifying_key().as_bytes());
    assert_eq!((info.public_key, info.origin.as_str()), (published, "panal.ledger/test"));
    assert_eq!(checks(&l.verification(a).await), all_pass());
    let count: i64 =
        with_db!(&l.db, pool => sqlx::query_scalar("SELECT count(*) FROM signing_key").fetch_one(pool).await).unwrap();
    assert_eq!(count, 0, "no key made when one is configured");
    let _ = std::fs::remove_file(path);
}

/// A child process stopped when the test ends, passed or not.
struct Node(std::process::Child);

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A real chain: Anvil (Foundry's node, from the npm registry; CI sets
/// `PANAL_TEST_ANVIL` to its command). The ledger deploys the contract,
/// anchors with transactions it signs, and what it anchored is read back
/// from the node directly.
async fn anchors_on_a_json_rpc_chain(db: TestDb) {
    let Ok(anvil) = std::env::var("PANAL_TEST_ANVIL") else {
        let _ = std::io::Write::write_all(
            &mut std::io::stderr(),
            b"SKIPPED (JSON-RPC chain): set PANAL_TEST_ANVIL to the anvil command to run it\n",
        );
        return;
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let _node = Node(
        std::process::Command::new(anvil)
            .args(["--port", &port.to_string(), "--silent"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start anvil"),
    );
    let rpc = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let eth = |method: &'static str, params: Value| {
        let (http, rpc) = (http.clone(), rpc.clone());
        async move {
            let body = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
            let r: Value = http.post(&rpc).json(&body).send().await?.json().await?;
            Ok::<Value, reqwest::Error>(r["result"].clone())
        }
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while eth("eth_chainId", serde_json::json!([])).await.is_err() {
        assert!(Instant::now() < deadline, "anvil did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Anvil's first development account, a secret like any other here.
    let key = std::env::temp_dir().join(format!("panal-chain-key-{}", Uuid::now_v7().simple()));
    std::fs::write(&key, "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80\n").unwrap();
    let chain = format!("[ledger.chain]\nrpc_url = \"{rpc}\"\nkey_file = {key:?}\n");
    let l = Ledger::start(&db, &chain).await;
    let a = l.finish(&["Ada", "Bob"]).await;
    let b = l.finish(&["Cy", "Di", "Ed"]).await;
    let info: LedgerInfo = l.json("/v1/ledger").await;
    assert_eq!((info.chain.kind.as_str(), info.chain.chain_id), ("json-rpc", 31337));
    assert_eq!(info.chain.owner, "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266");
    for id in [a, b] {
        assert_eq!(checks(&l.verification(id).await), all_pass());
        assert_eq!(l.verify_as_a_client(id).await, all_pass());
    }
    // The root is on the node, read without the ledger: roots(uint64).
    let contract = info.chain.contract.clone().unwrap();
    let latest: CheckpointView = l.json("/v1/ledger/checkpoint").await;
    let selector = &revm::primitives::keccak256(b"roots(uint64)")[..4];
    let mut data = selector.to_vec();
    data.extend([0u8; 24]);
    data.extend(latest.size.to_be_bytes());
    let held = eth("eth_call", serde_json::json!([{"to": contract, "data": format!("0x{}", data.iter().map(|b| format!("{b:02x}")).collect::<String>())}, "latest"])).await.unwrap();
    assert_eq!(held.as_str().unwrap(), latest.root);
    // A restart keeps the contract it deployed and goes on with it.
    let l = l.restart_with(&db, &chain).await;
    let c = l.finish(&["Fay", "Gus"]).await;
    let again: LedgerInfo = l.json("/v1/ledger").await;
    assert_eq!(again.chain.contract, Some(contract));
    assert_eq!(checks(&l.verification(c).await), all_pass());
    // The log rewritten and signed again: the node still holds the root.
    let signing = SigningKey::from_bytes(&l.seed().await);
    l.execute("UPDATE entries SET data = replace(data, 'Fay', 'Eve')").await;
    let data: String = with_db!(&l.db, pool => sqlx::query_scalar("SELECT data FROM entries WHERE position = 2")
        .fetch_one(pool).await)
    .unwrap();
    let mut leaves: Vec<domain::Hash> = Vec::new();
    for position in 0..2i64 {
        let leaf: Vec<u8> = with_db!(&l.db, pool => sqlx::query_scalar("SELECT leaf FROM entries WHERE position = $1")
            .bind(position).fetch_one(pool).await)
        .unwrap();
        leaves.push(leaf.try_into().unwrap());
    }
    leaves.push(domain::leaf_hash(data.as_bytes()));
    let root = domain::root(&leaves);
    let note = Checkpoint { origin: "panal.ledger/local".into(), size: 3, root }.sign(&signing);
    with_db!(write &l.db, pool => sqlx::query("UPDATE entries SET leaf = $1 WHERE position = 2")
        .bind(leaves[2].to_vec()).execute(pool).await.map(|_| ()))
    .unwrap();
    with_db!(write &l.db, pool => sqlx::query("UPDATE checkpoints SET note = $1, root = $2 WHERE size = 3")
        .bind(note).bind(root.to_vec()).execute(pool).await.map(|_| ()))
    .unwrap();
    assert_eq!(checks(&l.verification(c).await), expect(3, "chain_root"));
    let _ = std::fs::remove_file(key);
}

kit::backend_tests! {
    async fn results_are_logged_signed_anchored_and_proved(db) { results_are_logged_signed_anchored_and_proved(db).await; }
    async fn bad_requests_are_refused_clearly(db) { bad_requests_are_refused_clearly(db).await; }
    async fn a_changed_result_is_detected(db) { a_changed_result_is_detected(db).await; }
    async fn a_changed_checkpoint_is_detected(db) { a_changed_checkpoint_is_detected(db).await; }
    async fn a_log_rewritten_with_the_key_is_caught_by_the_chain(db) { a_log_rewritten_with_the_key_is_caught_by_the_chain(db).await; }
    async fn an_altered_chain_is_detected(db) { an_altered_chain_is_detected(db).await; }
    async fn a_key_from_a_file_signs(db) { a_key_from_a_file_signs(db).await; }
    async fn anchors_on_a_json_rpc_chain(db) { anchors_on_a_json_rpc_chain(db).await; }
}
