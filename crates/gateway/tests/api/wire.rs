//! The gateway's upstream client on the wire: a raw TCP upstream answers
//! with scripted bytes, so framing, interim answers, malformed answers and
//! connection reuse are checked byte for byte.

use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::*;

/// A request as the raw upstream read it.
#[derive(Debug, Clone)]
pub(crate) struct Got {
    pub(crate) method: String,
    pub(crate) path: String,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
    /// Which connection (in accept order) carried it.
    pub(crate) conn: usize,
}

impl Got {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// What the script answers: the bytes to write, and whether to close the
/// connection afterwards.
pub(crate) type Script = Arc<dyn Fn(&Got) -> (Vec<u8>, bool) + Send + Sync>;

pub(crate) struct Raw {
    pub(crate) addr: std::net::SocketAddr,
    got: Arc<Mutex<Vec<Got>>>,
}

impl Raw {
    pub(crate) async fn start(script: Script) -> Self {
        Self::start_with(script, false).await
    }

    /// `early`: answer as soon as the head is read, without reading the body
    /// (then drain it, or with `stall`, answer half a second later and leave
    /// the body unread and the connection open).
    async fn start_with(script: Script, early: bool) -> Self {
        Self::start_mode(script, early, false).await
    }

    async fn start_mode(script: Script, early: bool, stall: bool) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let got = Arc::new(Mutex::new(Vec::new()));
        let accepted = AtomicUsize::new(0);
        let g = got.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                let conn = accepted.fetch_add(1, Ordering::SeqCst);
                let (g, script) = (g.clone(), script.clone());
                tokio::spawn(Box::pin(serve(stream, conn, g, script, early, stall)));
            }
        });
        Self { addr, got }
    }

    /// An upstream served by someone else at `addr` (nothing recorded).
    pub(crate) fn elsewhere(addr: std::net::SocketAddr) -> Self {
        Self { addr, got: Arc::default() }
    }

    /// The proxied requests (not the gateway's health checks).
    pub(crate) fn got(&self) -> Vec<Got> {
        self.got.lock().unwrap().iter().filter(|g| g.path.starts_with("/raw")).cloned().collect()
    }

    /// Connections that carried proxied requests.
    fn connections(&self) -> usize {
        self.got().iter().map(|g| g.conn).collect::<std::collections::BTreeSet<_>>().len()
    }
}

async fn serve(
    mut stream: TcpStream,
    conn: usize,
    got: Arc<Mutex<Vec<Got>>>,
    script: Script,
    early: bool,
    stall: bool,
) {
    let mut buf = Vec::new();
    loop {
        // The head.
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let mut slots = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut slots);
        req.parse(&buf[..head_end]).unwrap();
        let mut g = Got {
            method: req.method.unwrap().to_owned(),
            path: req.path.unwrap().to_owned(),
            headers: req
                .headers
                .iter()
                .map(|h| (h.name.to_owned(), String::from_utf8_lossy(h.value).into_owned()))
                .collect(),
            body: Vec::new(),
            conn,
        };
        buf.drain(..head_end);
        if !early {
            if let Some(len) = g.header("content-length").map(|v| v.parse::<usize>().unwrap()) {
                while buf.len() < len {
                    let mut chunk = [0u8; 4096];
                    let n = stream.read(&mut chunk).await.unwrap();
                    assert!(n > 0, "the gateway closed mid-body");
                    buf.extend_from_slice(&chunk[..n]);
                }
                g.body = buf.drain(..len).collect();
            } else if g.header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
                // Read to the terminating chunk and decode.
                loop {
                    if let Some(end) = buf.windows(5).position(|w| w == b"0\r\n\r\n")
                        && decode_chunked(&buf[..end + 5]).is_some()
                    {
                        g.body = decode_chunked(&buf[..end + 5]).unwrap();
                        buf.drain(..end + 5);
                        break;
                    }
                    let mut chunk = [0u8; 4096];
                    let n = stream.read(&mut chunk).await.unwrap();
                    assert!(n > 0, "the gateway closed mid-body");
                    buf.extend_from_slice(&chunk[..n]);
                }
            }
        }
        let (answer, close) = script(&g);
        got.lock().unwrap().push(g);
        if stall {
            // Answer once the sender has filled every buffer between us.
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        if stream.write_all(&answer).await.is_err() {
            return;
        }
        if stall {
            // Neither reads nor closes: the sender must notice the answer anyway.
            tokio::time::sleep(Duration::from_secs(5)).await;
            return;
        }
        if early {
            // A careful server reads what is still coming before it closes,
            // so its answer is not lost to a reset.
            let mut sink = [0u8; 16384];
            let _ = tokio::time::timeout(Duration::from_secs(2), async {
                while let Ok(n) = stream.read(&mut sink).await {
                    if n == 0 {
                        break;
                    }
                }
            })
            .await;
            return;
        }
        if close {
            return;
        }
    }
}

/// The data of a complete chunked body, if `b` is exactly one.
fn decode_chunked(mut b: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line = b.windows(2).position(|w| w == b"\r\n")?;
        let size = usize::from_str_radix(std::str::from_utf8(&b[..line]).ok()?, 16).ok()?;
        b = &b[line + 2..];
        if size == 0 {
            return (b == b"\r\n").then_some(out);
        }
        out.extend_from_slice(b.get(..size)?);
        b = b.get(size + 2..)?;
    }
}

/// A gateway with the public route `/raw` to `raw`.
async fn gateway_to(raw: &Raw) -> (TestServer, TestContext) {
    gateway_with(raw, "", HttpSettings::default()).await
}

/// [`gateway_to`], with more `[gateway]` settings (`toml`, lines of the
/// section) and the given HTTP settings.
pub(crate) async fn gateway_with(raw: &Raw, toml: &str, http: HttpSettings) -> (TestServer, TestContext) {
    let config = Config::from_toml(&format!(
        "[gateway]\nupstream_timeout_ms = 2000\n{toml}\n[gateway.health]\ninterval_ms = 600000\n[gateway.upstreams]\nraw = [\"http://{}\"]\n\n[[gateway.routes]]\nprefix = \"/raw\"\nupstream = \"raw\"\npublic = true\n",
        raw.addr
    ))
    .unwrap();
    let ctx = TestContext::new(config).await;
    let upstreams = vec![Upstream { service: "auth", url: "http://127.0.0.1:9".into() }];
    let server = TestServer::spawn(build_gateway(&ctx, &upstreams).await.unwrap(), http).await;
    (server, ctx)
}

pub(crate) fn answer(bytes: &'static [u8]) -> Script {
    Arc::new(move |_| (bytes.to_vec(), false))
}

#[tokio::test]
async fn a_chunked_answer_is_decoded_and_its_connection_reused() {
    let raw = Raw::start(answer(
        b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nx-trailer: dropped\r\n\r\n",
    ))
    .await;
    let (gw, _ctx) = gateway_to(&raw).await;
    let http = reqwest::Client::new();
    for _ in 0..3 {
        let r = http.get(gw.url("/raw/chunks")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert!(r.headers().get("transfer-encoding").is_none_or(|v| v == "chunked"));
        assert_eq!(r.text().await.unwrap(), "hello, world");
    }
    assert_eq!(raw.connections(), 1, "one upstream connection carries every request");
}

#[tokio::test]
async fn a_length_framed_answer_reuses_its_connection_and_the_request_head_is_clean() {
    let raw = Raw::start(answer(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: keep-alive\r\n\r\nok")).await;
    let (gw, _ctx) = gateway_to(&raw).await;
    let http = reqwest::Client::new();
    for _ in 0..3 {
        let r = http.get(gw.url("/raw/x?q=1")).header("expect", "100-continue").send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert!(r.headers().get("connection").is_none_or(|v| v != "keep-alive"), "hop-by-hop fields stay behind");
        assert_eq!(r.text().await.unwrap(), "ok");
    }
    assert_eq!(raw.connections(), 1);
    let got = raw.got();
    assert_eq!((got[0].method.as_str(), got[0].path.as_str()), ("GET", "/raw/x?q=1"));
    assert_eq!(got[0].header("host"), Some(raw.addr.to_string().as_str()));
    assert!(got[0].header("expect").is_none());
    assert!(got[0].header("content-length").is_none(), "a GET without a body gets no length");
}

#[tokio::test]
async fn an_answer_ended_by_closing_is_read_to_the_end_and_its_connection_not_reused() {
    let raw =
        Raw::start(Arc::new(|_| (b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nuntil the end".to_vec(), true)))
            .await;
    let (gw, _ctx) = gateway_to(&raw).await;
    let http = reqwest::Client::new();
    for _ in 0..2 {
        let r = http.get(gw.url("/raw/close")).send().await.unwrap();
        assert_eq!(r.text().await.unwrap(), "until the end");
    }
    assert_eq!(raw.connections(), 2);
}

#[tokio::test]
async fn connection_close_and_http_1_0_answers_are_not_reused() {
    let raw = Raw::start(Arc::new(|g: &Got| {
        if g.path.ends_with("/old") {
            (b"HTTP/1.0 200 OK\r\ncontent-length: 3\r\n\r\nold".to_vec(), false)
        } else {
            (b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\nconnection: close\r\n\r\nbye".to_vec(), false)
        }
    }))
    .await;
    let (gw, _ctx) = gateway_to(&raw).await;
    let http = reqwest::Client::new();
    assert_eq!(http.get(gw.url("/raw/close")).send().await.unwrap().text().await.unwrap(), "bye");
    assert_eq!(http.get(gw.url("/raw/old")).send().await.unwrap().text().await.unwrap(), "old");
    assert_eq!(http.get(gw.url("/raw/close")).send().await.unwrap().text().await.unwrap(), "bye");
    assert_eq!(raw.connections(), 3);
}

#[tokio::test]
async fn head_204_and_304_answers_have_no_body_and_keep_the_connection() {
    let raw = Raw::start(Arc::new(|g: &Got| {
        let bytes: &[u8] = match (g.method.as_str(), g.path.as_str()) {
            ("HEAD", _) => b"HTTP/1.1 200 OK\r\ncontent-length: 1234\r\n\r\n",
            (_, "/raw/204") => b"HTTP/1.1 204 No Content\r\n\r\n",
            _ => b"HTTP/1.1 304 Not Modified\r\netag: \"v1\"\r\ncontent-length: 99\r\n\r\n",
        };
        (bytes.to_vec(), false)
    }))
    .await;
    let (gw, _ctx) = gateway_to(&raw).await;
    let http = reqwest::Client::new();
    let r = http.head(gw.url("/raw/doc")).send().await.unwrap();
    assert_eq!((r.status().as_u16(), r.headers()["content-length"].to_str().unwrap()), (200, "1234"));
    let r = http.get(gw.url("/raw/204")).send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(r.text().await.unwrap(), "");
    let r = http.get(gw.url("/raw/304")).header("if-none-match", "\"v1\"").send().await.unwrap();
    assert_eq!(r.status(), 304);
    assert_eq!(r.text().await.unwrap(), "");
    assert_eq!(raw.connections(), 1);
}

#[tokio::test]
async fn interim_answers_are_skipped() {
    let raw = Raw::start(answer(
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a.css>; rel=preload\r\n\r\nHTTP/1.1 201 Created\r\ncontent-length: 4\r\n\r\ndone",
    ))
    .await;
    let (gw, _ctx) = gateway_to(&raw).await;
    let r = reqwest::Client::new().post(gw.url("/raw/make")).body("x").send().await.unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(r.text().await.unwrap(), "done");
}

#[tokio::test]
async fn malformed_answers_are_a_502_never_a_guess() {
    let raw = Raw::start(Arc::new(|g: &Got| {
        let bytes: Vec<u8> = match g.path.as_str() {
            "/raw/two-lengths" => b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\ncontent-length: 4\r\n\r\nabcd".to_vec(),
            "/raw/bad-length" => b"HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n".to_vec(),
            "/raw/garbage" => b"SMTP ready\r\n\r\n".to_vec(),
            "/raw/switch" => {
                b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n".to_vec()
            }
            _ => {
                // A head over 64 KiB (in fewer than 100 fields).
                let mut v = b"HTTP/1.1 200 OK\r\n".to_vec();
                for i in 0..90 {
                    v.extend_from_slice(format!("x-filler-{i}: {}\r\n", "y".repeat(800)).as_bytes());
                }
                v.extend_from_slice(b"content-length: 0\r\n\r\n");
                v
            }
        };
        (bytes, true)
    }))
    .await;
    let (gw, _ctx) = gateway_to(&raw).await;
    let http = reqwest::Client::new();
    for path in ["/raw/two-lengths", "/raw/bad-length", "/raw/garbage", "/raw/switch", "/raw/huge-head"] {
        let r = http.get(gw.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 502, "{path}");
        assert_eq!(r.headers()["content-type"], "application/problem+json");
    }
}

#[tokio::test]
async fn answers_with_many_fields_pass_whole_up_to_a_hundred() {
    let raw = Raw::start(Arc::new(|g: &Got| {
        // 60 fields: more than the parser's first try holds; 120: over the limit.
        let n = if g.path.ends_with("/sixty") { 60 } else { 120 };
        let mut v = b"HTTP/1.1 200 OK\r\n".to_vec();
        for i in 0..n {
            v.extend_from_slice(format!("x-field-{i}: value {i}\r\n").as_bytes());
        }
        v.extend_from_slice(b"content-length: 2\r\n\r\nok");
        (v, true)
    }))
    .await;
    let (gw, _ctx) = gateway_to(&raw).await;
    let http = reqwest::Client::new();
    let r = http.get(gw.url("/raw/sixty")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    for i in 0..60 {
        assert_eq!(r.headers()[format!("x-field-{i}").as_str()], format!("value {i}").as_str());
    }
    assert_eq!(r.text().await.unwrap(), "ok");
    let r = http.get(gw.url("/raw/too-many")).send().await.unwrap();
    assert_eq!(r.status(), 502);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
}

#[tokio::test]
async fn chunked_wins_over_a_length_and_the_connection_is_not_reused() {
    let raw = Raw::start(answer(
        b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    ))
    .await;
    let (gw, _ctx) = gateway_to(&raw).await;
    let http = reqwest::Client::new();
    for _ in 0..2 {
        let r = http.get(gw.url("/raw/both")).send().await.unwrap();
        assert!(r.headers().get("content-length").is_none_or(|v| v == "3"));
        assert_eq!(r.text().await.unwrap(), "abc");
    }
    assert_eq!(raw.connections(), 2);
}

#[tokio::test]
async fn a_broken_body_aborts_the_answer_instead_of_cutting_it_short() {
    let raw = Raw::start(Arc::new(|g: &Got| {
        let bytes: &[u8] = if g.path.ends_with("/short") {
            b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nonly5"
        } else {
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\nnot hex\r\n0\r\n\r\n"
        };
        (bytes.to_vec(), true)
    }))
    .await;
    let (gw, _ctx) = gateway_to(&raw).await;
    let http = reqwest::Client::new();
    for path in ["/raw/short", "/raw/bad-chunk"] {
        // The failure shows in the head or in the body, never as a short success.
        if let Ok(r) = http.get(gw.url(path)).send().await {
            assert!(r.bytes().await.is_err(), "{path}: the client must see the answer fail");
        }
    }
}

#[tokio::test]
async fn an_idle_connection_the_upstream_closed_is_not_used() {
    // The upstream closes every connection right after answering, but
    // keeps saying keep-alive: the gateway must notice before reusing it.
    let raw = Raw::start(Arc::new(|_| (b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".to_vec(), true))).await;
    let (gw, _ctx) = gateway_to(&raw).await;
    let http = reqwest::Client::new();
    for _ in 0..5 {
        let r = http.post(gw.url("/raw/once")).body("payload").send().await.unwrap();
        assert_eq!(r.status(), 200, "a POST is never sent on a closed connection");
        assert_eq!(r.text().await.unwrap(), "ok");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(raw.connections(), 5);
    assert!(raw.got().iter().all(|g| g.body == b"payload"));
}

#[tokio::test]
async fn bodies_go_up_by_length_or_chunked_as_they_came() {
    let raw = Raw::start(answer(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")).await;
    let (gw, _ctx) = gateway_to(&raw).await;
    let http = reqwest::Client::new();
    http.post(gw.url("/raw/sized")).body(vec![b'a'; 20_000]).send().await.unwrap();
    let chunks: Vec<Result<Bytes, std::io::Error>> =
        (0..5).map(|i| Ok(Bytes::from(vec![b'0' + i as u8; 3000]))).collect();
    http.post(gw.url("/raw/streamed"))
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    let got = raw.got();
    assert_eq!((got[0].header("content-length"), got[0].body.len()), (Some("20000"), 20_000));
    assert_eq!(got[1].header("transfer-encoding"), Some("chunked"));
    assert!(got[1].header("content-length").is_none());
    assert_eq!(got[1].body.len(), 15_000);
    assert!(got[1].body.starts_with(b"000") && got[1].body.ends_with(b"444"));
    assert_eq!(raw.connections(), 1);
}

#[tokio::test]
async fn an_early_answer_during_an_upload_reaches_the_client() {
    // The upstream refuses at the head and never reads the body.
    let raw = Raw::start_with(
        Arc::new(|_| {
            (b"HTTP/1.1 413 Content Too Large\r\ncontent-length: 8\r\nconnection: close\r\n\r\ntoo much".to_vec(), true)
        }),
        true,
    )
    .await;
    let (gw, _ctx) = gateway_to(&raw).await;
    // Under the gateway's own limit (64 KiB), over the upstream's taste.
    let r = reqwest::Client::new().post(gw.url("/raw/upload")).body(vec![b'z'; 60_000]).send().await.unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(r.text().await.unwrap(), "too much");
}

#[tokio::test]
async fn fields_an_answer_names_in_connection_stay_behind() {
    let raw = Raw::start(answer(
        b"HTTP/1.1 200 OK\r\nconnection: keep-alive, x-internal\r\nx-internal: secret\r\nkeep-alive: timeout=5\r\nx-public: yes\r\ncontent-length: 2\r\n\r\nok",
    ))
    .await;
    let (gw, _ctx) = gateway_to(&raw).await;
    let r = reqwest::Client::new().get(gw.url("/raw/fields")).send().await.unwrap();
    assert_eq!(r.headers()["x-public"], "yes");
    for gone in ["x-internal", "keep-alive"] {
        assert!(r.headers().get(gone).is_none(), "{gone} must not reach the client");
    }
    assert_eq!(r.text().await.unwrap(), "ok");
}

#[tokio::test]
async fn a_client_body_that_breaks_off_is_the_clients_fault_not_the_upstreams() {
    let raw = Raw::start(answer(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")).await;
    let (gw, _ctx) = gateway_to(&raw).await;
    // More bad bodies than the breaker's threshold (5) and the ejection's.
    for _ in 0..8 {
        let (_, head) = raw_request(
            gw.addr,
            b"POST /raw/up HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\nzz\r\nnot a chunk\r\n0\r\n\r\n",
        )
        .await;
        assert!(head.starts_with("HTTP/1.1 400"), "{head}");
        assert!(head.contains("application/problem+json"), "{head}");
    }
    let r = reqwest::Client::new().get(gw.url("/raw/fine")).send().await.unwrap();
    assert_eq!(r.status(), 200, "the upstream is still in rotation, its breaker closed");
}

#[tokio::test]
async fn an_early_answer_from_an_upstream_that_stops_reading_is_not_a_timeout() {
    let raw = Raw::start_mode(
        Arc::new(|_| (b"HTTP/1.1 413 Content Too Large\r\ncontent-length: 4\r\n\r\nnope".to_vec(), false)),
        true,
        true,
    )
    .await;
    let config = Config::from_toml(&format!(
        "[gateway]\nupstream_timeout_ms = 3000\n[gateway.upload_limits]\n\"/raw/huge\" = 67108864\n[gateway.health]\ninterval_ms = 600000\n[gateway.upstreams]\nraw = [\"http://{}\"]\n\n[[gateway.routes]]\nprefix = \"/raw\"\nupstream = \"raw\"\npublic = true\n",
        raw.addr
    ))
    .unwrap();
    let ctx = TestContext::new(config).await;
    let upstreams = vec![Upstream { service: "auth", url: "http://127.0.0.1:9".into() }];
    let gw = TestServer::spawn(build_gateway(&ctx, &upstreams).await.unwrap(), HttpSettings::default()).await;
    // 32 MiB: far more than the sockets between gateway and upstream hold.
    let size = 32 * 1024 * 1024;
    let client = TcpStream::connect(gw.addr).await.unwrap();
    let (mut read, mut write) = client.into_split();
    let sender = tokio::spawn(async move {
        let head = format!("POST /raw/huge HTTP/1.1\r\nhost: x\r\ncontent-length: {size}\r\n\r\n");
        let _ = write.write_all(head.as_bytes()).await;
        let chunk = vec![b'u'; 64 * 1024];
        for _ in 0..size / chunk.len() {
            if write.write_all(&chunk).await.is_err() {
                break;
            }
        }
    });
    let mut answer = vec![0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(10), read.read(&mut answer)).await.unwrap().unwrap();
    let head = String::from_utf8_lossy(&answer[..n]);
    // The upstream's answer, not the gateway's 504 after its timeout.
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");
    sender.abort();
}
