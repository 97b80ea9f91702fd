//! A byte-level reverse proxy for `bench/gateway_cost.sh`: what forwarding
//! costs per request when heads are never turned into header maps — parsed
//! in place by httparse, the upstream request and the client's answer
//! written straight from the parsed fields. It measures the floor a
//! byte-level front in the gateway could reach (docs/benchmarks.md, issue 4),
//! beside `bare_proxy` (hyper's server and client) and nginx.
//!
//! Not a server to run anything behind: requests with a body, chunked or
//! close-delimited answers and anything malformed end the connection; there
//! are no limits, timeouts, pools shared between connections, or any of the
//! gateway's features. Each client connection has one upstream connection.
//!
//! `cargo run --release -p gateway --example lean_proxy -- 127.0.0.1:9092 127.0.0.1:9082 2`

use std::io;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[path = "support/thread_per_core.rs"]
mod thread_per_core;

const MAX_HEADERS: usize = 32;

fn invalid(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

/// Reads more into `buf`; false when the peer closed.
async fn fill(io: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<bool> {
    if buf.capacity() - buf.len() < 1024 {
        buf.reserve(8192);
    }
    Ok(io.read_buf(buf).await? > 0)
}

fn field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

async fn serve(mut client: TcpStream, upstream: &'static str) -> io::Result<()> {
    let peer = client.peer_addr()?.ip().to_string();
    let mut up = TcpStream::connect(upstream).await?;
    up.set_nodelay(true)?;
    let (mut buf, mut ubuf, mut out) = (Vec::with_capacity(8192), Vec::with_capacity(8192), Vec::with_capacity(1024));
    loop {
        // The client's head, parsed once in place; the upstream request written from it.
        let head_len = loop {
            let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut req = httparse::Request::new(&mut slots);
            if let httparse::Status::Complete(n) = req.parse(&buf).map_err(invalid)? {
                out.clear();
                out.extend_from_slice(req.method.unwrap_or("GET").as_bytes());
                out.push(b' ');
                out.extend_from_slice(req.path.unwrap_or("/").as_bytes());
                out.extend_from_slice(b" HTTP/1.1\r\n");
                field(&mut out, b"host", upstream.as_bytes());
                for h in req.headers.iter() {
                    if h.name.eq_ignore_ascii_case("content-length") || h.name.eq_ignore_ascii_case("transfer-encoding")
                    {
                        return Err(invalid("request bodies are not handled here"));
                    }
                    if !(h.name.eq_ignore_ascii_case("host") || h.name.eq_ignore_ascii_case("connection")) {
                        field(&mut out, h.name.as_bytes(), h.value);
                    }
                }
                field(&mut out, b"x-forwarded-for", peer.as_bytes());
                out.extend_from_slice(b"\r\n");
                break n;
            }
            if !fill(&mut client, &mut buf).await? {
                return Ok(());
            }
        };
        buf.drain(..head_len);
        up.write_all(&out).await?;

        // The upstream's answer head, parsed once; the client's answer written from it.
        let (head_len, length) = loop {
            let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut answer = httparse::Response::new(&mut slots);
            if let httparse::Status::Complete(n) = answer.parse(&ubuf).map_err(invalid)? {
                let code = answer.code.unwrap_or(502);
                out.clear();
                out.extend_from_slice(b"HTTP/1.1 ");
                out.extend_from_slice(&[
                    b'0' + (code / 100) as u8,
                    b'0' + (code / 10 % 10) as u8,
                    b'0' + (code % 10) as u8,
                    b' ',
                ]);
                out.extend_from_slice(answer.reason.unwrap_or("").as_bytes());
                out.extend_from_slice(b"\r\n");
                let mut length = None;
                for h in answer.headers.iter() {
                    if h.name.eq_ignore_ascii_case("connection") || h.name.eq_ignore_ascii_case("keep-alive") {
                        continue;
                    }
                    if h.name.eq_ignore_ascii_case("content-length") {
                        length = std::str::from_utf8(h.value).ok().and_then(|v| v.trim().parse::<usize>().ok());
                    }
                    field(&mut out, h.name.as_bytes(), h.value);
                }
                out.extend_from_slice(b"\r\n");
                break (n, length.ok_or_else(|| invalid("only answers with a content-length are handled here"))?);
            }
            if !fill(&mut up, &mut ubuf).await? {
                return Ok(());
            }
        };
        while ubuf.len() < head_len + length {
            if !fill(&mut up, &mut ubuf).await? {
                return Ok(());
            }
        }
        out.extend_from_slice(&ubuf[head_len..head_len + length]);
        ubuf.drain(..head_len + length);
        client.write_all(&out).await?;
    }
}

fn main() -> anyhow::Result<()> {
    let (listen, upstream, threads) = thread_per_core::args("127.0.0.1:9092");
    thread_per_core::run(&listen, threads, move |stream| async move {
        let _ = serve(stream, upstream).await;
    })
}
