//! Health and status over HTTP on `listen.metrics`: Prometheus text at
//! `/metrics`, `/healthz` (the process answers), `/readyz` (the backend
//! answers, the cluster has a leader, the replication lag is under
//! `health.ready_max_lag_seconds`) and `/status` (JSON, for `tandem
//! status`), and the sampler that sets the gauges every second. The
//! endpoints are not authenticated: bind `listen.metrics` to an internal
//! address. Nothing they show is secret (no user names, no credentials, no
//! mail).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response, StatusCode};
use metrics::gauge;
use metrics_exporter_prometheus::PrometheusHandle;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;

use crate::config::Config;
use crate::replication::Replication;

/// What `/status` says about a node.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Status {
    /// Node id.
    pub id: u64,
    /// `mail` or `witness`.
    pub role: String,
    /// `leader`, `follower`, `candidate`, `learner` or `shutdown`.
    pub state: String,
    /// Raft term.
    pub term: u64,
    /// The leader this node knows of.
    pub leader: Option<u64>,
    /// Last log index committed (as this node knows it).
    pub committed: Option<u64>,
    /// Last log index applied to the canonical state.
    pub applied: Option<u64>,
    /// Entries this node's backend has not applied.
    pub lag_entries: u64,
    /// Age of the oldest of them, seconds.
    pub lag_seconds: f64,
    /// Whether the backend answered the last probe (`None` on a witness).
    pub backend_up: Option<bool>,
    /// Whether the node must be resynchronized.
    pub resync_needed: bool,
    /// On the leader: entries each follower lacks.
    pub followers: Vec<(u64, u64)>,
    /// On the leader of a cluster of more than one: milliseconds since a
    /// majority last acknowledged it (`None`: never).
    pub quorum_ack_ms: Option<u64>,
    /// Voters in the cluster.
    pub voters: usize,
    /// Seconds since the process started.
    pub uptime_seconds: u64,
    /// The mail nodes' backends as registered in the log, as (node,
    /// `dovecot` or `cyrus`).
    #[serde(default)]
    pub backends: Vec<(u64, String)>,
    /// Whether APPENDs of messages Cyrus refuses are refused (a Cyrus node
    /// has registered).
    #[serde(default)]
    pub strict_messages: bool,
}

/// Everything the endpoint reads from.
#[derive(Debug)]
pub struct Source {
    config: Arc<Config>,
    rep: Arc<Replication>,
    started: Instant,
    backend_up: std::sync::atomic::AtomicU8,
}

/// A leader whose majority has been silent this long has no quorum.
const QUORUM_STALE_MS: u64 = 3000;

/// Not probed yet.
const UNKNOWN: u8 = 2;

impl Source {
    /// A source over a running node.
    pub fn new(config: Arc<Config>, rep: Arc<Replication>) -> Arc<Source> {
        Arc::new(Source {
            config,
            rep,
            started: Instant::now(),
            backend_up: std::sync::atomic::AtomicU8::new(UNKNOWN),
        })
    }

    /// The node's status now.
    pub fn status(&self) -> Status {
        let node = &self.rep.node;
        let m = node.status();
        let (lag_entries, lag_seconds) = self.rep.lag();
        let backend_up = match self.backend_up.load(std::sync::atomic::Ordering::Relaxed) {
            _ if self.config.backend().is_none() => None,
            0 => Some(false),
            1 => Some(true),
            _ => None,
        };
        Status {
            id: m.id,
            role: if self.config.backend().is_some() {
                "mail".to_string()
            } else {
                "witness".to_string()
            },
            state: m.state,
            term: m.term,
            leader: m.leader,
            committed: m.last_log_index,
            applied: m.applied,
            lag_entries,
            lag_seconds,
            backend_up,
            resync_needed: node.needs_resync().is_some(),
            followers: m.followers,
            quorum_ack_ms: m.quorum_ack_ms,
            voters: m.voters,
            uptime_seconds: self.started.elapsed().as_secs(),
            backends: self.rep.registered_backends(),
            strict_messages: self.rep.strict_messages(),
        }
    }

    /// Why the node is not ready, if it is not.
    pub fn unready(&self) -> Vec<String> {
        let s = self.status();
        let mut why = Vec::new();
        if s.leader.is_none() {
            why.push("no leader known: no quorum".to_string());
        } else if s.state == "leader"
            && s.voters > 1
            && s.quorum_ack_ms.is_none_or(|ms| ms > QUORUM_STALE_MS)
        {
            why.push("the leader has not heard from a majority: no quorum".to_string());
        }
        if s.backend_up == Some(false) {
            why.push("the backend does not answer".to_string());
        }
        let bound = self.config.health.ready_max_lag_seconds;
        if s.lag_seconds > bound as f64 {
            why.push(format!(
                "replication lag {:.0} s over {bound} s",
                s.lag_seconds
            ));
        }
        if s.resync_needed {
            why.push("needs resync".to_string());
        }
        why
    }

    /// Refreshes the sampled gauges.
    fn sample(&self, raft_dir: &Path) {
        let s = self.status();
        gauge!("tandem_replication_lag_entries").set(s.lag_entries as f64);
        gauge!("tandem_replication_lag_seconds").set(s.lag_seconds);
        gauge!("tandem_raft_term").set(s.term as f64);
        gauge!("tandem_raft_is_leader").set(if s.state == "leader" { 1.0 } else { 0.0 });
        gauge!("tandem_raft_leader_id").set(s.leader.unwrap_or(0) as f64);
        gauge!("tandem_raft_applied_index").set(s.applied.unwrap_or(0) as f64);
        gauge!("tandem_resync_needed").set(if s.resync_needed { 1.0 } else { 0.0 });
        for (peer, lag) in &s.followers {
            gauge!("tandem_raft_follower_lag_entries", "peer" => peer.to_string()).set(*lag as f64);
        }
        gauge!("tandem_log_size_bytes").set(dir_size(raft_dir) as f64);
    }

    /// Probes the backend: a connection and its greeting.
    async fn probe(&self) {
        let Some(b) = self.config.backend() else {
            return;
        };
        let t = Instant::now();
        let up = crate::backend::BackendConn::connect(b).await.is_ok();
        metrics::histogram!("tandem_backend_command_duration_seconds")
            .record(t.elapsed().as_secs_f64());
        self.backend_up
            .store(u8::from(up), std::sync::atomic::Ordering::Relaxed);
        gauge!("tandem_backend_up").set(if up { 1.0 } else { 0.0 });
    }
}

fn dir_size(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack: Vec<PathBuf> = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => stack.push(e.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}

/// Samples the gauges every second and probes the backend every five,
/// until the task is aborted.
pub async fn sampler(source: Arc<Source>, raft_dir: PathBuf) {
    let mut tick = 0u64;
    loop {
        if tick % 5 == 0 {
            source.probe().await;
        }
        let s = source.clone();
        let dir = raft_dir.clone();
        // Walking the directory touches the disk: keep it off the runtime.
        let _ = tokio::task::spawn_blocking(move || s.sample(&dir)).await;
        tick += 1;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

fn text(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    if let Ok(v) = content_type.parse() {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

fn route(
    req: &Request<hyper::body::Incoming>,
    handle: &PrometheusHandle,
    source: &Source,
) -> Response<Full<Bytes>> {
    if req.method() != hyper::Method::GET {
        return text(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "GET only\n".into(),
        );
    }
    match req.uri().path() {
        "/metrics" => text(StatusCode::OK, "text/plain; version=0.0.4", handle.render()),
        "/healthz" => text(StatusCode::OK, "text/plain", "ok\n".into()),
        "/readyz" => {
            let why = source.unready();
            if why.is_empty() {
                text(StatusCode::OK, "text/plain", "ready\n".into())
            } else {
                text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain",
                    format!("not ready: {}\n", why.join("; ")),
                )
            }
        }
        "/status" => match serde_json::to_string_pretty(&source.status()) {
            Ok(json) => text(StatusCode::OK, "application/json", json + "\n"),
            Err(e) => text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "text/plain",
                e.to_string(),
            ),
        },
        _ => text(StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
    }
}

/// Serves the endpoint on `listener` until the task is aborted. Each
/// connection has 10 s to send its request.
pub async fn serve(listener: TcpListener, handle: PrometheusHandle, source: Arc<Source>) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "metrics accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let handle = handle.clone();
        let source = source.clone();
        tokio::spawn(async move {
            let io = hyper_util::rt::TokioIo::new(stream);
            let svc = hyper::service::service_fn(move |req| {
                let r = route(&req, &handle, &source);
                async move { Ok::<_, Infallible>(r) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .header_read_timeout(Duration::from_secs(10))
                .timer(hyper_util::rt::TokioTimer::new())
                .serve_connection(io, svc);
            let _ = tokio::time::timeout(Duration::from_secs(30), conn).await;
        });
    }
}

/// Binds `addr` for the endpoint.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}
