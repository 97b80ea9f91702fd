//! The byte-level front (`gateway::front`), on the wire: it answers as
//! hyper's path does, leaves to hyper whatever could be read two ways,
//! keeps pipelined requests in order, and holds clients to their deadlines.

use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::wire::{Got, Raw, Script, answer, gateway_with};
use super::*;

/// An answer as a client read it off the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// Reads answers from `stream` until it closes or nothing comes for
/// `quiet`; `head_requests` says which answers (by position) have no body.
async fn read_answers(stream: &mut TcpStream, quiet: Duration, head_requests: &[usize]) -> (Vec<Answer>, bool) {
    let mut buf = Vec::new();
    let mut answers = Vec::new();
    let mut closed = false;
    loop {
        while let Some((answer, used)) = parse_answer(&buf, head_requests.contains(&answers.len())) {
            answers.push(answer);
            buf.drain(..used);
        }
        let mut chunk = vec![0u8; 16384];
        match tokio::time::timeout(quiet, stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed = true;
                break;
            }
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => break,
        }
    }
    assert!(buf.is_empty() || closed, "a partial answer was left: {:?}", String::from_utf8_lossy(&buf));
    (answers, closed)
}

/// One whole answer at the front of `buf`, and its length.
fn parse_answer(buf: &[u8], head_request: bool) -> Option<(Answer, usize)> {
    let mut slots = [httparse::EMPTY_HEADER; 64];
    let mut parsed = httparse::Response::new(&mut slots);
    let httparse::Status::Complete(head) = parsed.parse(buf).unwrap() else { return None };
    let headers: Vec<(String, String)> = parsed
        .headers
        .iter()
        .map(|h| (h.name.to_ascii_lowercase(), String::from_utf8_lossy(h.value).into_owned()))
        .collect();
    let status = parsed.code.unwrap();
    let find = |name: &str| headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
    let rest = &buf[head..];
    let (body, used) = if head_request || status == 204 || status == 304 {
        (Vec::new(), 0)
    } else if find("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        let end = rest.windows(5).position(|w| w == b"0\r\n\r\n")? + 5;
        (dechunk(&rest[..end]), end)
    } else {
        let len: usize = find("content-length").map_or(0, |v| v.parse().unwrap());
        if rest.len() < len {
            return None;
        }
        (rest[..len].to_vec(), len)
    };
    Some((Answer { status, headers, body }, head + used))
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line = b.windows(2).position(|w| w == b"\r\n").unwrap();
        let size = usize::from_str_radix(std::str::from_utf8(&b[..line]).unwrap(), 16).unwrap();
        b = &b[line + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&b[..size]);
        b = &b[size + 2..];
    }
}

/// Sends `request` on a new connection and reads what comes back.
async fn exchange(addr: std::net::SocketAddr, request: &[u8], head_requests: &[usize]) -> (Vec<Answer>, bool) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    read_answers(&mut s, Duration::from_millis(400), head_requests).await
}

/// What a raw upstream answers: a length-framed body with fields the
/// gateway must drop or replace, a chunked one, none to HEAD.
fn rich_answer() -> Script {
    Arc::new(|got: &Got| {
        let fields = "content-type: text/plain\r\nconnection: keep-alive, x-up-hop\r\nx-up-hop: 1\r\nkeep-alive: timeout=5\r\n\
                      x-frame-options: SAMEORIGIN\r\nx-content-type-options: sniff-me\r\nx-request-id: upstream-made\r\n\
                      ratelimit-limit: 7\r\nvary: accept\r\naccess-control-allow-origin: https://evil.example\r\n";
        let answer = if got.path.ends_with("/chunked") {
            format!(
                "HTTP/1.1 200 OK\r\n{fields}transfer-encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
            )
        } else if got.method == "HEAD" {
            format!("HTTP/1.1 200 OK\r\n{fields}content-length: 5\r\n\r\n")
        } else {
            let body = format!("{} {} {}", got.method, got.path, got.body.len());
            format!("HTTP/1.1 201 Created\r\n{fields}content-length: {}\r\n\r\n{body}", body.len())
        };
        (answer.into_bytes(), false)
    })
}

/// Values that differ from one run to the next, made comparable.
fn normalized(headers: &[(String, String)]) -> Vec<(String, String)> {
    let uuid_like = |v: &str| v.len() == 36 && v.bytes().filter(|b| *b == b'-').count() == 4;
    let mut out: Vec<(String, String)> = headers
        .iter()
        .map(|(n, v)| {
            let n = n.to_ascii_lowercase();
            let v = match n.as_str() {
                "date" | "ratelimit-remaining" | "ratelimit-reset" => "<varies>".to_owned(),
                "x-request-id" if uuid_like(v) => "<generated>".to_owned(),
                // A new span id each hop; the trace id is the client's when it sent one.
                "traceparent" if v.contains("4bf92f3577b34da6a3ce929d0e0e4736") => v[..36].to_owned(),
                "traceparent" => "<generated>".to_owned(),
                _ => v.clone(),
            };
            (n, v)
        })
        .collect();
    out.sort();
    out
}

/// A problem document's request id is the answer's; the rest must match.
fn normalized_body(a: &Answer) -> Vec<u8> {
    if a.header("content-type") != Some("application/problem+json") {
        return a.body.clone();
    }
    let mut v: Value = serde_json::from_slice(&a.body).unwrap();
    assert_eq!(v["request_id"].as_str(), a.header("x-request-id"));
    v["request_id"] = json!("<generated>");
    v.to_string().into_bytes()
}

const CORS_AND_HSTS: &str = "hsts = true\n[gateway.cors]\nallowed_origins = [\"https://app.example\"]\n";

#[tokio::test]
async fn the_byte_path_answers_as_hypers_does_and_forwards_the_same_request() {
    let requests: [(&[u8], bool); 6] = [
        (
            b"GET /raw/a?q=1 HTTP/1.1\r\nHost: gw.example\r\nOrigin: https://app.example\r\nX-User-Id: forged\r\n\
              X-Forwarded-For: 203.0.113.9\r\nX-Forwarded-Proto: https\r\nX-Request-Id: client-id-1\r\n\
              Traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\nAccept: */*\r\n\r\n",
            false,
        ),
        (b"POST /raw/b HTTP/1.1\r\nHost: gw.example\r\nContent-Type: application/json\r\nContent-Length: 13\r\n\r\n{\"a\":\"hello\"}", false),
        (b"HEAD /raw/c HTTP/1.1\r\nHost: gw.example\r\n\r\n", true),
        (b"GET /raw/chunked HTTP/1.1\r\nHost: gw.example\r\nOrigin: https://other.example\r\n\r\n", false),
        (b"GET /v1/nowhere HTTP/1.1\r\nHost: gw.example\r\nOrigin: https://app.example\r\n\r\n", false),
        (b"DELETE /raw/d HTTP/1.1\r\nHost: gw.example\r\nConnection: close\r\n\r\n", false),
    ];
    let mut seen = Vec::new();
    // One upstream for both gateways (its address is in what it gets).
    let raw = Raw::start(rich_answer()).await;
    for byte_front in [true, false] {
        let toml = format!("byte_front = {byte_front}\n{CORS_AND_HSTS}");
        let (gw, _ctx) = gateway_with(&raw, &toml, HttpSettings::default()).await;
        let before = raw.got().len();
        let mut answers = Vec::new();
        for (request, head) in requests {
            let (got, _) = exchange(gw.addr, request, if head { &[0] } else { &[] }).await;
            assert_eq!(got.len(), 1, "one answer to {:?}", String::from_utf8_lossy(request));
            let a = &got[0];
            answers.push((a.status, normalized(&a.headers), normalized_body(a)));
        }
        let upstream: Vec<_> = raw.got()[before..]
            .iter()
            .map(|g| (g.method.clone(), g.path.clone(), normalized(&g.headers), g.body.clone()))
            .collect();
        seen.push((answers, upstream));
    }
    let (front, hyper) = (&seen[0], &seen[1]);
    for (i, (a, b)) in front.0.iter().zip(&hyper.0).enumerate() {
        assert_eq!(a, b, "answer {i}: byte-level front (left) and hyper (right) differ");
    }
    assert_eq!(front.1, hyper.1, "the upstream got different requests from the two paths");

    // And what they both do, spelled out once.
    let (status, headers, body) = &front.0[0];
    assert_eq!((*status, body.as_slice()), (201, &b"GET /raw/a?q=1 0"[..]));
    let has = |name: &str, value: &str| headers.iter().any(|(n, v)| n == name && v == value);
    for (name, value) in [
        ("x-request-id", "client-id-1"),
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "SAMEORIGIN"),
        ("referrer-policy", "no-referrer"),
        ("cross-origin-resource-policy", "same-site"),
        ("access-control-allow-origin", "https://app.example"),
        ("access-control-allow-credentials", "true"),
        ("vary", "accept"),
        ("vary", "origin"),
        ("ratelimit-limit", "200"),
    ] {
        assert!(has(name, value), "{name}: {value} missing from {headers:?}");
    }
    assert!(headers.iter().any(|(n, v)| n == "strict-transport-security" && v.starts_with("max-age=")));
    for gone in ["connection", "keep-alive", "x-up-hop"] {
        assert!(!headers.iter().any(|(n, _)| n == gone), "{gone} passed: {headers:?}");
    }
    let upstream = &front.1[0].2;
    let sent = |name: &str| upstream.iter().filter(|(n, _)| n == name).map(|(_, v)| v.as_str()).collect::<Vec<_>>();
    assert_eq!(sent("x-forwarded-for"), ["203.0.113.9, 127.0.0.1"]);
    assert_eq!(sent("x-forwarded-proto"), ["http"]);
    assert_eq!(sent("x-forwarded-host"), ["gw.example"]);
    assert_eq!(sent("x-request-id"), ["client-id-1"]);
    assert_eq!(sent("traceparent"), ["00-4bf92f3577b34da6a3ce929d0e0e4736-"]);
    assert!(sent("x-user-id").is_empty() && sent("origin") == ["https://app.example"]);
    // The chunked answer reaches the client whole, chunked again; HEAD has no body.
    assert_eq!(front.0[3].2, b"hello world");
    assert_eq!(front.0[2].2, b"");
    assert_eq!(front.0[4].0, 404);
}

/// A request the raw upstream must never see, hidden in another's body.
const SMUGGLED: &str = "/raw/smuggled";

#[tokio::test]
async fn requests_that_could_be_read_two_ways_never_carry_a_hidden_one_upstream() {
    let cases: [&[u8]; 8] = [
        // A length and a transfer coding (CL.TE and TE.CL).
        b"POST /raw/x HTTP/1.1\r\nHost: g\r\nContent-Length: 44\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /raw/smuggled HTTP/1.1\r\nHost: g\r\n\r\n",
        b"POST /raw/x HTTP/1.1\r\nHost: g\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n2c\r\nGET /raw/smuggled HTTP/1.1\r\nHost: g\r\n\r\n\r\n0\r\n\r\n",
        // Two lengths that disagree, a list, a signed one.
        b"POST /raw/x HTTP/1.1\r\nHost: g\r\nContent-Length: 0\r\nContent-Length: 40\r\n\r\nGET /raw/smuggled HTTP/1.1\r\nHost: g\r\n\r\n",
        b"POST /raw/x HTTP/1.1\r\nHost: g\r\nContent-Length: 0, 40\r\n\r\nGET /raw/smuggled HTTP/1.1\r\nHost: g\r\n\r\n",
        b"POST /raw/x HTTP/1.1\r\nHost: g\r\nContent-Length: +40\r\n\r\nGET /raw/smuggled HTTP/1.1\r\nHost: g\r\n\r\n",
        // A folded transfer coding, and one with a space before its colon.
        b"POST /raw/x HTTP/1.1\r\nHost: g\r\nContent-Length: 40\r\nX-A: b\r\n Transfer-Encoding: chunked\r\n\r\nGET /raw/smuggled HTTP/1.1\r\nHost: g\r\n\r\n",
        b"POST /raw/x HTTP/1.1\r\nHost: g\r\nTransfer-Encoding : chunked\r\nContent-Length: 40\r\n\r\nGET /raw/smuggled HTTP/1.1\r\nHost: g\r\n\r\n",
        // Bare LF line ends around a length.
        b"POST /raw/x HTTP/1.1\nHost: g\nContent-Length: 40\n\nGET /raw/smuggled HTTP/1.1\r\nHost: g\r\n\r\n",
    ];
    let raw = Raw::start(answer(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")).await;
    let mut outcomes = Vec::new();
    for byte_front in [true, false] {
        let (gw, _ctx) = gateway_with(&raw, &format!("byte_front = {byte_front}"), HttpSettings::default()).await;
        let mut per_case = Vec::new();
        for (i, case) in cases.iter().enumerate() {
            let before = raw.got().len();
            let (answers, _) = exchange(gw.addr, case, &[]).await;
            let got: Vec<(String, usize)> =
                raw.got()[before..].iter().map(|g| (g.path.clone(), g.body.len())).collect();
            let answered_ok = answers.iter().filter(|a| a.status == 200).count();
            // Whatever the upstream got, the gateway answered as a request of
            // its own (checked, limited, logged): nothing rode inside a body.
            assert_eq!(got.len(), answered_ok, "case {i} (byte_front = {byte_front}): {got:?} / {answers:?}");
            for (path, _) in &got {
                assert!(path != SMUGGLED || answered_ok == 2, "case {i}: a hidden request reached the upstream");
            }
            per_case.push((answers.iter().map(|a| a.status).collect::<Vec<_>>(), got));
        }
        outcomes.push(per_case);
    }
    // And each was read as hyper reads it: the front left them all to hyper.
    for (i, (front, hyper)) in outcomes[0].iter().zip(&outcomes[1]).enumerate() {
        assert_eq!(front, hyper, "case {i}: the front (left) read it otherwise than hyper (right)");
    }
}

#[tokio::test]
async fn a_request_without_one_host_is_refused_at_the_edge() {
    let raw = Raw::start(answer(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")).await;
    for byte_front in [true, false] {
        let (gw, _ctx) = gateway_with(&raw, &format!("byte_front = {byte_front}"), HttpSettings::default()).await;
        for case in [&b"GET /raw/x HTTP/1.1\r\n\r\n"[..], b"GET /raw/x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"] {
            let before = raw.got().len();
            let (answers, _) = exchange(gw.addr, case, &[]).await;
            assert_eq!(answers.first().map(|a| a.status), Some(400), "byte_front = {byte_front}: {answers:?}");
            assert_eq!(answers[0].header("content-type"), Some("application/problem+json"));
            assert_eq!(raw.got().len(), before, "nothing reached the upstream");
        }
    }
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order_even_when_hyper_takes_over() {
    let raw = Raw::start(rich_answer()).await;
    let (gw, _ctx) = gateway_with(&raw, "", HttpSettings::default()).await;
    // A plain GET (the front's), a chunked upload (hyper's, from then on),
    // and a GET after it, in one write.
    let (answers, closed) = exchange(
        gw.addr,
        b"GET /raw/1 HTTP/1.1\r\nHost: g\r\n\r\n\
          POST /raw/2 HTTP/1.1\r\nHost: g\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n\
          GET /raw/3 HTTP/1.1\r\nHost: g\r\n\r\n",
        &[],
    )
    .await;
    let bodies: Vec<String> = answers.iter().map(|a| String::from_utf8_lossy(&a.body).into_owned()).collect();
    assert_eq!(bodies, ["GET /raw/1 0", "POST /raw/2 3", "GET /raw/3 0"]);
    assert!(!closed, "the connection stays open");
    let got: Vec<(String, Vec<u8>)> = raw.got().into_iter().map(|g| (g.path, g.body)).collect();
    assert_eq!(got, [("/raw/1".into(), vec![]), ("/raw/2".into(), b"abc".to_vec()), ("/raw/3".into(), vec![])]);

    // Two plain ones in one write, the second asking to close.
    let (answers, closed) = exchange(
        gw.addr,
        b"GET /raw/4 HTTP/1.1\r\nHost: g\r\n\r\nGET /raw/5 HTTP/1.1\r\nHost: g\r\nConnection: close\r\n\r\n",
        &[],
    )
    .await;
    assert_eq!(answers.len(), 2);
    assert_eq!(answers[1].header("connection"), Some("close"));
    assert!(closed, "closed after the answer that said so");
}

#[tokio::test]
async fn slow_clients_are_cut_off_and_half_sent_bodies_never_reach_the_upstream() {
    let raw = Raw::start(answer(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")).await;
    let http = HttpSettings { header_read_timeout_ms: 300, ..HttpSettings::default() };
    let (gw, _ctx) = gateway_with(&raw, "", http).await;
    for partial in [
        &b"GET /raw/x HTTP/1.1\r\nHost:"[..],
        b"POST /raw/x HTTP/1.1\r\nHost: g\r\nContent-Length: 10\r\n\r\nabc",
        // An idle keep-alive connection is closed as well.
        b"",
    ] {
        let started = Instant::now();
        let mut s = TcpStream::connect(gw.addr).await.unwrap();
        s.write_all(partial).await.unwrap();
        let (answers, closed) = read_answers(&mut s, Duration::from_secs(3), &[]).await;
        assert!(closed && answers.is_empty(), "{:?}: {answers:?}", String::from_utf8_lossy(partial));
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(250) && took < Duration::from_secs(2), "closed after {took:?}");
    }
    // A client that leaves halfway through its body.
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"POST /raw/x HTTP/1.1\r\nHost: g\r\nContent-Length: 10\r\n\r\nabc").await.unwrap();
    drop(s);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(raw.got().is_empty(), "nothing half-sent went upstream");
    // A body sent slowly but in time goes up whole.
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"POST /raw/x HTTP/1.1\r\nHost: g\r\nContent-Length: 6\r\n\r\nab").await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    s.write_all(b"cdef").await.unwrap();
    let (answers, _) = read_answers(&mut s, Duration::from_millis(400), &[]).await;
    assert_eq!(answers.len(), 1);
    assert_eq!(raw.got().last().map(|g| g.body.clone()), Some(b"abcdef".to_vec()));
}

#[tokio::test]
async fn an_answer_streamed_by_the_upstream_reaches_the_client_as_it_comes() {
    // An upstream that sends the head and a first chunk, waits, then ends.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nfirst\r\n").await;
                tokio::time::sleep(Duration::from_millis(800)).await;
                let _ = s.write_all(b"4\r\nlast\r\n0\r\n\r\n").await;
            });
        }
    });
    let raw = Raw::elsewhere(addr);
    let (gw, _ctx) = gateway_with(&raw, "", HttpSettings::default()).await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    let started = Instant::now();
    s.write_all(b"GET /raw/stream HTTP/1.1\r\nHost: g\r\n\r\n").await.unwrap();
    let mut got = Vec::new();
    while !got.windows(5).any(|w| w == b"first") {
        let mut chunk = [0u8; 4096];
        let n = s.read(&mut chunk).await.unwrap();
        assert!(n > 0);
        got.extend_from_slice(&chunk[..n]);
    }
    assert!(started.elapsed() < Duration::from_millis(600), "the first chunk waited for the last");
    while !got.ends_with(b"0\r\n\r\n") {
        let mut chunk = [0u8; 4096];
        let n = s.read(&mut chunk).await.unwrap();
        assert!(n > 0, "the answer broke off");
        got.extend_from_slice(&chunk[..n]);
    }
    let (whole, used) = parse_answer(&got, false).unwrap();
    assert_eq!((whole.body.as_slice(), used), (&b"firstlast"[..], got.len()));
}

#[tokio::test]
async fn shutdown_closes_idle_connections_and_finishes_the_request_in_hand() {
    let raw = Raw::start(answer(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")).await;
    let (mut gw, _ctx) = gateway_with(&raw, "", HttpSettings::default()).await;
    let mut idle = TcpStream::connect(gw.addr).await.unwrap();
    idle.write_all(b"GET /raw/x HTTP/1.1\r\nHost: g\r\n\r\n").await.unwrap();
    let (answers, _) = read_answers(&mut idle, Duration::from_millis(300), &[]).await;
    assert_eq!(answers.len(), 1);
    let started = Instant::now();
    gw.stop().await.unwrap();
    let mut byte = [0u8; 1];
    let closed = tokio::time::timeout(Duration::from_secs(2), idle.read(&mut byte)).await;
    assert!(matches!(closed, Ok(Ok(0)) | Ok(Err(_))), "the idle connection was closed");
    assert!(started.elapsed() < Duration::from_secs(3));
}
