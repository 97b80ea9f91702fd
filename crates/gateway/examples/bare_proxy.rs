//! A reverse proxy of hyper alone, for `bench/gateway_cost.sh`: what hyper's
//! server and client cost per request with nothing else — no routing, token,
//! limits, ids, metrics, headers or retries — on the same thread-per-core
//! layout as the gateway. It tells how much of the gap to nginx is hyper's.
//!
//! `cargo run --release -p gateway --example bare_proxy -- 127.0.0.1:9090 127.0.0.1:9082 2`

use std::cell::RefCell;

use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

#[path = "support/thread_per_core.rs"]
mod thread_per_core;

thread_local! {
    /// This thread's idle connections to the upstream.
    static IDLE: RefCell<Vec<SendRequest<Incoming>>> = const { RefCell::new(Vec::new()) };
}

async fn forward(upstream: &'static str, req: hyper::Request<Incoming>) -> anyhow::Result<hyper::Response<Incoming>> {
    let mut sender = loop {
        match IDLE.with_borrow_mut(Vec::pop) {
            Some(mut s) if !s.is_closed() => {
                if s.ready().await.is_ok() {
                    break s;
                }
            }
            Some(_) => {}
            None => {
                let io = TcpStream::connect(upstream).await?;
                io.set_nodelay(true)?;
                let (s, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
                tokio::spawn(conn);
                break s;
            }
        }
    };
    let (mut parts, body) = req.into_parts();
    parts.headers.remove(http::header::CONNECTION);
    let answer = sender.send_request(hyper::Request::from_parts(parts, body)).await;
    IDLE.with_borrow_mut(|idle| idle.push(sender));
    Ok(answer?)
}

fn main() -> anyhow::Result<()> {
    let (listen, upstream, threads) = thread_per_core::args("127.0.0.1:9090");
    thread_per_core::run(&listen, threads, move |stream| async move {
        let service = hyper::service::service_fn(move |req| forward(upstream, req));
        let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
    })
}
