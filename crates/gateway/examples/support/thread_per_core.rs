//! The gateway's thread-per-core layout for the benchmark proxies: each
//! thread runs its own single-threaded runtime and accepts from a shared
//! listener.

use std::future::Future;

use tokio::net::{TcpListener, TcpStream};

/// The command line of a benchmark proxy: `[listen] [upstream] [threads]`.
pub fn args(default_listen: &str) -> (String, &'static str, usize) {
    let mut args = std::env::args().skip(1);
    let listen = args.next().unwrap_or_else(|| default_listen.into());
    let upstream: &'static str = args.next().unwrap_or_else(|| "127.0.0.1:9082".into()).leak();
    let threads = args.next().and_then(|n| n.parse().ok()).unwrap_or(2);
    (listen, upstream, threads)
}

/// Serves `listen` on `threads` threads, `serve` taking each connection.
pub fn run<F, Fut>(listen: &str, threads: usize, serve: F) -> anyhow::Result<()>
where
    F: Fn(TcpStream) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = std::net::TcpListener::bind(listen)?;
    listener.set_nonblocking(true)?;
    let mut handles = Vec::new();
    for _ in 0..threads {
        let listener = listener.try_clone()?;
        let serve = serve.clone();
        handles.push(std::thread::spawn(move || -> anyhow::Result<()> {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            runtime.block_on(async move {
                let listener = TcpListener::from_std(listener)?;
                loop {
                    let (stream, _) = listener.accept().await?;
                    stream.set_nodelay(true)?;
                    tokio::spawn(serve(stream));
                }
            })
        }));
    }
    for handle in handles {
        handle.join().map_err(|_| anyhow::anyhow!("a proxy thread panicked"))??;
    }
    Ok(())
}
