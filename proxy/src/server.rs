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

use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::config::Config;
use crate::session;

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
    if c.total >= config.limits.max_connections || per_ip >= config.limits.max_connections_per_ip {
        return None;
    }
    c.total += 1;
    *c.per_ip.entry(ip).or_insert(0) += 1;
    Some(Slot {
        counts: counts.clone(),
        ip,
    })
}

/// Serves IMAP clients on `listener` until `shutdown` resolves, then lets
/// the sessions finish (at most [`SHUTDOWN_GRACE`]).
pub async fn run(listener: TcpListener, config: Arc<Config>, shutdown: impl Future<Output = ()>) {
    let counts = Arc::new(Mutex::new(Counts::default()));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut sessions = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
            accepted = listener.accept() => {
                let (mut stream, peer) = match accepted {
                    Ok(x) => x,
                    Err(e) => {
                        // EMFILE and friends: wait a little, never give up.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
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
                sessions.spawn(async move {
                    let _slot = slot;
                    let _ = stream.set_nodelay(true);
                    session::serve(stream, peer, config, stop).await;
                });
            }
        }
    }
    drop(listener);
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
