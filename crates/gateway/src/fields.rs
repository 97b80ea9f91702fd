//! The header fields the gateway treats specially, told apart by name once.
//!
//! Both ways a request can take through the gateway — hyper's header maps
//! and the byte-level front ([`crate::front`]), which never builds one —
//! decide what to forward, drop or replace from the same [`Field`] of a
//! name, so the two cannot drift apart. A name is classified by its length
//! first, then compared (ASCII case-insensitively) with the few names of
//! that length: a dozen instructions for the usual field.

/// A field name the gateway acts on; [`Field::Other`] for every other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Field {
    Other,
    // Framing and routing of the request.
    Host,
    ContentLength,
    TransferEncoding,
    Connection,
    Upgrade,
    Expect,
    Authorization,
    Origin,
    AccessControlRequestMethod,
    // What the gateway sets on forwarded requests.
    XForwardedFor,
    XForwardedProto,
    XForwardedHost,
    XRequestId,
    Traceparent,
    // The other hop-by-hop fields (RFC 9110 §7.6.1).
    KeepAlive,
    ProxyConnection,
    ProxyAuthenticate,
    ProxyAuthorization,
    Te,
    Trailer,
    // Identity headers only the platform may set.
    XUserId,
    XUserRoles,
    XSessionId,
    XAuthenticatedUser,
    // What the gateway and kit set on answers.
    XContentTypeOptions,
    XFrameOptions,
    ReferrerPolicy,
    CrossOriginResourcePolicy,
    StrictTransportSecurity,
    RateLimitLimit,
    RateLimitRemaining,
    RateLimitReset,
    AccessControlAllowOrigin,
    AccessControlAllowCredentials,
    AccessControlExposeHeaders,
    Vary,
    Date,
}

use Field::*;

/// Every named field with its name, by length (see [`Field::of`]).
const NAMES: &[(&str, Field)] = &[
    ("te", Te),
    ("host", Host),
    ("vary", Vary),
    ("date", Date),
    ("expect", Expect),
    ("origin", Origin),
    ("upgrade", Upgrade),
    ("trailer", Trailer),
    ("x-user-id", XUserId),
    ("connection", Connection),
    ("keep-alive", KeepAlive),
    ("traceparent", Traceparent),
    ("x-request-id", XRequestId),
    ("x-session-id", XSessionId),
    ("x-user-roles", XUserRoles),
    ("authorization", Authorization),
    ("content-length", ContentLength),
    ("x-forwarded-for", XForwardedFor),
    ("x-frame-options", XFrameOptions),
    ("referrer-policy", ReferrerPolicy),
    ("ratelimit-limit", RateLimitLimit),
    ("ratelimit-reset", RateLimitReset),
    ("x-forwarded-host", XForwardedHost),
    ("proxy-connection", ProxyConnection),
    ("x-forwarded-proto", XForwardedProto),
    ("transfer-encoding", TransferEncoding),
    ("proxy-authenticate", ProxyAuthenticate),
    ("proxy-authorization", ProxyAuthorization),
    ("ratelimit-remaining", RateLimitRemaining),
    ("x-authenticated-user", XAuthenticatedUser),
    ("x-content-type-options", XContentTypeOptions),
    ("strict-transport-security", StrictTransportSecurity),
    ("access-control-allow-origin", AccessControlAllowOrigin),
    ("cross-origin-resource-policy", CrossOriginResourcePolicy),
    ("access-control-request-method", AccessControlRequestMethod),
    ("access-control-expose-headers", AccessControlExposeHeaders),
    ("access-control-allow-credentials", AccessControlAllowCredentials),
];

/// Where each length's names start in [`NAMES`] (and end: the next entry).
const BY_LEN: [u8; 34] = {
    let mut starts = [0u8; 34];
    let mut len = 0;
    while len < 34 {
        let mut i = 0;
        while i < NAMES.len() && NAMES[i].0.len() < len {
            i += 1;
        }
        starts[len] = i as u8;
        len += 1;
    }
    starts
};

impl Field {
    /// The field `name` is (any ASCII case; `name` a token, as parsers
    /// leave it).
    pub fn of(name: &[u8]) -> Field {
        let len = name.len();
        if len + 1 >= BY_LEN.len() {
            return Other;
        }
        let candidates = &NAMES[usize::from(BY_LEN[len])..usize::from(BY_LEN[len + 1])];
        candidates.iter().find(|(n, _)| same_name(name, n.as_bytes())).map_or(Other, |(_, f)| *f)
    }

    /// The name in lower case (`""` for [`Field::Other`]).
    pub fn name(self) -> &'static str {
        NAMES.iter().find(|(_, f)| *f == self).map_or("", |(n, _)| n)
    }

    /// Describes one connection, not the message: never forwarded either way.
    pub fn is_hop_by_hop(self) -> bool {
        matches!(
            self,
            Connection
                | KeepAlive
                | ProxyConnection
                | ProxyAuthenticate
                | ProxyAuthorization
                | Te
                | Trailer
                | TransferEncoding
                | Upgrade
        )
    }

    /// Whether a client's field of this kind goes upstream (fields its
    /// `Connection` names aside). Left behind: `Host` (the instance's is
    /// sent), `Expect` (the gateway answers it), hop-by-hop fields, client
    /// identity headers, and what the gateway sets itself.
    pub fn forwarded(self) -> bool {
        !(self.is_hop_by_hop()
            || matches!(
                self,
                Host | Expect
                    | XUserId
                    | XUserRoles
                    | XSessionId
                    | XAuthenticatedUser
                    | XForwardedFor
                    | XForwardedProto
                    | XForwardedHost
                    | XRequestId
                    | Traceparent
            ))
    }

    /// A bit of its own, for sets of fields.
    pub const fn bit(self) -> u64 {
        1 << self as u8
    }
}

/// Whether the token `name` is `lower` (lower-case letters and `-`, of the
/// same length) in any case. Setting bit 5 lower-cases a letter; of the
/// bytes it maps onto a letter or `-`, the only others are control bytes,
/// which a token cannot hold. Without an early exit the loop runs in a few
/// wide instructions: faster, on names this short, than comparing byte by
/// byte and stopping at the first difference.
fn same_name(name: &[u8], lower: &[u8]) -> bool {
    name.iter().zip(lower).fold(0, |diff, (a, b)| diff | ((a | 0x20) ^ b)) == 0
}

/// The tokens a `Connection` value names besides `close` and `keep-alive`
/// (the usual values, which name no field): fields that are hop-by-hop too.
pub fn named_in_connection(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|b| *b == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty() && !t.eq_ignore_ascii_case(b"close") && !t.eq_ignore_ascii_case(b"keep-alive"))
}

/// Whether a `Connection` value asks for the connection to close.
pub fn says_close(value: &[u8]) -> bool {
    value.split(|b| *b == b',').any(|t| t.trim_ascii().eq_ignore_ascii_case(b"close"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_is_found_in_any_case_and_others_are_not() {
        assert!(NAMES.windows(2).all(|w| w[0].0.len() <= w[1].0.len()), "NAMES must be sorted by length");
        assert!(NAMES.len() < 64, "fields must fit a u64 set");
        for (name, field) in NAMES {
            assert_eq!(Field::of(name.as_bytes()), *field, "{name}");
            assert_eq!(Field::of(name.to_ascii_uppercase().as_bytes()), *field, "{name}");
            assert_eq!(field.name(), *name);
        }
        for other in ["", "h", "hosts", "content-type", "x-forwarded-fox", "accept", "x_user-id", &"a".repeat(200)] {
            assert_eq!(Field::of(other.as_bytes()), Other, "{other}");
        }
    }

    #[test]
    fn only_letters_change_case() {
        // Every byte a token may hold, in place of each byte of each name.
        let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
        for (name, field) in NAMES {
            for at in 0..name.len() {
                for b in (0..=255u8).filter(|b| token(*b)) {
                    let mut other = name.as_bytes().to_vec();
                    other[at] = b;
                    let same = b.eq_ignore_ascii_case(&name.as_bytes()[at]);
                    assert_eq!(Field::of(&other) == *field, same, "{:?}", String::from_utf8_lossy(&other));
                }
            }
        }
    }

    #[test]
    fn what_is_forwarded() {
        for kept in [Other, ContentLength, Authorization, Origin, Vary, Date] {
            assert!(kept.forwarded(), "{kept:?}");
        }
        for dropped in [Host, Expect, Connection, TransferEncoding, Upgrade, Te, XUserId, XForwardedFor, Traceparent] {
            assert!(!dropped.forwarded(), "{dropped:?}");
        }
    }

    #[test]
    fn connection_values() {
        assert_eq!(named_in_connection(b"close, x-secret ,keep-alive").collect::<Vec<_>>(), vec![&b"x-secret"[..]]);
        assert!(says_close(b"keep-alive, Close"));
        assert!(!says_close(b"keep-alive, closed"));
    }
}
