//! Where channels live: in this process ([`Hub`], `panal up`), or shared by
//! every realtime replica through Redis ([`Shared`], when `redis_url` is
//! set). Sessions and the publish API speak to this and not to either.

use std::sync::Arc;

use serde_json::value::RawValue;

use crate::hub::{Frame, HistoryLimits, Hub, Link, Subscribed};
use crate::protocol::{ClientInfo, ProtocolError, Publication, StreamPosition};
use crate::shared::Shared;

pub struct Channels {
    /// This process's subscribers (and, alone, the streams themselves).
    pub hub: Arc<Hub>,
    pub shared: Option<Arc<Shared>>,
}

impl Channels {
    pub fn new(limits: HistoryLimits, redis_url: Option<&str>) -> anyhow::Result<Self> {
        Ok(match redis_url {
            None => Self { hub: Arc::new(Hub::new(limits)), shared: None },
            // The streams are Redis's; the local hub only fans out.
            Some(url) => Self {
                hub: Arc::new(Hub::for_shared(HistoryLimits { size: 0, ..limits })),
                shared: Some(Arc::new(Shared::new(url, limits)?)),
            },
        })
    }

    pub async fn subscribe(
        &self,
        channel: &str,
        link: Link,
        recover: Option<&StreamPosition>,
        reject_unrecovered: bool,
        reply: impl FnOnce(&Subscribed) -> Frame,
    ) -> Result<Subscribed, ProtocolError> {
        match &self.shared {
            None => self.hub.subscribe(channel, link, recover, reject_unrecovered, reply),
            Some(shared) => {
                let info = link.info.clone();
                let subscribed = shared.subscribe(&self.hub, channel, link, recover, reject_unrecovered, reply).await?;
                shared.joined(channel, &info).await;
                Ok(subscribed)
            }
        }
    }

    /// Removes a link; with a shared broker, its presence too (in the
    /// background: a leave cannot wait).
    pub fn unsubscribe(&self, channel: &str, link: u64, info: &ClientInfo) {
        self.hub.unsubscribe(channel, link);
        if let Some(shared) = self.shared.clone() {
            let (channel, info) = (channel.to_owned(), info.clone());
            tokio::spawn(async move { shared.left(&channel, &info).await });
        }
    }

    /// Publishes; the position, and how many subscribers here it reached
    /// (`None` when shared: replicas deliver it as Redis hands it to them).
    pub async fn publish(
        &self,
        channel: &str,
        data: Box<RawValue>,
        info: Option<ClientInfo>,
        skip: Vec<String>,
    ) -> Result<(StreamPosition, Option<usize>), ProtocolError> {
        match &self.shared {
            None => {
                let (position, reached) = self.hub.publish(channel, data, info, skip);
                Ok((position, Some(reached)))
            }
            Some(shared) => Ok((shared.publish(channel, &data, info.as_ref(), &skip).await?, None)),
        }
    }

    pub async fn publish_ephemeral(
        &self,
        channel: &str,
        data: Box<RawValue>,
        skip: &[String],
    ) -> Result<Option<usize>, ProtocolError> {
        match &self.shared {
            None => Ok(Some(self.hub.publish_ephemeral(channel, data, skip))),
            Some(shared) => shared.publish_ephemeral(channel, &data, skip).await.map(|()| None),
        }
    }

    pub async fn history(
        &self,
        channel: &str,
        user: &str,
        since: Option<&StreamPosition>,
        limit: usize,
        reverse: bool,
    ) -> Result<(Vec<Publication>, StreamPosition), ProtocolError> {
        match &self.shared {
            None => self.hub.history(channel, user, since, limit, reverse),
            Some(shared) => shared.history(channel, user, since, limit, reverse).await,
        }
    }

    /// Who is subscribed to `channel`, on every replica.
    pub async fn presence(&self, channel: &str) -> Result<Vec<ClientInfo>, ProtocolError> {
        match &self.shared {
            None => Ok(self.hub.presence(channel)),
            Some(shared) => shared.presence(channel).await,
        }
    }

    pub async fn sweep(&self) {
        self.hub.sweep();
        if let Some(shared) = &self.shared {
            shared.sweep(&self.hub).await;
        }
    }
}
