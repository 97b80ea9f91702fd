//! An SMS provider in the test, with Twilio's Messages API: it checks the
//! account's Basic credentials, keeps every message, and refuses the
//! number Twilio's test credentials refuse (`+15005550001`, invalid).

use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use base64::Engine;
use serde_json::json;

pub const ACCOUNT: &str = "AC0123456789abcdef0123456789abcdef";
pub const TOKEN: &str = "test-auth-token";
pub const FROM: &str = "+15005550006";
pub const INVALID: &str = "+15005550001";

#[derive(Debug, Clone)]
pub struct Sms {
    pub sid: String,
    pub to: String,
    pub body: String,
    pub callback: String,
}

#[derive(Clone)]
pub struct SmsProvider {
    pub url: String,
    sent: Arc<Mutex<Vec<Sms>>>,
}

impl SmsProvider {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let provider =
            Self { url: format!("http://{}", listener.local_addr().unwrap()), sent: Arc::new(Mutex::new(Vec::new())) };
        let app = axum::Router::new()
            .route("/2010-04-01/Accounts/{account}/Messages.json", axum::routing::post(create))
            .with_state(provider.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        provider
    }

    /// notify's `[notify.sms]` for this provider.
    pub fn config(&self) -> String {
        format!(
            "[notify.sms]\napi_url = \"{}\"\naccount_sid = \"{ACCOUNT}\"\nauth_token = \"{TOKEN}\"\nfrom = \"{FROM}\"\nper_second = 100\n",
            self.url
        )
    }

    pub fn sent(&self) -> Vec<Sms> {
        self.sent.lock().unwrap().clone()
    }
}

async fn create(
    State(provider): State<SmsProvider>,
    Path(account): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> axum::response::Response {
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{ACCOUNT}:{TOKEN}"));
    let authorized = headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(&format!("Basic {basic}"));
    if account != ACCOUNT || !authorized {
        return (StatusCode::UNAUTHORIZED, axum::Json(json!({"code": 20003, "message": "Authenticate"})))
            .into_response();
    }
    let form: Vec<(String, String)> = url::form_urlencoded::parse(&body).into_owned().collect();
    let field = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()).unwrap_or_default();
    assert_eq!(field("From"), FROM);
    if field("To") == INVALID {
        let refusal = json!({"code": 21211, "message": "The 'To' number is not a valid phone number.", "status": 400});
        return (StatusCode::BAD_REQUEST, axum::Json(refusal)).into_response();
    }
    let sid = format!("SM{}", uuid::Uuid::new_v4().simple());
    let sms = Sms { sid: sid.clone(), to: field("To"), body: field("Body"), callback: field("StatusCallback") };
    provider.sent.lock().unwrap().push(sms);
    (StatusCode::CREATED, axum::Json(json!({"sid": sid, "status": "queued"}))).into_response()
}
