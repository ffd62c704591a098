//! A UDP relay between nodes for fault injection: tests and the chaos
//! campaign route every replication link through one, and change at run
//! time what it does to the datagrams: drop a percentage, delay them (with
//! jitter), limit a direction's bandwidth, cut one direction or both, heal.
//!
//! Each relay carries one ordered pair (from, to): node `from` dials the
//! relay's address instead of node `to`'s, and the relay forwards each
//! datagram to `to` and the replies back. [`FaultNet`] holds the relays of
//! a whole cluster and offers partitions in terms of nodes.
//!
//! Faults are applied per direction of traffic between two nodes, whichever
//! node opened the connection, so "cut a -> b" silences every datagram from
//! a to b on both of their connections.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;

use crate::types::NodeId;

/// What happens to datagrams in one direction between two nodes.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct LinkFault {
    /// Drop every datagram.
    pub cut: bool,
    /// Drop this fraction of datagrams (0.0 to 1.0).
    pub loss: f64,
    /// Delay every datagram by this much...
    pub delay: Duration,
    /// ...plus a uniformly random extra up to this.
    pub jitter: Duration,
    /// Bandwidth in bytes per second (0: unlimited). Datagrams queue behind
    /// each other like on a slow link; one that would wait more than
    /// [`BACKLOG`] is dropped, like by a router's full buffer.
    pub rate: u64,
}

/// The longest a datagram waits behind others on a rate-limited link.
pub const BACKLOG: Duration = Duration::from_millis(200);

#[derive(Debug)]
struct Shared {
    faults: Mutex<BTreeMap<(NodeId, NodeId), LinkFault>>,
    /// Per direction of a rate-limited link: when its last queued datagram
    /// is through.
    busy_until: Mutex<BTreeMap<(NodeId, NodeId), Instant>>,
    rng: Mutex<u64>,
}

impl Shared {
    fn fault(&self, from: NodeId, to: NodeId) -> LinkFault {
        self.faults
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(from, to))
            .copied()
            .unwrap_or_default()
    }

    /// A uniform number in [0, 1) from a xorshift generator: reproducible
    /// from the seed, which the caller prints.
    fn random(&self) -> f64 {
        let mut s = self.rng.lock().unwrap_or_else(|p| p.into_inner());
        let mut x = *s;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *s = x;
        (x >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Decides the fate of one datagram of `len` bytes: `None` to drop it,
    /// else its delay.
    fn judge(&self, from: NodeId, to: NodeId, len: usize) -> Option<Duration> {
        let f = self.fault(from, to);
        if f.cut || (f.loss > 0.0 && self.random() < f.loss) {
            return None;
        }
        let jitter = if f.jitter.is_zero() {
            Duration::ZERO
        } else {
            f.jitter.mul_f64(self.random())
        };
        let queued = if f.rate == 0 {
            Duration::ZERO
        } else {
            let now = Instant::now();
            let mut busy = self.busy_until.lock().unwrap_or_else(|p| p.into_inner());
            let free = busy.entry((from, to)).or_insert(now);
            let start = (*free).max(now);
            if start - now > BACKLOG {
                return None;
            }
            *free = start + Duration::from_secs_f64(len as f64 / f.rate as f64);
            *free - now
        };
        Some(f.delay + jitter + queued)
    }
}

/// The relays of a cluster.
#[derive(Debug)]
pub struct FaultNet {
    shared: Arc<Shared>,
    addrs: BTreeMap<(NodeId, NodeId), SocketAddr>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl FaultNet {
    /// Starts one relay per ordered pair of `nodes` (id -> real peer
    /// address) on 127.0.0.1; `seed` drives loss and jitter.
    pub async fn start(
        nodes: &BTreeMap<NodeId, SocketAddr>,
        seed: u64,
    ) -> std::io::Result<FaultNet> {
        let shared = Arc::new(Shared {
            faults: Mutex::new(BTreeMap::new()),
            busy_until: Mutex::new(BTreeMap::new()),
            rng: Mutex::new(seed | 1),
        });
        let mut addrs = BTreeMap::new();
        let mut tasks = Vec::new();
        for &from in nodes.keys() {
            for (&to, &target) in nodes {
                if from == to {
                    continue;
                }
                let socket = UdpSocket::bind("127.0.0.1:0").await?;
                addrs.insert((from, to), socket.local_addr()?);
                let upstream = UdpSocket::bind("127.0.0.1:0").await?;
                upstream.connect(target).await?;
                tasks.push(tokio::spawn(relay(
                    Arc::new(socket),
                    Arc::new(upstream),
                    from,
                    to,
                    shared.clone(),
                )));
            }
        }
        Ok(FaultNet {
            shared,
            addrs,
            tasks,
        })
    }

    /// The address node `from` must use to reach node `to`.
    pub fn addr(&self, from: NodeId, to: NodeId) -> SocketAddr {
        self.addrs[&(from, to)]
    }

    /// Sets the fault of datagrams from `from` to `to`.
    pub fn set(&self, from: NodeId, to: NodeId, fault: LinkFault) {
        self.shared
            .faults
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((from, to), fault);
    }

    fn update(&self, from: NodeId, to: NodeId, f: impl FnOnce(&mut LinkFault)) {
        let mut faults = self.shared.faults.lock().unwrap_or_else(|p| p.into_inner());
        f(faults.entry((from, to)).or_default());
    }

    fn pairs(&self) -> Vec<(NodeId, NodeId)> {
        self.addrs.keys().copied().collect()
    }

    /// Silences `from` -> `to` (one direction).
    pub fn cut_one_way(&self, from: NodeId, to: NodeId) {
        self.update(from, to, |f| f.cut = true);
    }

    /// Silences both directions between `a` and `b`.
    pub fn cut(&self, a: NodeId, b: NodeId) {
        self.cut_one_way(a, b);
        self.cut_one_way(b, a);
    }

    /// Cuts `node` off from every other node.
    pub fn isolate(&self, node: NodeId) {
        for (a, b) in self.pairs() {
            if a == node || b == node {
                self.cut_one_way(a, b);
            }
        }
    }

    /// Sets loss, delay and jitter on every link (cuts are kept).
    pub fn degrade_all(&self, loss: f64, delay: Duration, jitter: Duration) {
        for (a, b) in self.pairs() {
            self.update(a, b, |f| {
                f.loss = loss;
                f.delay = delay;
                f.jitter = jitter;
            });
        }
    }

    /// Limits every link to `bytes_per_sec` in each direction (0: no limit;
    /// other faults are kept).
    pub fn limit_rate_all(&self, bytes_per_sec: u64) {
        for (a, b) in self.pairs() {
            self.update(a, b, |f| f.rate = bytes_per_sec);
        }
    }

    /// Removes every fault.
    pub fn heal(&self) {
        self.shared
            .faults
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }
}

impl Drop for FaultNet {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

async fn relay(
    listen: Arc<UdpSocket>,
    upstream: Arc<UdpSocket>,
    from: NodeId,
    to: NodeId,
    shared: Arc<Shared>,
) {
    // The node that dials through this relay; replies go back to it.
    let client: Mutex<Option<SocketAddr>> = Mutex::new(None);
    let back = async {
        let mut buf = vec![0u8; 65536];
        loop {
            let Ok(n) = upstream.recv(&mut buf).await else {
                continue;
            };
            let Some(dest) = *client.lock().unwrap_or_else(|p| p.into_inner()) else {
                continue;
            };
            if let Some(delay) = shared.judge(to, from, n) {
                send_later(listen.clone(), buf[..n].to_vec(), Some(dest), delay);
            }
        }
    };
    let forth = async {
        let mut buf = vec![0u8; 65536];
        loop {
            let Ok((n, src)) = listen.recv_from(&mut buf).await else {
                continue;
            };
            *client.lock().unwrap_or_else(|p| p.into_inner()) = Some(src);
            if let Some(delay) = shared.judge(from, to, n) {
                send_later(upstream.clone(), buf[..n].to_vec(), None, delay);
            }
        }
    };
    tokio::join!(back, forth);
}

fn send_later(socket: Arc<UdpSocket>, data: Vec<u8>, dest: Option<SocketAddr>, delay: Duration) {
    let send = async move {
        let _ = match dest {
            Some(d) => socket.send_to(&data, d).await,
            None => socket.send(&data).await,
        };
    };
    if delay.is_zero() {
        tokio::spawn(send);
    } else {
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            send.await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn echo_server() -> (SocketAddr, tokio::task::JoinHandle<()>) {
        let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = s.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let mut buf = [0u8; 1500];
            loop {
                let (n, src) = s.recv_from(&mut buf).await.unwrap();
                s.send_to(&buf[..n], src).await.unwrap();
            }
        });
        (addr, task)
    }

    async fn roundtrips(client: &UdpSocket, to: SocketAddr, count: usize) -> usize {
        let mut ok = 0;
        let mut buf = [0u8; 64];
        for i in 0..count {
            let msg = format!("ping {i}");
            client.send_to(msg.as_bytes(), to).await.unwrap();
            if let Ok(Ok((n, _))) =
                tokio::time::timeout(Duration::from_millis(25), client.recv_from(&mut buf)).await
            {
                if &buf[..n] == msg.as_bytes() {
                    ok += 1;
                }
            }
        }
        ok
    }

    #[tokio::test]
    async fn relay_forwards_cuts_one_way_drops_and_heals() {
        let (echo, _task) = echo_server().await;
        let (other, _task2) = echo_server().await;
        let nodes = BTreeMap::from([(1, other), (2, echo)]);
        let net = FaultNet::start(&nodes, 42).await.unwrap();
        let via = net.addr(1, 2);
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();

        assert_eq!(roundtrips(&client, via, 20).await, 20);

        // Replies (2 -> 1) cut: requests arrive, nothing comes back.
        net.cut_one_way(2, 1);
        assert_eq!(roundtrips(&client, via, 5).await, 0);
        net.heal();
        // Drain anything late, then all pass again.
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(roundtrips(&client, via, 10).await, 10);

        net.degrade_all(0.5, Duration::ZERO, Duration::ZERO);
        let passed = roundtrips(&client, via, 200).await;
        // Each round trip survives two 50% draws: about 50 of 200.
        assert!((20..=90).contains(&passed), "passed {passed}");
        net.heal();

        net.degrade_all(0.0, Duration::from_millis(30), Duration::ZERO);
        let started = std::time::Instant::now();
        let mut buf = [0u8; 16];
        client.send_to(b"slow", via).await.unwrap();
        let _ = tokio::time::timeout(Duration::from_secs(1), client.recv_from(&mut buf))
            .await
            .unwrap();
        assert!(
            started.elapsed() >= Duration::from_millis(60),
            "delay applies both ways"
        );
    }

    #[tokio::test]
    async fn rate_limited_link_spaces_datagrams_and_drops_past_its_backlog() {
        let (echo, _task) = echo_server().await;
        let (other, _task2) = echo_server().await;
        let nodes = BTreeMap::from([(1, other), (2, echo)]);
        let net = FaultNet::start(&nodes, 7).await.unwrap();
        let via = net.addr(1, 2);
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        // 1,000-byte datagrams at 20,000 bytes/s: one every 50 ms, and a
        // backlog of 200 ms holds four behind the one being sent.
        net.limit_rate_all(20_000);
        let started = std::time::Instant::now();
        for _ in 0..20 {
            client.send_to(&[7u8; 1000], via).await.unwrap();
        }
        let mut buf = [0u8; 2000];
        let mut got = 0;
        let mut last = started;
        while let Ok(Ok(_)) =
            tokio::time::timeout(Duration::from_millis(500), client.recv_from(&mut buf)).await
        {
            got += 1;
            last = std::time::Instant::now();
        }
        assert!((4..=6).contains(&got), "{got} of 20 through");
        assert!(
            last - started >= Duration::from_millis(200),
            "the last one came after {:?}",
            last - started
        );
        // Unlimited again: all through at once.
        net.limit_rate_all(0);
        assert_eq!(roundtrips(&client, via, 10).await, 10);
    }
}
