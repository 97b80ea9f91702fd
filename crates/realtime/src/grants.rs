//! Asking a channel's owner whether a user may subscribe.
//!
//! Realtime calls the owning service with the user's own access token:
//! `GET /v1/<owner>/realtime/channels/{channel}` answers 204 when the
//! caller may subscribe, 403 or 404 when not. The owner decides from its
//! own data (chat: room membership, bans; game: players and spectators),
//! realtime needs no copy of it, no secret is shared between services, and
//! a member removed from a room is refused at their next subscribe.
//! Deny by default: an owner that is not running, not reachable, or answers
//! anything else refuses.

use std::collections::HashMap;
use std::time::Duration;

use kit::peer::{Credentials, PeerClient};

use crate::domain::{Channel, Namespace};

pub struct Grants {
    owners: HashMap<&'static str, PeerClient>,
}

impl Grants {
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
}
