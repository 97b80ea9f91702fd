//! A service's own client credentials: a secret rotated in its file is used
//! from the next token on, without a restart.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use kit::credentials::{ServiceToken, TokenFetchError};
use kit::secret::{LiveSecret, Secret};

#[tokio::test]
async fn a_client_secret_rotated_in_its_file_is_used_without_a_restart() {
    kit::install_crypto();
    // Auth's token endpoint, as far as this client is concerned: one id, the
    // secret auth holds now.
    let current = Arc::new(Mutex::new("first-secret-of-32-characters-long".to_owned()));
    let held = current.clone();
    let app = Router::new().route(
        "/v1/auth/token",
        post(move |headers: HeaderMap| {
            let held = held.clone();
            async move {
                let want = format!("Basic {}", STANDARD.encode(format!("game-client:{}", held.lock().unwrap())));
                if headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(want.as_str()) {
                    axum::Json(serde_json::json!({"access_token": "a-token", "expires_in": 900})).into_response()
                } else {
                    StatusCode::UNAUTHORIZED.into_response()
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let auth = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let dir = std::env::temp_dir().join(format!("panal-rotation-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("game-client-secret");
    std::fs::write(&file, "first-secret-of-32-characters-long\n").unwrap();
    let secret = LiveSecret::from_file(
        "clients.game.secret",
        file.clone(),
        Secret::new("first-secret-of-32-characters-long".to_owned()),
    );
    let token = ServiceToken::new(&auth, "game-client".to_owned(), secret, &["realtime:publish"]).unwrap();
    assert_eq!(token.bearer().await.unwrap(), "a-token");

    // The operator rotates: auth is given the new secret (`panal auth
    // clients provision`), the service's Secret file is rewritten.
    *current.lock().unwrap() = "second-secret-of-32-characters-long".to_owned();
    token.forget().await;
    assert!(matches!(token.bearer().await, Err(TokenFetchError::Refused(StatusCode::UNAUTHORIZED))));
    std::fs::write(&file, "second-secret-of-32-characters-long\n").unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(token.bearer().await.unwrap(), "a-token", "the new secret, read from the file");
    let _ = std::fs::remove_dir_all(dir);
}
