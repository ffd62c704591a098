//! Replicator nodes as separate OS processes (the `lognode` binary of this
//! crate), so tests can kill them with SIGKILL and restart them on their
//! data directories. Each node gets its own certificate from one cluster CA
//! and a local TCP control port (see `src/bin/lognode.rs`).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::ports::{free_tcp_port, free_udp_port};

/// What `STATUS` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogStatus {
    /// The leader the node knows of.
    pub leader: Option<u64>,
    /// The node's term.
    pub term: u64,
    /// The last applied index.
    pub applied: Option<u64>,
    /// Whether the node was told to resync.
    pub resync: bool,
}

/// A cluster of `lognode` processes.
#[derive(Debug)]
pub struct LogCluster {
    bin: PathBuf,
    dir: tempfile::TempDir,
    peer: BTreeMap<u64, SocketAddr>,
    control: BTreeMap<u64, SocketAddr>,
    children: BTreeMap<u64, Child>,
    bootstrapped: std::collections::BTreeSet<u64>,
}

impl LogCluster {
    /// Starts `n` nodes from the `lognode` binary at `bin`.
    pub fn start(bin: &Path, n: u64) -> LogCluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let ids: Vec<u64> = (1..=n).collect();
        tandem_replicator::tls::write_cluster_certs(&dir.path().join("certs"), &ids)
            .expect("write certificates");
        let mut cluster = LogCluster {
            bin: bin.to_path_buf(),
            peer: ids
                .iter()
                .map(|&id| (id, SocketAddr::from(([127, 0, 0, 1], free_udp_port()))))
                .collect(),
            control: ids
                .iter()
                .map(|&id| (id, SocketAddr::from(([127, 0, 0, 1], free_tcp_port()))))
                .collect(),
            dir,
            children: BTreeMap::new(),
            bootstrapped: Default::default(),
        };
        for id in ids {
            cluster.spawn(id);
        }
        cluster
    }

    /// Starts node `id` (again) on its data directory and waits for its
    /// control port.
    pub fn spawn(&mut self, id: u64) {
        let mut cmd = Command::new(&self.bin);
        cmd.arg("--id")
            .arg(id.to_string())
            .arg("--listen")
            .arg(self.peer[&id].to_string())
            .arg("--data")
            .arg(self.dir.path().join(format!("node{id}")))
            .arg("--certs")
            .arg(self.dir.path().join("certs"))
            .arg("--control")
            .arg(self.control[&id].to_string());
        for (peer, addr) in &self.peer {
            cmd.arg("--member").arg(format!("{peer}={addr}"));
        }
        if self.bootstrapped.insert(id) {
            cmd.arg("--bootstrap");
        }
        let log =
            std::fs::File::create(self.dir.path().join(format!("node{id}.log"))).expect("node log");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn lognode");
        self.children.insert(id, child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(self.control[&id]).is_err() {
            assert!(
                Instant::now() < deadline,
                "node {id} did not open its control port"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills node `id` with SIGKILL (no shutdown, no flush) and reaps it.
    pub fn kill(&mut self, id: u64) {
        if let Some(mut child) = self.children.remove(&id) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// True while node `id`'s process runs.
    pub fn is_running(&self, id: u64) -> bool {
        self.children.contains_key(&id)
    }

    fn request(&self, id: u64, line: &str, end: &str) -> std::io::Result<Vec<String>> {
        let mut s = TcpStream::connect(self.control[&id])?;
        s.set_read_timeout(Some(Duration::from_secs(15)))?;
        s.write_all(format!("{line}\n").as_bytes())?;
        let mut out = Vec::new();
        for l in BufReader::new(s).lines() {
            let l = l?;
            let done = end.is_empty() || l == end;
            out.push(l);
            if done {
                return Ok(out);
            }
        }
        Err(std::io::ErrorKind::UnexpectedEof.into())
    }

    /// Proposes `value` through node `id`: its number, or the error text.
    pub fn put(&self, id: u64, value: &str) -> Result<u64, String> {
        let reply = self
            .request(id, &format!("PUT {value}"), "")
            .map_err(|e| e.to_string())?;
        let line = &reply[0];
        match line.strip_prefix("OK ") {
            Some(n) => n.parse().map_err(|e| format!("{line}: {e}")),
            None => Err(line.clone()),
        }
    }

    /// Node `id`'s status.
    pub fn status(&self, id: u64) -> std::io::Result<LogStatus> {
        let reply = self.request(id, "STATUS", "")?;
        let mut status = LogStatus {
            leader: None,
            term: 0,
            applied: None,
            resync: false,
        };
        for part in reply[0].split_whitespace().skip(1) {
            let (k, v) = part.split_once('=').unwrap_or((part, ""));
            match k {
                "leader" => status.leader = v.parse().ok(),
                "term" => status.term = v.parse().unwrap_or(0),
                "applied" => status.applied = v.parse().ok(),
                "resync" => status.resync = v == "1",
                _ => {}
            }
        }
        Ok(status)
    }

    /// Node `id`'s state: (number, value) in order.
    pub fn items(&self, id: u64) -> std::io::Result<Vec<(u64, String)>> {
        let reply = self.request(id, "ITEMS", "END")?;
        Ok(reply
            .iter()
            .filter_map(|l| l.strip_prefix("ITEM "))
            .filter_map(|l| {
                let (n, v) = l.split_once(' ')?;
                Some((n.parse().ok()?, v.to_string()))
            })
            .collect())
    }

    /// Waits until every running node names the same running leader.
    pub fn leader(&self, within: Duration) -> u64 {
        let deadline = Instant::now() + within;
        loop {
            let leaders: Vec<Option<u64>> = self
                .children
                .keys()
                .map(|&id| self.status(id).ok().and_then(|s| s.leader))
                .collect();
            if let Some(Some(l)) = leaders.first() {
                if self.is_running(*l) && leaders.iter().all(|x| *x == Some(*l)) {
                    return *l;
                }
            }
            assert!(
                Instant::now() < deadline,
                "no agreed leader within {within:?}: {leaders:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The log of node `id`'s process.
    pub fn log(&self, id: u64) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("node{id}.log"))).unwrap_or_default()
    }
}

impl Drop for LogCluster {
    fn drop(&mut self) {
        let ids: Vec<u64> = self.children.keys().copied().collect();
        if std::thread::panicking() {
            for &id in &ids {
                eprintln!("---- lognode {id} ----\n{}", self.log(id));
            }
        }
        for id in ids {
            self.kill(id);
        }
    }
}
