//! The front's parser against hyper's, on generated requests: whenever the
//! front takes a request, hyper (served the same bytes) must read the same
//! request — method, target, every field, the body's length — and must not
//! refuse it. A disagreement is how request smuggling starts: the gateway
//! and the server behind it framing one byte stream two ways. The example
//! tests check the cases we thought of; this checks the ones we did not.
//!
//! Bounded: `PROPTEST_CASES` cases (default 20,000, two seconds or so; about
//! one in eight is a request the front takes and hyper is asked about), each
//! a fresh hyper connection over an in-memory pipe. A longer hunt:
//! `PROPTEST_CASES=2000000 cargo test -p gateway --lib front::fuzz`.

use http_body_util::BodyExt;
use proptest::prelude::*;
use tokio::io::AsyncWriteExt;

use super::{MAX_FIELDS, Parsed, parse};

/// What hyper read: method, target, fields (name lower-cased, value bytes),
/// body.
type Read = (String, String, Vec<(String, Vec<u8>)>, Vec<u8>);

/// Serves `bytes` to hyper and returns the first request it read, or `None`
/// when it refused them. The bytes stay open (no end of stream): hyper reads
/// the request, then waits for the next one.
async fn hyper_reads(bytes: Vec<u8>) -> Option<Read> {
    let (mut client, server) = tokio::io::duplex(1 << 20);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Read>();
    let service = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
        let tx = tx.clone();
        async move {
            let (parts, body) = req.into_parts();
            let fields = parts.headers.iter().map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec())).collect();
            if let Ok(body) = body.collect().await {
                let _ = tx.send((parts.method.to_string(), parts.uri.to_string(), fields, body.to_bytes().to_vec()));
            }
            Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Empty::<bytes::Bytes>::new()))
        }
    });
    let conn =
        hyper::server::conn::http1::Builder::new().serve_connection(hyper_util::rt::TokioIo::new(server), service);
    let _ = client.write_all(&bytes).await;
    tokio::select! {
        read = rx.recv() => read,
        // Refused (hyper answers 400 and closes): whatever it read before.
        _ = conn => rx.try_recv().ok(),
        () = tokio::time::sleep(std::time::Duration::from_secs(2)) => None,
    }
}

fn method() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        16 => prop::sample::select(vec!["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "get", "M-SEARCH"])
            .prop_map(|m| m.as_bytes().to_vec()),
        1 => Just(b"CONNECT".to_vec()),
        1 => prop::collection::vec(any::<u8>(), 0..8),
    ]
}

/// Targets mostly in origin form, with any byte sprinkled in.
fn target() -> impl Strategy<Value = Vec<u8>> {
    let byte = prop_oneof![
        16 => prop::sample::select(b"abz09/-._~%?&=+;:@!$'()*,".to_vec()),
        2 => prop::sample::select(b"#[]{}|\\^`\" <>".to_vec()),
        1 => any::<u8>(),
    ];
    prop_oneof![
        16 => prop::collection::vec(byte, 0..24).prop_map(|rest| [b"/".to_vec(), rest].concat()),
        1 => Just(b"*".to_vec()),
        1 => Just(b"http://a/b".to_vec()),
        1 => prop::collection::vec(any::<u8>(), 0..16),
    ]
}

fn version() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        30 => Just(b"HTTP/1.1".to_vec()),
        1 => Just(b"HTTP/1.0".to_vec()),
        1 => Just(b"HTTP/2.0".to_vec()),
        1 => Just(b"http/1.1".to_vec()),
        1 => Just(b"HTTP/1.1 ".to_vec()),
    ]
}

/// A field: mostly ones the front takes (with values that test how it reads
/// them), sometimes one that sends the request to hyper, sometimes noise.
fn field() -> impl Strategy<Value = (Vec<u8>, Vec<u8>)> {
    let text = prop::collection::vec(
        prop_oneof![
            16 => prop::sample::select(b"abcXYZ019-_.,;=/ :\t\"".to_vec()),
            1 => any::<u8>(),
        ],
        0..20,
    );
    let length = prop_oneof![
        8 => (0u32..40).prop_map(|n| n.to_string()),
        1 => prop::sample::select(vec!["05", "+5", "5, 5", " 5 ", "5 ", "0x5", "", "99999999999999999999", "-1"])
            .prop_map(str::to_owned),
    ];
    let benign = prop::sample::select(vec![
        "Accept",
        "User-Agent",
        "Authorization",
        "Origin",
        "X-Request-Id",
        "Traceparent",
        "X-Forwarded-For",
        "Cookie",
        "X-Custom",
        "Connection",
        "Keep-Alive",
        "Cache-Control",
    ]);
    let to_hyper = prop::sample::select(vec![
        "Transfer-Encoding",
        "Upgrade",
        "Expect",
        "Host",
        "Access-Control-Request-Method",
        "Content-Length",
    ]);
    let odd_name = prop_oneof![
        prop::sample::select(vec!["Host ", " Host", "Content-Length ", "Content_Length", "Ho\tst", "Host\0"])
            .prop_map(|n| n.as_bytes().to_vec()),
        prop::collection::vec(any::<u8>(), 0..8),
    ];
    prop_oneof![
        12 => (benign, text.clone()).prop_map(|(n, v)| (n.as_bytes().to_vec(), v)),
        3 => length.prop_map(|v| (b"Content-Length".to_vec(), v.into_bytes())),
        2 => prop::sample::select(vec!["close", "keep-alive", "Close, keep-alive", "x-a", "te, close"])
            .prop_map(|v| (b"Connection".to_vec(), v.as_bytes().to_vec())),
        1 => (to_hyper, text.clone()).prop_map(|(n, v)| (n.as_bytes().to_vec(), v)),
        1 => (odd_name, text).prop_map(|(n, v)| (n, v)),
    ]
}

fn line_end() -> impl Strategy<Value = &'static [u8]> {
    prop_oneof![40 => Just(&b"\r\n"[..]), 1 => Just(&b"\n"[..]), 1 => Just(&b"\r"[..]), 1 => Just(&b"\r\n "[..])]
}

prop_compose! {
    /// A request head and some bytes after it (a body, the next request,
    /// noise): mostly one the front takes, sometimes one it must leave.
    fn request()(
        method in method(),
        target in target(),
        version in version(),
        host in prop::bool::weighted(0.95),
        fields in prop::collection::vec((field(), line_end()), 0..6),
        tail in prop::collection::vec(any::<u8>(), 0..48),
        end in line_end(),
    ) -> Vec<u8> {
        let mut out = [method, b" ".to_vec(), target, b" ".to_vec(), version, b"\r\n".to_vec()].concat();
        if host {
            out.extend_from_slice(b"Host: example.com\r\n");
        }
        for ((name, value), eol) in fields {
            out.extend_from_slice(&name);
            out.extend_from_slice(b": ");
            out.extend_from_slice(&value);
            out.extend_from_slice(eol);
        }
        out.extend_from_slice(end);
        out.extend_from_slice(&tail);
        out
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(20_000),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn hyper_reads_every_request_the_front_takes_as_the_front_does(bytes in request()) {
        let mut slots = Vec::new();
        let Parsed::Complete(head) = parse(&bytes, &mut slots, 8192) else {
            // Left to hyper (or waiting for more): nothing of it is read here.
            return Ok(());
        };
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| {
            TestCaseError::fail(format!("runtime: {e}"))
        })?;
        let body_end = head.len + head.length as usize;
        if bytes.len() < body_end {
            // The front would wait for the rest of the body, as hyper does.
            return Ok(());
        }
        let read = runtime.block_on(hyper_reads(bytes.clone()));
        let Some((method, target, fields, body)) = read else {
            return Err(TestCaseError::fail(format!(
                "hyper refused a request the front took: {:?}",
                String::from_utf8_lossy(&bytes)
            )));
        };
        prop_assert_eq!(&method, head.method.as_str());
        prop_assert_eq!(target.as_bytes(), &bytes[head.target.clone()]);
        // Compared by name (stable: one name's values keep their order);
        // hyper's map groups a name's values together.
        let mut fields = fields;
        fields.sort_by(|a, b| a.0.cmp(&b.0));
        let mut ours: Vec<(String, Vec<u8>)> = slots
            .iter()
            .map(|s| (String::from_utf8_lossy(s.name(&bytes)).to_ascii_lowercase(), s.value(&bytes).to_vec()))
            .collect();
        ours.sort_by(|a, b| a.0.cmp(&b.0));
        prop_assert!(ours.len() <= MAX_FIELDS);
        prop_assert_eq!(&fields, &ours, "fields of {:?}", String::from_utf8_lossy(&bytes));
        prop_assert_eq!(body.len() as u64, head.length, "body of {:?}", String::from_utf8_lossy(&bytes));
        prop_assert_eq!(&body[..], &bytes[head.len..body_end]);
    }
}
