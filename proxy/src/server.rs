//! The client listener: accepts connections, enforces connection limits,
//! runs one [`crate::session`] per client, and shuts down gracefully.
//!
//! Ordering invariants:
//! - A failed `accept` never ends the server: it is logged and retried.
//! - Once shutdown starts no connection is accepted; sessions are told to
//!   finish (between commands they say BYE and close) and are given
//!   `shutdown_grace` before they are cut.

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use std::net::SocketAddr;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use crate::config::Config;
use crate::replication::Replication;
use crate::session;
use crate::tls::Stream;

/// How long sessions may take to finish after shutdown starts.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Counts open connections, in all and per IP; a [`Slot`] gives its place
/// back when dropped.
#[derive(Debug, Default)]
struct Counts {
    total: u32,
    per_ip: HashMap<IpAddr, u32>,
}

#[derive(Debug)]
struct Slot {
    counts: Arc<Mutex<Counts>>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        c.total = c.total.saturating_sub(1);
        if let Some(n) = c.per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                c.per_ip.remove(&self.ip);
            }
        }
    }
}

fn take_slot(counts: &Arc<Mutex<Counts>>, ip: IpAddr, config: &Config) -> Option<Slot> {
    let mut c = counts.lock().unwrap_or_else(|p| p.into_inner());
    let per_ip = c.per_ip.get(&ip).copied().unwrap_or(0);
    if c.total >= config.limits.max_connections {
        crate::metrics::count_limit("connections");
        return None;
    }
    if per_ip >= config.limits.max_connections_per_ip {
        crate::metrics::count_limit("connections_per_ip");
        return None;
    }
    c.total += 1;
    *c.per_ip.entry(ip).or_insert(0) += 1;
    Some(Slot {
        counts: counts.clone(),
        ip,
    })
}

/// Counts a client connection in `tandem_client_connections` while alive.
struct OpenConnection;

impl OpenConnection {
    fn new() -> OpenConnection {
        metrics::gauge!("tandem_client_connections").increment(1.0);
        OpenConnection
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        metrics::gauge!("tandem_client_connections").decrement(1.0);
    }
}

/// A listening socket and how its clients start.
#[derive(Debug)]
pub struct Listener {
    /// The bound socket.
    pub socket: TcpListener,
    /// `true` for IMAPS: TLS starts at once (the TLS acceptor is required).
    pub implicit_tls: bool,
}

/// Serves IMAP clients on `listeners` until `shutdown` resolves, then lets
/// the sessions finish (at most [`SHUTDOWN_GRACE`]). Connection limits are
/// shared by all listeners. `tls` enables IMAPS listeners and STARTTLS.
pub async fn run(
    listeners: Vec<Listener>,
    config: Arc<Config>,
    tls: Option<TlsAcceptor>,
    replication: Option<Arc<Replication>>,
    shutdown: impl Future<Output = ()>,
) {
    let backend_tls = match config.backend().map(crate::tls::backend_tls).transpose() {
        Ok(t) => t.flatten(),
        Err(e) => {
            tracing::error!(error = %e, "backend TLS setup failed; not serving");
            return;
        }
    };
    let counts = Arc::new(Mutex::new(Counts::default()));
    let (stop_tx, stop_rx) = watch::channel(false);
    let (conn_tx, mut conn_rx) = mpsc::channel::<(TcpStream, SocketAddr, bool)>(64);
    let mut accepters = JoinSet::new();
    for l in listeners {
        let tx = conn_tx.clone();
        accepters.spawn(async move {
            loop {
                match l.socket.accept().await {
                    Ok((stream, peer)) => {
                        if tx.send((stream, peer, l.implicit_tls)).await.is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        // EMFILE and friends: wait a little, never give up.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        });
    }
    drop(conn_tx);
    let mut sessions = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
            accepted = conn_rx.recv() => {
                let Some((mut stream, peer, implicit)) = accepted else { break };
                let Some(slot) = take_slot(&counts, peer.ip(), &config) else {
                    tracing::info!(client = %peer, "connection refused: limit reached");
                    // Best effort, without waiting on a slow client.
                    let _ = tokio::time::timeout(Duration::from_millis(200), async {
                        let _ = stream
                            .write_all(b"* BYE [UNAVAILABLE] Too many connections, try again later\r\n")
                            .await;
                    })
                    .await;
                    continue;
                };
                let config = config.clone();
                let stop = stop_rx.clone();
                let tls = tls.clone();
                let backend_tls = backend_tls.clone();
                let replication = replication.clone();
                metrics::counter!("tandem_client_connections_total").increment(1);
                sessions.spawn(async move {
                    let _slot = slot;
                    let _open = OpenConnection::new();
                    let _ = stream.set_nodelay(true);
                    let client = if implicit {
                        let Some(acceptor) = tls.clone() else { return };
                        let handshake = Duration::from_secs(config.limits.login_timeout_secs);
                        match tokio::time::timeout(handshake, acceptor.accept(stream)).await {
                            Ok(Ok(s)) => Stream::Tls(Box::new(tokio_rustls::TlsStream::Server(s))),
                            Ok(Err(e)) => {
                                metrics::counter!("tandem_tls_handshake_failures_total").increment(1);
                                tracing::info!(client = %peer, error = %e, "TLS handshake failed");
                                return;
                            }
                            Err(_) => {
                                metrics::counter!("tandem_tls_handshake_failures_total").increment(1);
                                tracing::info!(client = %peer, "TLS handshake timed out");
                                return;
                            }
                        }
                    } else {
                        Stream::Plain(stream)
                    };
                    session::serve(client, peer, config, tls, backend_tls, replication, stop).await;
                });
            }
        }
    }
    accepters.shutdown().await;
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while sessions.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            left = sessions.len(),
            "sessions cut at the end of the shutdown grace"
        );
        sessions.shutdown().await;
    }
}
