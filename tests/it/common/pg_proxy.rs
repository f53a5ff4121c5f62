//! A TCP proxy on a loopback port in front of the real PostgreSQL, for tests that cut the
//! connection (an outage, a dropped notification connection) or count what a request sends
//! (queries per request), without stopping or reconfiguring the shared server.
#![cfg(feature = "postgres")]
#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

use super::pg::admin_options;

pub(crate) struct Proxy {
    pub port: u16,
    target: (String, u16),
    accept: Option<JoinHandle<()>>,
    connections: Arc<Mutex<JoinSet<()>>>,
    queries: Arc<AtomicUsize>,
}

impl Proxy {
    pub(crate) async fn start() -> Self {
        let options = admin_options();
        let target = (options.get_host().to_owned(), options.get_port());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut proxy = Proxy {
            port,
            target,
            accept: None,
            connections: Arc::new(Mutex::new(JoinSet::new())),
            queries: Arc::default(),
        };
        proxy.serve(listener);
        proxy
    }

    fn serve(&mut self, listener: TcpListener) {
        let (target, connections) = (self.target.clone(), Arc::clone(&self.connections));
        let queries = Arc::clone(&self.queries);
        self.accept = Some(tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                let target = target.clone();
                let queries = Arc::clone(&queries);
                let mut set = connections.lock().unwrap();
                while set.try_join_next().is_some() {}
                set.spawn(async move {
                    let Ok(server) = TcpStream::connect((target.0.as_str(), target.1)).await else {
                        return;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    let (mut client_read, mut client_write) = client.into_split();
                    let (mut server_read, mut server_write) = server.into_split();
                    let upstream = async {
                        let mut counter = Frontend::default();
                        let mut buf = vec![0u8; 16 * 1024];
                        loop {
                            let n = match client_read.read(&mut buf).await {
                                Ok(0) | Err(_) => break,
                                Ok(n) => n,
                            };
                            queries.fetch_add(counter.feed(&buf[..n]), Ordering::SeqCst);
                            if server_write.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                        let _ = server_write.shutdown().await;
                    };
                    let downstream = async {
                        let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
                        let _ = client_write.shutdown().await;
                    };
                    tokio::join!(upstream, downstream);
                });
            }
        }));
    }

    /// Queries the proxied connections sent so far: `Execute` messages of the extended
    /// protocol plus simple `Query` messages (a prepared statement's first use adds no
    /// `Execute` of its own). Needs connections without TLS (`sslmode=disable`).
    pub(crate) fn queries(&self) -> usize {
        self.queries.load(Ordering::SeqCst)
    }

    /// The outage: the port is closed (new connections refused) and every proxied connection
    /// is dropped.
    pub(crate) async fn cut(&mut self) {
        if let Some(accept) = self.accept.take() {
            accept.abort();
            let _ = accept.await; // the listener is dropped once this returns
        }
        let mut set = std::mem::take(&mut *self.connections.lock().unwrap());
        set.abort_all();
        while set.join_next().await.is_some() {}
    }

    /// Accepts again, on the same port.
    pub(crate) async fn restore(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        let listener = loop {
            match TcpListener::bind(("127.0.0.1", self.port)).await {
                Ok(listener) => break listener,
                Err(e) => {
                    assert!(
                        Instant::now() < deadline,
                        "cannot rebind proxy port {}: {e}",
                        self.port
                    );
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        };
        self.serve(listener);
    }

    /// Proxied connections currently open.
    pub(crate) fn open_connections(&self) -> usize {
        self.connections.lock().unwrap().len()
    }

    /// `url` with its host and port replaced by the proxy's (credentials, database and
    /// parameters kept).
    pub(crate) fn url(&self, url: &str) -> String {
        let scheme_end = url.find("://").map_or(0, |i| i + 3);
        let rest = &url[scheme_end..];
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let userinfo = rest[..authority_end]
            .rsplit_once('@')
            .map(|(user, _)| format!("{user}@"))
            .unwrap_or_default();
        format!(
            "{}{userinfo}127.0.0.1:{}{}",
            &url[..scheme_end],
            self.port,
            &rest[authority_end..]
        )
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(accept) = self.accept.take() {
            accept.abort();
        }
        self.connections.lock().unwrap().abort_all();
    }
}

/// Splits what a client sends into protocol messages: the untyped startup messages (an
/// `SSLRequest` may come first), then `type byte + length` framed ones.
#[derive(Default)]
struct Frontend {
    started: bool,
    pending: Vec<u8>,
}

impl Frontend {
    /// Feeds bytes; returns how many `Execute` (`E`) and `Query` (`Q`) messages completed.
    fn feed(&mut self, bytes: &[u8]) -> usize {
        self.pending.extend_from_slice(bytes);
        let mut count = 0;
        loop {
            let header = if self.started { 5 } else { 4 };
            if self.pending.len() < header {
                return count;
            }
            let at = header - 4;
            let len = u32::from_be_bytes(self.pending[at..at + 4].try_into().unwrap()) as usize;
            let total = at + len;
            if self.pending.len() < total {
                return count;
            }
            if self.started {
                count += usize::from(matches!(self.pending[0], b'E' | b'Q'));
            } else {
                // SSLRequest / GSSENCRequest (8 bytes, a code) come before the startup message.
                let code = u32::from_be_bytes(self.pending[4..8].try_into().unwrap());
                self.started = !(len == 8 && (code == 80_877_103 || code == 80_877_104));
            }
            self.pending.drain(..total);
        }
    }
}
