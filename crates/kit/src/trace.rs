//! W3C Trace Context (`traceparent`), the part Panal needs: keep the caller's
//! trace id, give each hop its own span id, and pass it on.
//!
//! These ids are on every log line, and they are the ids of the spans
//! exported over OTLP when that is on ([`crate::telemetry`]).

use std::fmt;

use http::HeaderMap;

/// The trace context of one request in one service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceContext {
    pub trace_id: [u8; 16],
    /// This hop's span id, sent as the parent id on outgoing calls.
    pub span_id: [u8; 8],
    /// The caller's span id, when the request came with a `traceparent`.
    pub parent_id: Option<[u8; 8]>,
    pub sampled: bool,
}

impl TraceContext {
    /// A new trace, for a request that did not carry one.
    pub fn new_root() -> Self {
        Self { trace_id: random_id(), span_id: new_span_id(), parent_id: None, sampled: true }
    }

    /// Continues the trace in `headers`, or starts a new one when the header is
    /// missing or malformed (as the specification asks).
    pub fn from_headers(headers: &HeaderMap) -> Self {
        Self::from_value(headers.get("traceparent").map(http::HeaderValue::as_bytes))
    }

    /// [`TraceContext::from_headers`] from the `traceparent` value itself.
    pub fn from_value(value: Option<&[u8]>) -> Self {
        value.and_then(|v| std::str::from_utf8(v).ok()).and_then(Self::parse_parent).unwrap_or_else(Self::new_root)
    }

    /// Parses `00-<trace-id>-<parent-id>-<flags>` into a child context.
    pub fn parse_parent(value: &str) -> Option<Self> {
        let mut parts = value.trim().split('-');
        let version = parts.next()?;
        let trace = parts.next()?;
        let parent = parts.next()?;
        let flags = parts.next()?;
        // Version 00 has exactly four fields; later versions may add more.
        if version.len() != 2 || version == "ff" || (version == "00" && parts.next().is_some()) {
            return None;
        }
        let trace_id: [u8; 16] = hex_decode(trace)?;
        let parent_id: [u8; 8] = hex_decode(parent)?;
        let [flags]: [u8; 1] = hex_decode(flags)?;
        if trace_id == [0; 16] || parent_id == [0; 8] {
            return None;
        }
        Some(Self { trace_id, span_id: new_span_id(), parent_id: Some(parent_id), sampled: flags & 1 == 1 })
    }

    /// The `traceparent` value for calls made while handling this request.
    pub fn header_value(&self) -> String {
        String::from_utf8_lossy(&self.encode()).into_owned()
    }

    /// [`TraceContext::header_value`] as a header value.
    pub fn header(&self) -> http::HeaderValue {
        http::HeaderValue::from_bytes(&self.encode()).unwrap_or(http::HeaderValue::from_static("-"))
    }

    /// `00-<trace id>-<span id>-<flags>`, without formatting machinery: the
    /// gateway writes one per request.
    pub fn encode(&self) -> [u8; 55] {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut out = *b"00-00000000000000000000000000000000-0000000000000000-00";
        let mut put = |at: usize, bytes: &[u8]| {
            for (i, b) in bytes.iter().enumerate() {
                out[at + 2 * i] = DIGITS[usize::from(b >> 4)];
                out[at + 2 * i + 1] = DIGITS[usize::from(b & 0xf)];
            }
        };
        put(3, &self.trace_id);
        put(36, &self.span_id);
        put(53, &[u8::from(self.sampled)]);
        out
    }

    pub fn trace_id_hex(&self) -> String {
        hex(&self.trace_id)
    }

    pub fn span_id_hex(&self) -> String {
        hex(&self.span_id)
    }
}

impl fmt::Display for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.header_value())
    }
}

fn new_span_id() -> [u8; 8] {
    random_id()
}

/// A random id that is not all zeros (which W3C and OpenTelemetry reserve
/// for "no id").
pub(crate) fn random_id<const N: usize>() -> [u8; N] {
    nonzero(random_bytes())
}

/// `N` random bytes for ids that must be unique, not secret (trace and span
/// ids, request ids).
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    for chunk in bytes.chunks_mut(8) {
        chunk.copy_from_slice(&fast_random().to_le_bytes()[..chunk.len()]);
    }
    bytes
}

/// 64 random bits: wyrand, per thread, seeded from the operating system. A
/// few instructions instead of a CSPRNG's block per request.
fn fast_random() -> u64 {
    use std::cell::Cell;
    thread_local! {
        static STATE: Cell<u64> = Cell::new(rand::random());
    }
    STATE.with(|state| {
        let s = state.get().wrapping_add(0xa076_1d64_78bd_642f);
        state.set(s);
        let t = u128::from(s) * u128::from(s ^ 0xe703_7ed1_a0b4_28db);
        ((t >> 64) as u64) ^ (t as u64)
    })
}

fn nonzero<const N: usize>(mut bytes: [u8; N]) -> [u8; N] {
    if bytes.iter().all(|b| *b == 0) {
        bytes[N - 1] = 1;
    }
    bytes
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

fn hex_decode<const N: usize>(s: &str) -> Option<[u8; N]> {
    // Lower-case only, as the specification requires.
    if s.len() != N * 2 || !s.bytes().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)) {
        return None;
    }
    let mut out = [0u8; N];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&s[i * 2..i * 2 + 2], 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_valid_traceparent_keeps_its_trace_and_gets_a_new_span() {
        let p = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let ctx = TraceContext::parse_parent(p).unwrap();
        assert_eq!(ctx.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(ctx.parent_id, Some([0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]));
        assert_ne!(ctx.span_id_hex(), "00f067aa0ba902b7");
        assert!(ctx.header_value().starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
        assert!(ctx.header_value().ends_with("-01"));
        assert_eq!(ctx.header(), ctx.header_value().as_str());
        assert_eq!(ctx.header_value().len(), 55);
        assert_eq!(TraceContext::parse_parent(&ctx.header_value()).map(|c| c.trace_id), Some(ctx.trace_id));
    }

    #[test]
    fn malformed_traceparents_are_refused() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        ] {
            assert!(TraceContext::parse_parent(bad).is_none(), "{bad}");
        }
    }
}
