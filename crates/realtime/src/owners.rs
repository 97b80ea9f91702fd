//! The services that own channels: asking them whether a user may
//! subscribe, and forwarding the clients' `rpc` calls to them.
//!
//! **Grants.** Realtime calls the owning service with the user's own access
//! token: `GET /v1/<owner>/realtime/channels/{channel}` answers 204 when the
//! caller may subscribe, 403 or 404 when not. The owner decides from its
//! own data (chat: room membership, bans; game: players and spectators),
//! realtime needs no copy of it, no secret is shared between services, and
//! a member removed from a room is refused at their next subscribe.
//! Deny by default: an owner that is not running, not reachable, or answers
//! anything else refuses.
//!
//! **RPC.** A client's `rpc` with method `<owner>.<name>` (`chat.send`)
//! becomes `POST /v1/<owner>/rpc/<name>` with the rpc's data as the JSON
//! body and the connection's token, so the owner sees the same user with
//! the same rights as over HTTP. A 2xx answer's JSON is the rpc's result; a
//! 4xx is an rpc error whose code is the HTTP status and whose message is
//! the problem's detail; anything else is error 100 (temporary).

use std::borrow::Cow;
use std::collections::HashMap;
use std::time::Duration;

use kit::peer::{Credentials, PeerClient};
use serde_json::value::RawValue;

use crate::domain::{Channel, Namespace};
use crate::protocol::{ErrorBody, ProtocolError};

pub struct Owners {
    owners: HashMap<&'static str, PeerClient>,
}

impl Owners {
    /// Clients for the owners this process knows.
    pub fn new(ctx: &kit::Context) -> anyhow::Result<Self> {
        let mut owners = HashMap::new();
        for owner in Namespace::ALL.iter().filter_map(|n| n.owner()) {
            if let Some(peer) = ctx.peers.iter().find(|p| p.name == owner) {
                owners.insert(owner, PeerClient::new(owner, peer.url.clone(), Duration::from_secs(2))?);
            }
        }
        Ok(Self { owners })
    }

    /// Whether `owner` lets the holder of `token` subscribe to `channel`.
    pub async fn allows(&self, owner: &str, token: &str, channel: &Channel) -> bool {
        let Some(peer) = self.owners.get(owner) else {
            return false;
        };
        let path = format!("/v1/{owner}/realtime/channels/{}", channel.as_str());
        match peer.get(&path, Credentials::Bearer(token)).await {
            Ok(response) => response.status() == reqwest::StatusCode::NO_CONTENT,
            Err(e) => {
                tracing::warn!(owner, error = %e, "could not ask a channel's owner; refusing the subscription");
                false
            }
        }
    }

    /// Forwards the rpc `method` (`<owner>.<name>`) with `data` for the
    /// holder of `token`; its result's data, or the error to reply with.
    pub async fn rpc(
        &self,
        token: &str,
        method: &str,
        data: Option<&RawValue>,
    ) -> Result<Option<Box<RawValue>>, ErrorBody> {
        let (owner, name) = method.split_once('.').ok_or(ProtocolError::MethodNotFound.body())?;
        let well_formed = !name.is_empty()
            && name.len() <= 64
            && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        let peer = self.owners.get(owner).filter(|_| well_formed).ok_or(ProtocolError::MethodNotFound.body())?;
        let body: serde_json::Value = match data {
            Some(raw) => {
                serde_json::from_str(raw.get()).map_err(|_| ProtocolError::BadRequest("rpc data is not JSON").body())?
            }
            None => serde_json::json!({}),
        };
        let path = format!("/v1/{owner}/rpc/{name}");
        let response =
            peer.send(reqwest::Method::POST, &path, Credentials::Bearer(token), Some(&body)).await.map_err(|e| {
                tracing::warn!(owner, error = %e, "could not forward an rpc");
                ProtocolError::Internal.body()
            })?;
        let status = response.status();
        let text = response.text().await.map_err(|_| ProtocolError::Internal.body())?;
        if status.is_success() {
            if text.trim().is_empty() {
                return Ok(None);
            }
            return RawValue::from_string(text).map(Some).map_err(|_| ProtocolError::Internal.body());
        }
        if status.is_client_error() {
            // The problem document's detail (or title) says why.
            let problem: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
            let message = problem["detail"]
                .as_str()
                .or_else(|| problem["title"].as_str())
                .unwrap_or_else(|| status.canonical_reason().unwrap_or("refused"))
                .to_owned();
            return Err(ErrorBody {
                code: u32::from(status.as_u16()),
                message: Cow::Owned(message),
                temporary: status == reqwest::StatusCode::TOO_MANY_REQUESTS,
            });
        }
        tracing::warn!(owner, %status, "an rpc's owner failed");
        Err(ProtocolError::Internal.body())
    }
}
