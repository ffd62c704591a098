//! Starting the proxy in-process for the integration tests.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use tandem_proxy::config::Config;

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

pub fn start_proxy(backend: SocketAddr, extra: &str) -> Proxy {
    start_proxy_with_command_timeout_and(backend, 10, extra)
}

/// A proxy whose backend commands time out after `secs`.
pub fn start_proxy_with_command_timeout(backend: SocketAddr, secs: u64) -> Proxy {
    start_proxy_with_command_timeout_and(backend, secs, "")
}

fn start_proxy_with_command_timeout_and(backend: SocketAddr, secs: u64, extra: &str) -> Proxy {
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
kind = "dovecot"
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
