//! Channels and who may use them: pure rules, no I/O.
//!
//! A channel is `<namespace>:<name>`. Every namespace is deny by default:
//! `user:<id>` is readable by that user only (services publish to it);
//! the product namespaces (`chat:`, `game:`, `tournament:`, later `order:`,
//! `job:`) are granted by the service that owns them, which realtime asks
//! (see `docs/realtime.md`). Anything else is an unknown channel.

use uuid::Uuid;

/// Longest channel name accepted.
pub const MAX_CHANNEL_LEN: usize = 255;

/// A channel's namespace: what it carries and who decides who may read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Namespace {
    /// `user:<id>`: pushes to one user (notifications, invitations, calls).
    User,
    /// `chat:<room>`, granted by chat.
    Chat,
    /// `game:<match>`, granted by game.
    Game,
    /// `tournament:<id>`, granted by tournament.
    Tournament,
}

impl Namespace {
    pub fn name(self) -> &'static str {
        match self {
            Namespace::User => "user",
            Namespace::Chat => "chat",
            Namespace::Game => "game",
            Namespace::Tournament => "tournament",
        }
    }

    /// The service that grants subscriptions, for the namespaces a service owns.
    pub fn owner(self) -> Option<&'static str> {
        match self {
            Namespace::User => None,
            Namespace::Chat => Some("chat"),
            Namespace::Game => Some("game"),
            Namespace::Tournament => Some("tournament"),
        }
    }

    pub const ALL: [Namespace; 4] = [Namespace::User, Namespace::Chat, Namespace::Game, Namespace::Tournament];
}

/// A channel name, checked.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Channel {
    name: String,
    namespace: Namespace,
}

/// Why a channel name is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelError {
    /// Too long, empty, or with characters outside `[A-Za-z0-9_.:@-]`.
    Malformed,
    /// No such namespace.
    UnknownNamespace,
}

impl Channel {
    pub fn parse(name: &str) -> Result<Self, ChannelError> {
        let ok = |c: char| c.is_ascii_alphanumeric() || "_-.:@".contains(c);
        if name.is_empty() || name.len() > MAX_CHANNEL_LEN || !name.chars().all(ok) {
            return Err(ChannelError::Malformed);
        }
        let (namespace, rest) = name.split_once(':').ok_or(ChannelError::UnknownNamespace)?;
        let namespace =
            Namespace::ALL.into_iter().find(|n| n.name() == namespace).ok_or(ChannelError::UnknownNamespace)?;
        if rest.is_empty() {
            return Err(ChannelError::Malformed);
        }
        if namespace == Namespace::User && Uuid::parse_str(rest).is_err() {
            return Err(ChannelError::Malformed);
        }
        Ok(Self { name: name.to_owned(), namespace })
    }

    pub fn as_str(&self) -> &str {
        &self.name
    }

    pub fn namespace(&self) -> Namespace {
        self.namespace
    }

    /// The part after the namespace (`<id>` of `user:<id>`).
    pub fn key(&self) -> &str {
        self.name.split_once(':').map_or("", |(_, key)| key)
    }
}

/// What a client may do in a channel without asking its owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Subscribe (and read presence and history).
    Allowed,
    /// Ask the owning service.
    AskOwner(&'static str),
    Denied,
}

/// Whether `user` may subscribe to `channel`.
pub fn subscribe_access(user: Uuid, channel: &Channel) -> Access {
    match channel.namespace() {
        Namespace::User if channel.key() == user.to_string() => Access::Allowed,
        Namespace::User => Access::Denied,
        other => other.owner().map_or(Access::Denied, Access::AskOwner),
    }
}

/// Clients never publish directly: messages go to the owning service (a
/// chat message is an `rpc` to chat), which persists them and publishes.
/// Kept as a rule so a namespace that allows it is a deliberate change.
pub fn client_may_publish(_channel: &Channel) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_names_are_checked() {
        let me = Uuid::now_v7();
        assert_eq!(Channel::parse(&format!("user:{me}")).map(|c| c.namespace()), Ok(Namespace::User));
        assert_eq!(Channel::parse("chat:lobby").map(|c| c.key().to_owned()), Ok("lobby".to_owned()));
        for bad in ["", "user:", "user:not-a-uuid", "chat:", "chat:a b", "chat:<script>", &"c".repeat(300)] {
            assert_eq!(Channel::parse(bad), Err(ChannelError::Malformed), "{bad}");
        }
        for unknown in ["news:1", "lobby", "USER:1"] {
            assert_eq!(Channel::parse(unknown), Err(ChannelError::UnknownNamespace), "{unknown}");
        }
    }

    #[test]
    fn only_the_user_reads_their_channel_and_owners_grant_the_rest() {
        let (me, stranger) = (Uuid::now_v7(), Uuid::now_v7());
        let mine = Channel::parse(&format!("user:{me}")).unwrap_or_else(|_| unreachable!());
        assert_eq!(subscribe_access(me, &mine), Access::Allowed);
        assert_eq!(subscribe_access(stranger, &mine), Access::Denied);
        let room = Channel::parse("chat:42").unwrap_or_else(|_| unreachable!());
        assert_eq!(subscribe_access(me, &room), Access::AskOwner("chat"));
        assert!(!client_may_publish(&room));
    }
}
