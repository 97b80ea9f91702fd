//! Access-token verifications per second with `kit::auth::TokenVerifier`, the
//! code the gateway and every service run, for `bench/auth.sh`: a signature
//! check for every token (each token new to the verifier), and a token seen
//! before (the verified-token cache). One task per CPU.

#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)] // a benchmark tool

use std::sync::Arc;
use std::time::{Duration, Instant};

use auth::tokens::{KeyMaterial, SigningAlgorithm, sign_access_token};
use kit::auth::{AccessClaims, Jwks, KeySource, KeySourceError, TokenVerifier};
use uuid::Uuid;

struct Static(Jwks);

impl KeySource for Static {
    fn fetch(&self) -> std::pin::Pin<Box<dyn Future<Output = Result<Jwks, KeySourceError>> + Send + '_>> {
        let jwks = self.0.clone();
        Box::pin(async move { Ok(jwks) })
    }
}

fn token(key: &KeyMaterial) -> String {
    let now = chrono::Utc::now().timestamp();
    let claims = AccessClaims {
        iss: "http://localhost:8000".into(),
        aud: "panal".into(),
        sub: Uuid::now_v7(),
        sid: Some(Uuid::now_v7()),
        exp: now + 900,
        iat: now,
        jti: Uuid::now_v7(),
        roles: vec!["user".into()],
        client_id: None,
        scope: None,
    };
    sign_access_token(key, &claims).unwrap()
}

async fn rate(verifier: Arc<TokenVerifier>, tokens: Arc<Vec<String>>, threads: usize, run_for: Duration) -> f64 {
    let start = Instant::now();
    let tasks: Vec<_> = (0..threads)
        .map(|t| {
            let (v, tokens) = (verifier.clone(), tokens.clone());
            tokio::spawn(async move {
                let mut n = 0usize;
                while start.elapsed() < run_for {
                    // Threads walk the list from different places, so with many
                    // tokens none is seen twice within the cache's memory.
                    let token = &tokens[(t * tokens.len() / threads + n) % tokens.len()];
                    v.verify(token).await.unwrap();
                    n += 1;
                }
                n
            })
        })
        .collect();
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    total as f64 / start.elapsed().as_secs_f64()
}

#[tokio::main]
async fn main() {
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    // `cargo run --release -p auth --example verify_rate [EdDSA|RS256]`
    let algorithm = std::env::args().nth(1).map_or(SigningAlgorithm::EdDSA, |a| {
        SigningAlgorithm::from_name(&a).unwrap_or_else(|| panic!("unknown algorithm {a:?}: EdDSA or RS256"))
    });
    let key = KeyMaterial::generate(algorithm).unwrap();
    let source = Static(Jwks { keys: vec![key.jwk()] });
    let verifier = || {
        Arc::new(TokenVerifier::new(
            Static(source.0.clone()),
            "http://localhost:8000",
            "panal",
            Duration::from_secs(30),
            Duration::from_secs(30),
        ))
    };
    // Distinct tokens, more than the cache's 10,000, so each is checked
    // (fewer for RSA, whose signing is slow).
    let distinct = if algorithm == SigningAlgorithm::RS256 { 15_000 } else { 60_000 };
    let many: Arc<Vec<String>> = Arc::new((0..distinct).map(|_| token(&key)).collect());
    let one: Arc<Vec<String>> = Arc::new(vec![token(&key)]);
    let run_for = Duration::from_secs(3);
    let uncached = rate(verifier(), many, threads, run_for).await;
    let cached = rate(verifier(), one, threads, run_for).await;
    println!(
        "{} on {threads} tasks: {uncached:.0} verifications/s with a signature check (each token new), {cached:.0}/s for a token seen before (cache)",
        algorithm.name()
    );
}
