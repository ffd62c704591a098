//! Large payloads travel beside the log, not in it.
//!
//! openraft 0.9 gives every AppendEntries RPC one heartbeat interval to
//! complete, so a batch of multi-megabyte entries over a lossy link would
//! time out and be resent forever. A payload over `inline_limit` is instead
//! stored as a content-addressed file (SHA-256) and pushed to the peers on
//! its own QUIC streams; only its hash goes through the log.
//!
//! Ordering invariants:
//! - The hash is proposed only after a majority of voters (this node
//!   included) has the blob durably (file and directory fsync'd). Any
//!   majority that later survives intersects that one, so a committed entry's
//!   blob is always on some survivor.
//! - A blob is accepted from a peer only if its content hashes to its name.
//! - A node applies a blob entry only with the blob's bytes in hand: it
//!   fetches a missing blob from its peers, and waits, rather than skip it.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::transport::{BlobStore, PeerClient, Request, Response};

/// Why a large payload did not reach a majority of the nodes.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ReplicateError {
    /// This node could not store it.
    #[error("cannot store the payload: {0}")]
    Store(#[source] Arc<std::io::Error>),
    /// The request to the peers could not be encoded.
    #[error("cannot encode the payload: {0}")]
    Codec(#[source] postcard::Error),
    /// Fewer nodes than a majority hold it.
    #[error("the payload reached {have} of the {quorum} nodes a majority needs")]
    Short {
        /// Nodes that hold it, this one included.
        have: usize,
        /// Nodes a majority needs.
        quorum: usize,
    },
    /// The runtime is shutting down.
    #[error("the node is shutting down")]
    Stopped,
}
use crate::types::NodeId;

pub use crate::types::Hash;

/// The hash of `data`.
pub fn hash(data: &[u8]) -> Hash {
    let digest = ring::digest::digest(&ring::digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

fn hex(h: &Hash) -> String {
    h.iter().map(|b| format!("{b:02x}")).collect()
}

/// The blobs of one node, and the peers it fetches missing ones from.
#[derive(Debug)]
pub struct Blobs {
    dir: PathBuf,
    peers: Arc<BTreeMap<NodeId, Arc<PeerClient>>>,
    /// How long one push or fetch RPC may take, on top of its transfer
    /// time at `min_rate`.
    rpc_timeout: Duration,
    /// The slowest transfer a push or fetch waits for, in bytes per second.
    min_rate: u64,
    /// Bytes of the pushes under way from this node: they share its links,
    /// so each push waits for the transfer of those ahead of it too.
    in_flight: Arc<AtomicU64>,
}

/// A push under way ([`Blobs::outgoing`]); its bytes count against this
/// node's links until it is dropped.
#[derive(Debug)]
pub(crate) struct Outgoing {
    in_flight: Arc<AtomicU64>,
    len: u64,
    /// The transfer time of this push and of those already under way.
    pub(crate) time: Duration,
}

impl Drop for Outgoing {
    fn drop(&mut self) {
        self.in_flight.fetch_sub(self.len, Ordering::Relaxed);
    }
}

/// How long `len` bytes may take at `min_rate` bytes per second, on top of
/// a fixed `base`: a large payload gets time by its size, so a slow link
/// delays it instead of failing it. (A peer that is gone is noticed sooner,
/// by the QUIC idle timeout, which ends the call.)
pub fn transfer_time(base: Duration, len: u64, min_rate: u64) -> Duration {
    base + Duration::from_secs_f64(len as f64 / min_rate.max(1) as f64)
}

impl Blobs {
    /// Blobs under `dir` (created if missing).
    pub(crate) fn open(
        dir: PathBuf,
        peers: Arc<BTreeMap<NodeId, Arc<PeerClient>>>,
        rpc_timeout: Duration,
        min_rate: u64,
    ) -> std::io::Result<Blobs> {
        std::fs::create_dir_all(&dir)?;
        Ok(Blobs {
            dir,
            peers,
            rpc_timeout,
            min_rate,
            in_flight: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Counts a push of `len` bytes as under way, and tells how long it
    /// may take at the slowest rate, with those already under way.
    pub(crate) fn outgoing(&self, len: u64) -> Outgoing {
        let ahead = self.in_flight.fetch_add(len, Ordering::Relaxed) + len;
        Outgoing {
            in_flight: self.in_flight.clone(),
            len,
            time: transfer_time(Duration::ZERO, ahead, self.min_rate),
        }
    }

    /// How long one push or fetch of `len` bytes may take.
    fn rpc_time(&self, len: u64) -> Duration {
        transfer_time(self.rpc_timeout, len, self.min_rate)
    }

    fn path(&self, h: &Hash) -> PathBuf {
        self.dir.join(hex(h))
    }

    /// Stores `data` under its hash, durably. Idempotent.
    pub fn put(&self, data: &[u8]) -> std::io::Result<Hash> {
        let h = hash(data);
        let path = self.path(&h);
        if path.exists() {
            // Renamed complete and synced; its directory entry may still be
            // on its way to disk (another put fsyncs the directory next).
            std::fs::File::open(&self.dir)?.sync_all()?;
            return Ok(h);
        }
        // One temporary file per call: two puts of the same blob at once
        // must not write, truncate or rename each other's file.
        static TMP: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = TMP.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = self
            .dir
            .join(format!("{}.tmp{}-{n}", hex(&h), std::process::id()));
        {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(data)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &path)?;
        std::fs::File::open(&self.dir)?.sync_all()?;
        Ok(h)
    }

    /// The blob's bytes, if this node has it and they match the hash.
    pub fn get(&self, h: &Hash) -> Option<Vec<u8>> {
        let data = std::fs::read(self.path(h)).ok()?;
        (hash(&data) == *h).then_some(data)
    }

    /// Stores `data` here and pushes it to the peers; returns its hash once
    /// `quorum` nodes (this one included) hold it durably, or an error when
    /// that cannot happen. Each push may take `transfer` (from
    /// [`Blobs::outgoing`]) on top of the RPC timeout.
    pub(crate) async fn replicate(
        &self,
        data: Arc<Vec<u8>>,
        quorum: usize,
        transfer: Duration,
    ) -> Result<Hash, ReplicateError> {
        let local = data.clone();
        let timeout = self.rpc_timeout + transfer;
        let dir_blobs = Blobs {
            dir: self.dir.clone(),
            peers: self.peers.clone(),
            rpc_timeout: self.rpc_timeout,
            min_rate: self.min_rate,
            in_flight: self.in_flight.clone(),
        };
        let h = tokio::task::spawn_blocking(move || dir_blobs.put(&local))
            .await
            .map_err(|_| ReplicateError::Stopped)?
            .map_err(|e| ReplicateError::Store(Arc::new(e)))?;
        let mut have = 1;
        if have >= quorum {
            return Ok(h);
        }
        // Encoded once for all peers.
        let request = postcard::to_stdvec(&Request::PutBlob {
            hash: h,
            data: data.as_ref().clone(),
        })
        .map_err(ReplicateError::Codec)?;
        drop(data);
        let request = Arc::new(request);
        let mut pushes = tokio::task::JoinSet::new();
        for client in self.peers.values() {
            let client = client.clone();
            let request = request.clone();
            pushes.spawn(async move {
                matches!(
                    client.call_encoded(&request, timeout).await,
                    Ok(Response::BlobStored(Ok(())))
                )
            });
        }
        while let Some(done) = pushes.join_next().await {
            if done.unwrap_or(false) {
                have += 1;
                if have >= quorum {
                    // The remaining pushes go on in the background.
                    pushes.detach_all();
                    return Ok(h);
                }
            }
        }
        Err(ReplicateError::Short { have, quorum })
    }

    /// The blob's bytes (`len` of them): from this node, else from the
    /// first peer that has it (stored here on the way). Retries until found.
    pub(crate) async fn fetch(&self, h: &Hash, len: u64) -> Vec<u8> {
        let mut backoff = Duration::from_millis(50);
        loop {
            if let Some(data) = self.get(h) {
                return data;
            }
            for client in self.peers.values() {
                let req = Request::GetBlob { hash: *h };
                if let Ok(Response::Blob(Some(data))) = client.call(&req, self.rpc_time(len)).await
                {
                    if hash(&data) == *h {
                        if let Err(e) = self.put(&data) {
                            tracing::warn!(error = %e, "cannot store a fetched blob");
                        }
                        return data;
                    }
                }
            }
            tracing::warn!(blob = %hex(h), "no peer has a committed entry's payload yet; retrying");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
    }

    /// The directory blobs are kept in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Deletes the blobs no entry of the log refers to (`live` holds the
    /// hashes the log refers to) once they are older than `min_age`: a blob
    /// is stored on a majority before its entry is proposed, so a young
    /// unreferenced blob may be about to be referenced. Interrupted writes
    /// (`.tmp` files) older than `min_age` go too. Returns how many files
    /// were deleted.
    pub fn collect(&self, live: &std::collections::HashSet<Hash>, min_age: Duration) -> usize {
        let Ok(rd) = std::fs::read_dir(&self.dir) else {
            return 0;
        };
        let mut deleted = 0;
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            let old = e
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age >= min_age);
            if !old {
                continue;
            }
            let dead = match unhex(&name) {
                Some(h) => !live.contains(&h),
                None => name.contains(".tmp"),
            };
            if dead && std::fs::remove_file(e.path()).is_ok() {
                deleted += 1;
            }
        }
        deleted
    }
}

fn unhex(s: &str) -> Option<Hash> {
    if s.len() != 64 {
        return None;
    }
    let mut h = [0u8; 32];
    for (i, byte) in h.iter_mut().enumerate() {
        *byte = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(h)
}

impl BlobStore for Blobs {
    fn put(&self, data: &[u8]) -> std::io::Result<Hash> {
        Blobs::put(self, data)
    }

    fn get(&self, hash: &Hash) -> Option<Vec<u8>> {
        Blobs::get(self, hash)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Blobs in `dir` with no peers, a 1 s RPC timeout and 256 KiB/s.
    fn open_in(dir: &tempfile::TempDir) -> Blobs {
        Blobs::open(
            dir.path().join("b"),
            Arc::new(BTreeMap::new()),
            Duration::from_secs(1),
            crate::MIN_LINK_RATE,
        )
        .unwrap()
    }

    #[test]
    fn put_is_content_addressed_durable_and_verified_on_read() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = open_in(&dir);
        let h = blobs.put(b"hello").unwrap();
        assert_eq!(h, hash(b"hello"));
        assert_eq!(blobs.put(b"hello").unwrap(), h, "idempotent");
        assert_eq!(blobs.get(&h).unwrap(), b"hello");
        // A corrupted file is not returned.
        std::fs::write(blobs.path(&h), b"evil").unwrap();
        assert!(blobs.get(&h).is_none());
        assert!(blobs.get(&hash(b"absent")).is_none());
    }

    /// Pushes share the node's links: each one may take the transfer time
    /// of those under way before it too, and a finished one stops counting.
    #[test]
    fn a_push_gets_the_transfer_time_of_those_ahead_of_it() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = open_in(&dir);
        let first = blobs.outgoing(1 << 20);
        assert_eq!(first.time, Duration::from_secs(4));
        let second = blobs.outgoing(512 << 10);
        assert_eq!(second.time, Duration::from_secs(6));
        drop(first);
        assert_eq!(blobs.outgoing(1 << 20).time, Duration::from_secs(6));
        drop(second);
        assert_eq!(blobs.outgoing(256 << 10).time, Duration::from_secs(1));
        assert_eq!(
            transfer_time(Duration::from_secs(5), 64 << 20, 256 * 1024),
            Duration::from_secs(261)
        );
    }

    #[test]
    fn collect_keeps_live_and_young_blobs() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = open_in(&dir);
        let live = blobs.put(b"live").unwrap();
        let dead = blobs.put(b"dead").unwrap();
        std::fs::write(blobs.dir().join("x.tmp1-2"), b"partial").unwrap();
        let set: std::collections::HashSet<Hash> = [live].into_iter().collect();
        assert_eq!(
            blobs.collect(&set, Duration::from_secs(3600)),
            0,
            "all young"
        );
        assert_eq!(blobs.collect(&set, Duration::ZERO), 2);
        assert!(blobs.get(&live).is_some());
        assert!(blobs.get(&dead).is_none());
        assert_eq!(unhex(&hex(&live)), Some(live));
    }

    /// The same blob can be stored twice at once (a push from the proposer
    /// while this node fetches it to apply, or two proposers of the same
    /// bytes): each `put` must succeed, and none may report durable a file
    /// another one is still writing.
    #[test]
    fn concurrent_puts_of_the_same_blob_all_succeed() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = Arc::new(open_in(&dir));
        for round in 0..20u8 {
            let data = Arc::new(vec![round; 256 * 1024]);
            let threads: Vec<_> = (0..4)
                .map(|_| {
                    let (blobs, data) = (blobs.clone(), data.clone());
                    std::thread::spawn(move || blobs.put(&data).map_err(|e| e.to_string()))
                })
                .collect();
            for t in threads {
                assert_eq!(t.join().unwrap(), Ok(hash(&data)), "round {round}");
            }
            assert_eq!(blobs.get(&hash(&data)).as_deref(), Some(data.as_slice()));
        }
    }
}
