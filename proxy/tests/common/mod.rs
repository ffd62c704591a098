//! Starting the proxy in-process for the integration tests, and
//! [`both_backends!`], which runs a test against Dovecot and against Cyrus.

#![allow(dead_code, unused_macros)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use tandem_proxy::config::Config;
use tandem_tests::{Backend, BackendKind};

/// Runs each named test function `fn name(kind: BackendKind)` once against
/// Dovecot and once against Cyrus, as the tests `name::dovecot` and
/// `name::cyrus` (so `cargo test name` runs both, `cargo test ::cyrus` all
/// the Cyrus ones):
///
/// ```ignore
/// both_backends!(an_append_is_replicated);
/// fn an_append_is_replicated(kind: BackendKind) { ... }
/// ```
macro_rules! both_backends {
    ($($name:ident),+ $(,)?) => {$(
        mod $name {
            #[test]
            fn dovecot() {
                super::$name(tandem_tests::BackendKind::Dovecot)
            }
            #[test]
            fn cyrus() {
                super::$name(tandem_tests::BackendKind::Cyrus)
            }
        }
    )+};
}
#[allow(unused_imports)] // tls.rs uses none
pub(crate) use both_backends;

pub struct Proxy {
    pub addr: SocketAddr,
    /// The IMAPS listener, when the config has [tls].
    pub imaps: Option<SocketAddr>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A proxy without replication in front of the Dovecot at `backend`, with
/// `extra` TOML appended to its config.
pub fn start_proxy(backend: SocketAddr, extra: &str) -> Proxy {
    start_proxy_inner(BackendKind::Dovecot, backend, 10, extra)
}

/// A proxy without replication in front of `backend` (Dovecot or Cyrus:
/// the config's `[backend] kind` follows it), with `extra` TOML appended.
pub fn start_proxy_for(backend: &Backend, extra: &str) -> Proxy {
    start_proxy_inner(backend.kind(), backend.imap_addr(), 10, extra)
}

/// A proxy without replication in front of a backend of `kind` reached at
/// `addr` (e.g. its IMAPS listener), with `extra` TOML appended.
pub fn start_proxy_at(kind: BackendKind, addr: SocketAddr, extra: &str) -> Proxy {
    start_proxy_inner(kind, addr, 10, extra)
}

/// Like [`start_proxy_for`], with backend commands timing out after `secs`.
pub fn start_proxy_with_command_timeout(backend: &Backend, secs: u64) -> Proxy {
    start_proxy_inner(backend.kind(), backend.imap_addr(), secs, "")
}

fn start_proxy_inner(kind: BackendKind, backend: SocketAddr, secs: u64, extra: &str) -> Proxy {
    let kind = kind.config_name();
    let text = format!(
        r#"
[node]
id = 1
data_dir = "/tmp/tandem-proxy-test-unused"
[listen]
imap = "127.0.0.1:1"
peer = "127.0.0.1:2"
# Required by the config; never loaded: these proxies run without replication.
[cluster]
ca = "/nonexistent/ca.pem"
cert = "/nonexistent/node-1.pem"
key = "/nonexistent/node-1.key"
[backend]
kind = "{kind}"
address = "{backend}"
admin_user = "admin"
admin_password = "admin-secret"
connect_timeout_secs = 2
command_timeout_secs = {secs}
{extra}
"#
    );
    let config = Arc::new(Config::from_toml(&text, Path::new("test.toml")).unwrap());
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    std_listener.set_nonblocking(true).unwrap();
    let addr = std_listener.local_addr().unwrap();
    let (imaps, imaps_addr) = if config.tls.is_some() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        let a = l.local_addr().unwrap();
        (Some(l), Some(a))
    } else {
        (None, None)
    };
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
            let tls = config
                .tls
                .as_ref()
                .map(|t| tandem_proxy::tls::acceptor(t).unwrap());
            let mut listeners = vec![tandem_proxy::server::Listener {
                socket: listener,
                implicit_tls: false,
            }];
            if let Some(imaps) = imaps {
                listeners.push(tandem_proxy::server::Listener {
                    socket: tokio::net::TcpListener::from_std(imaps).unwrap(),
                    implicit_tls: true,
                });
            }
            tandem_proxy::server::run(listeners, config, tls, None, async {
                let _ = rx.await;
            })
            .await;
        });
    });
    Proxy {
        addr,
        imaps: imaps_addr,
        stop: Some(tx),
        thread: Some(thread),
    }
}
