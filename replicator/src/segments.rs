//! The Raft log on disk: append-only segment files, one `fdatasync` per
//! batch of appends.
//!
//! Why not redb, which keeps everything else: openraft 0.9 waits for the
//! leader's own log flush before it replicates an entry, so a commit pays
//! two log writes in a row (the leader's, then a follower's). On this
//! project's machine a redb commit of one 4 KiB entry costs about 0.45 ms,
//! a write and `fdatasync` of the same bytes about 0.15 ms.
//!
//! Layout: `DIR/<first index, 20 digits>.seg`, each a run of records:
//!
//! ```text
//! len: u32 LE | crc: u32 LE | index: u64 LE | payload (len bytes)
//! ```
//!
//! where `crc` is the CRC-32 of the index bytes and the payload.
//!
//! Invariants:
//! - Indexes are consecutive within a segment and from one segment to the
//!   next: the log has no hole.
//! - A segment is created (and its directory entry synced) before any record
//!   goes into it; a record is acknowledged only after `sync` returned.
//! - Only the last segment may end in a torn record: a write cut by a crash
//!   before its `fdatasync`, hence never acknowledged. Opening cuts it off.
//!   A bad record anywhere else is corruption: the log refuses to open.
//! - A segment's records end at its end or at an all-zero header. New
//!   segments come zero-filled and synced beforehand (by a background
//!   thread, `standby.ready`), so that an `fdatasync` of an append flushes
//!   data only, no inode or block bitmap: 0.09 ms instead of 0.14 ms for
//!   4 KiB here. Only the last segment is written to, and opening cuts it to
//!   its records (dropping its zero tail with any stale bytes in it): the
//!   bytes after a segment's last record are never anything but zeros or
//!   a torn write being cut.
//! - `truncate` is durable before it returns (file lengths and the
//!   directory synced): truncated entries never come back.
//! - Entries at or below the purge point are never returned. Segments wholly
//!   below it are deleted; one that comes back after a crash (its deletion
//!   was not synced) is deleted again at open.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

const HEADER: usize = 16;
/// A zero-filled, synced file ready to become the next segment.
const STANDBY: &str = "standby.ready";
/// The standby being written.
const STANDBY_TMP: &str = "standby.tmp";
/// A header announcing more than this is corruption: tandem's entries are
/// at most about 1 MiB (larger payloads travel as blobs).
const MAX_RECORD: u32 = 256 << 20;

/// One segment file and where its records are.
#[derive(Debug)]
struct Segment {
    file: Arc<File>,
    /// Index of its first record (also its name).
    first: u64,
    /// Offset and payload length of each record; the i-th holds `first + i`.
    locs: Vec<(u64, u32)>,
    /// Bytes of valid records: the next record's offset.
    len: u64,
    /// Whether the file was zero-filled up to the segment size beforehand.
    prealloc: bool,
}

impl Segment {
    /// The index the next record must have.
    fn next(&self) -> u64 {
        self.first + self.locs.len() as u64
    }
}

/// The next segment's file, prepared in the background.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Standby {
    Idle,
    Preparing,
    Ready,
}

#[derive(Debug)]
struct State {
    segments: BTreeMap<u64, Segment>,
    /// Entries at or below this index are purged.
    purged: Option<u64>,
}

/// Where one record is, to be read without holding the log's lock.
#[derive(Debug, Clone)]
pub(crate) struct Loc {
    file: Arc<File>,
    index: u64,
    offset: u64,
    len: u32,
}

/// The segment files of one node's log. Writes (append, truncate, purge)
/// come from one thread, the store's writer; reads from anywhere.
#[derive(Debug)]
pub(crate) struct Segments {
    dir: PathBuf,
    segment_bytes: u64,
    state: Mutex<State>,
    standby: Arc<Mutex<Standby>>,
    /// Whether next segments are prepared in the background.
    prepares: bool,
}

/// What [`scan`] found in a segment.
struct Scanned {
    locs: Vec<(u64, u32)>,
    /// Bytes of valid records.
    len: u64,
    /// Why the bytes after them are not records, if they are not zeros.
    bad: Option<String>,
}

fn corrupt(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

fn checksum(index: u64, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&index.to_le_bytes());
    h.update(payload);
    h.finalize()
}

fn segment_path(dir: &Path, first: u64) -> PathBuf {
    dir.join(format!("{first:020}.seg"))
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// A record header's length, checksum and index.
fn parse_header(h: &[u8]) -> (u32, u32, u64) {
    let u32_at = |i: usize| u32::from_le_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
    let index = u64::from(u32_at(8)) | (u64::from(u32_at(12)) << 32);
    (u32_at(0), u32_at(4), index)
}

/// Reads the records of a segment, up to its end or an all-zero header.
fn scan(file: &File, first: u64) -> io::Result<Scanned> {
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut locs = Vec::new();
    let mut offset = 0u64;
    let mut payload = Vec::new();
    loop {
        let mut header = [0u8; HEADER];
        let got = read_full(&mut reader, &mut header)?;
        // Zeros (even fewer than a header, at the very end) are the unused
        // tail of a preallocated segment.
        let bad = if header[..got].iter().all(|b| *b == 0) {
            None
        } else if got < HEADER {
            Some(format!("a {got}-byte partial header"))
        } else {
            let (len, crc, index) = parse_header(&header);
            let want = first + locs.len() as u64;
            if len == 0 || len > MAX_RECORD {
                Some(format!("a record length of {len}"))
            } else {
                payload.resize(len as usize, 0);
                let got = read_full(&mut reader, &mut payload)?;
                if got < len as usize {
                    Some(format!("a partial record ({got} of {len} bytes)"))
                } else if checksum(index, &payload) != crc {
                    Some(format!("a bad checksum at index {index}"))
                } else if index != want {
                    Some(format!("index {index} where {want} belongs"))
                } else {
                    locs.push((offset, len));
                    offset += (HEADER + len as usize) as u64;
                    continue;
                }
            }
        };
        return Ok(Scanned {
            locs,
            len: offset,
            bad,
        });
    }
}

/// Reads until `buf` is full or the end of the file; returns the bytes read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

impl Segments {
    /// Opens the log in `dir` (created if missing), checking every record,
    /// and starts preparing the next segment. `purged` is the purge point
    /// recorded with the vote.
    pub(crate) fn open(
        dir: &Path,
        purged: Option<u64>,
        segment_bytes: u64,
    ) -> io::Result<Segments> {
        let mut log = Self::open_unprepared(dir, purged, segment_bytes)?;
        log.prepares = true;
        log.prepare_standby();
        Ok(log)
    }

    /// [`Segments::open`] without preparing a next segment: for a log that
    /// is only written once and then moved (a migration).
    pub(crate) fn open_unprepared(
        dir: &Path,
        purged: Option<u64>,
        segment_bytes: u64,
    ) -> io::Result<Segments> {
        std::fs::create_dir_all(dir)?;
        let _ = std::fs::remove_file(dir.join(STANDBY_TMP));
        let standby = match std::fs::metadata(dir.join(STANDBY)) {
            Ok(m) if m.len() == segment_bytes => Standby::Ready,
            Ok(_) => {
                std::fs::remove_file(dir.join(STANDBY))?;
                Standby::Idle
            }
            Err(_) => Standby::Idle,
        };
        let mut names = Vec::new();
        for e in std::fs::read_dir(dir)? {
            let e = e?;
            let name = e.file_name();
            let Some(first) = name
                .to_str()
                .and_then(|n| n.strip_suffix(".seg"))
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            names.push(first);
        }
        names.sort_unstable();
        let mut segments = BTreeMap::new();
        let count = names.len();
        for (i, first) in names.into_iter().enumerate() {
            let path = segment_path(dir, first);
            let file = OpenOptions::new().read(true).write(true).open(&path)?;
            let Scanned { locs, len, bad } = scan(&file, first)?;
            if let Some(why) = bad {
                if i + 1 < count {
                    return Err(corrupt(format!(
                        "raft log segment {} holds {why} after {} good records and is not the last segment: the log is corrupt",
                        path.display(),
                        locs.len()
                    )));
                }
                // A write cut by a crash before its fdatasync: never
                // acknowledged, so nobody counts on it.
                tracing::warn!(
                    segment = %path.display(),
                    kept = locs.len(),
                    cut_bytes = file.metadata()?.len() - len,
                    "cutting a torn write off the end of the raft log ({why})"
                );
            }
            if i + 1 == count && file.metadata()?.len() > len {
                // The last segment is cut to its records: a torn write, or
                // the zero tail of a preallocated file (which is where a
                // torn write could hide). It grows from here on until the
                // next segment starts.
                file.set_len(len)?;
                file.sync_all()?;
            }
            segments.insert(
                first,
                Segment {
                    file: Arc::new(file),
                    first,
                    locs,
                    len,
                    prealloc: false,
                },
            );
        }
        // Segments wholly at or below the purge point: their deletion was
        // not synced before a crash.
        if let Some(p) = purged {
            let stale: Vec<u64> = segments
                .values()
                .filter(|s| s.next() <= p + 1)
                .map(|s| s.first)
                .collect();
            for first in stale {
                segments.remove(&first);
                std::fs::remove_file(segment_path(dir, first))?;
            }
        }
        let mut expect: Option<u64> = None;
        for s in segments.values() {
            if let Some(e) = expect {
                if s.first != e {
                    return Err(corrupt(format!(
                        "raft log segment {} starts at index {} where {e} belongs: the log has a hole",
                        segment_path(dir, s.first).display(),
                        s.first
                    )));
                }
            }
            expect = Some(s.next());
        }
        Ok(Segments {
            dir: dir.to_path_buf(),
            segment_bytes,
            state: Mutex::new(State { segments, purged }),
            standby: Arc::new(Mutex::new(standby)),
            prepares: false,
        })
    }

    fn standby(&self) -> MutexGuard<'_, Standby> {
        self.standby.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts zero-filling the next segment's file in the background, unless
    /// one is ready or on its way.
    fn prepare_standby(&self) {
        let mut st = self.standby();
        if !self.prepares || *st != Standby::Idle {
            return;
        }
        *st = Standby::Preparing;
        drop(st);
        let (dir, bytes, standby) = (self.dir.clone(), self.segment_bytes, self.standby.clone());
        let spawned = std::thread::Builder::new()
            .name("tandem-log-standby".to_string())
            .spawn(move || {
                let result = (|| -> io::Result<()> {
                    let tmp = dir.join(STANDBY_TMP);
                    let mut f = File::create(&tmp)?;
                    let zeros = vec![0u8; 1 << 20];
                    let mut left = bytes;
                    while left > 0 {
                        let n = left.min(zeros.len() as u64) as usize;
                        std::io::Write::write_all(&mut f, &zeros[..n])?;
                        left -= n as u64;
                    }
                    f.sync_all()?;
                    std::fs::rename(&tmp, dir.join(STANDBY))
                })();
                let mut st = standby.lock().unwrap_or_else(|p| p.into_inner());
                *st = match result {
                    Ok(()) => Standby::Ready,
                    Err(e) => {
                        tracing::warn!(error = %e, "could not prepare the next raft log segment; appends go on in a growing file");
                        Standby::Idle
                    }
                };
            });
        if spawned.is_err() {
            *self.standby() = Standby::Idle;
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes `records` (consecutive indexes) at the end of the log, not
    /// synced: `sync` the returned files before acknowledging them. The
    /// records are readable when this returns.
    pub(crate) fn append(&self, records: &[(u64, &[u8])]) -> io::Result<Vec<Arc<File>>> {
        let Some(&(start, _)) = records.first() else {
            return Ok(Vec::new());
        };
        for (k, (index, payload)) in records.iter().enumerate() {
            if *index != start + k as u64 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("appended indexes are not consecutive at {index}"),
                ));
            }
            if payload.is_empty() || payload.len() > MAX_RECORD as usize {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("a {}-byte record for index {index}", payload.len()),
                ));
            }
        }
        let total: usize = records.iter().map(|(_, p)| HEADER + p.len()).sum();
        let mut files = Vec::new();
        // Pick (or start) the segment; only this thread changes segments.
        let (file, offset) = {
            let mut st = self.state();
            // Entries appended below the purge point (openraft may purge
            // past the end of the log, then append there) give way.
            if let Some(p) = st.purged.filter(|p| start > *p) {
                self.delete_below(&mut st, p)?;
            }
            let ready = *self.standby() == Standby::Ready;
            let roll = match st.segments.values().next_back() {
                None => true,
                Some(s) if s.next() != start => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("append at index {start} where {} belongs", s.next()),
                    ))
                }
                // Full, or a growing file that a preallocated one replaces.
                Some(s) => {
                    (s.len + total as u64 > self.segment_bytes && !s.locs.is_empty())
                        || (!s.prealloc && ready)
                }
            };
            if roll {
                if let Some(s) = st.segments.values().next_back() {
                    // The previous segment's last records may be unsynced.
                    files.push(s.file.clone());
                    if s.locs.is_empty() {
                        // Replaced under the same name.
                        let first = s.first;
                        st.segments.remove(&first);
                    }
                }
                let path = segment_path(&self.dir, start);
                let prealloc = ready
                    && match std::fs::rename(self.dir.join(STANDBY), &path) {
                        Ok(()) => true,
                        Err(e) => {
                            tracing::warn!(error = %e, "could not use the prepared raft log segment");
                            false
                        }
                    };
                if ready {
                    *self.standby() = Standby::Idle;
                }
                let file = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(!prealloc)
                    .open(&path)?;
                sync_dir(&self.dir)?;
                st.segments.insert(
                    start,
                    Segment {
                        file: Arc::new(file),
                        first: start,
                        locs: Vec::new(),
                        len: 0,
                        prealloc,
                    },
                );
                drop(st);
                self.prepare_standby();
                st = self.state();
            }
            let s = st.segments.values().next_back().expect("a segment");
            (s.file.clone(), s.len)
        };
        let mut buf = Vec::with_capacity(total);
        let mut locs = Vec::with_capacity(records.len());
        for (index, payload) in records {
            locs.push((offset + buf.len() as u64, payload.len() as u32));
            buf.extend_from_slice(&(payload.len() as u32).to_le_bytes());
            buf.extend_from_slice(&checksum(*index, payload).to_le_bytes());
            buf.extend_from_slice(&index.to_le_bytes());
            buf.extend_from_slice(payload);
        }
        file.write_all_at(&buf, offset)?;
        {
            let mut st = self.state();
            let s = st.segments.values_mut().next_back().expect("a segment");
            s.locs.extend(locs);
            s.len += buf.len() as u64;
        }
        files.push(file);
        Ok(files)
    }

    /// Makes appended records durable.
    pub(crate) fn sync(files: &[Arc<File>]) -> io::Result<()> {
        for (i, f) in files.iter().enumerate() {
            if files[..i].iter().any(|g| Arc::ptr_eq(f, g)) {
                continue;
            }
            f.sync_data()?;
        }
        Ok(())
    }

    /// Removes `[from, +oo)`, durably.
    pub(crate) fn truncate(&self, from: u64) -> io::Result<()> {
        let mut st = self.state();
        let doomed: Vec<u64> = st.segments.range(from..).map(|(k, _)| *k).collect();
        for first in &doomed {
            st.segments.remove(first);
            std::fs::remove_file(segment_path(&self.dir, *first))?;
        }
        if let Some(s) = st.segments.values_mut().next_back() {
            if s.next() > from {
                let keep = (from - s.first) as usize;
                let len = s.locs[keep].0;
                s.locs.truncate(keep);
                s.len = len;
                // Stale records past the cut must never be read back as
                // the continuation of new ones: cut the file itself.
                s.prealloc = false;
                s.file.set_len(len)?;
                s.file.sync_all()?;
            }
        }
        if !doomed.is_empty() {
            sync_dir(&self.dir)?;
        }
        Ok(())
    }

    /// Forgets `(-oo, upto]`: deletes the segments wholly in it.
    pub(crate) fn purge(&self, upto: u64) -> io::Result<()> {
        let mut st = self.state();
        st.purged = st.purged.max(Some(upto));
        self.delete_below(&mut st, upto)
    }

    /// Deletes the segments holding only entries at or below `upto`.
    fn delete_below(&self, st: &mut State, upto: u64) -> io::Result<()> {
        let doomed: Vec<u64> = st
            .segments
            .values()
            .filter(|s| s.next() <= upto + 1)
            .map(|s| s.first)
            .collect();
        for first in doomed {
            st.segments.remove(&first);
            std::fs::remove_file(segment_path(&self.dir, first))?;
        }
        Ok(())
    }

    /// Where the records of `[start, end)` are (`end` `None`: to the last).
    pub(crate) fn locate(&self, start: u64, end: Option<u64>) -> Vec<Loc> {
        let st = self.state();
        let start = match st.purged {
            Some(p) => start.max(p + 1),
            None => start,
        };
        let mut out = Vec::new();
        for s in st.segments.values() {
            let (lo, hi) = (start.max(s.first), end.unwrap_or(u64::MAX).min(s.next()));
            for index in lo..hi {
                let (offset, len) = s.locs[(index - s.first) as usize];
                out.push(Loc {
                    file: s.file.clone(),
                    index,
                    offset,
                    len,
                });
            }
        }
        out
    }

    /// Reads one located record, checking its header and checksum.
    pub(crate) fn read(loc: &Loc) -> io::Result<Vec<u8>> {
        let mut buf = vec![0u8; HEADER + loc.len as usize];
        loc.file.read_exact_at(&mut buf, loc.offset)?;
        let (len, crc, index) = parse_header(&buf[..HEADER]);
        let payload = buf.split_off(HEADER);
        if len != loc.len || index != loc.index || checksum(index, &payload) != crc {
            return Err(corrupt(format!(
                "raft log record {} does not read back as written",
                loc.index
            )));
        }
        Ok(payload)
    }

    /// The last index held, if any (above the purge point).
    pub(crate) fn last_index(&self) -> Option<u64> {
        let st = self.state();
        let s = st.segments.values().next_back()?;
        let last = s.next().checked_sub(1)?;
        if s.locs.is_empty() || st.purged.is_some_and(|p| last <= p) {
            return None;
        }
        Some(last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(i: u64) -> Vec<u8> {
        format!("entry {i} ")
            .repeat(1 + (i as usize % 7))
            .into_bytes()
    }

    fn append(log: &Segments, range: std::ops::Range<u64>) {
        let owned: Vec<(u64, Vec<u8>)> = range.map(|i| (i, rec(i))).collect();
        let records: Vec<(u64, &[u8])> = owned.iter().map(|(i, p)| (*i, p.as_slice())).collect();
        let files = log.append(&records).unwrap();
        Segments::sync(&files).unwrap();
    }

    fn read_all(log: &Segments) -> Vec<(u64, Vec<u8>)> {
        log.locate(0, None)
            .iter()
            .map(|l| (l.index, Segments::read(l).unwrap()))
            .collect()
    }

    fn indexes(log: &Segments) -> Vec<u64> {
        read_all(log).into_iter().map(|(i, _)| i).collect()
    }

    fn seg_files(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(".seg"))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn appends_roll_over_segments_and_read_back_after_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let log = Segments::open(dir.path(), None, 300).unwrap();
        for k in 0..20 {
            append(&log, 1 + k * 5..6 + k * 5);
        }
        assert!(
            seg_files(dir.path()).len() > 5,
            "{:?}",
            seg_files(dir.path())
        );
        let before = read_all(&log);
        assert_eq!(before.len(), 100);
        assert!(before.iter().all(|(i, p)| *p == rec(*i)));
        drop(log);
        let log = Segments::open(dir.path(), None, 300).unwrap();
        assert_eq!(read_all(&log), before);
        assert_eq!(log.last_index(), Some(100));
        assert_eq!(
            log.locate(40, Some(43))
                .iter()
                .map(|l| l.index)
                .collect::<Vec<_>>(),
            vec![40, 41, 42]
        );
    }

    fn wait_standby(log: &Segments) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while *log.standby() != Standby::Ready {
            assert!(std::time::Instant::now() < deadline, "no standby segment");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    #[test]
    fn preallocated_segments_replace_growing_ones_and_their_zero_tail_is_no_record() {
        let dir = tempfile::tempdir().unwrap();
        let size = 64 * 1024;
        let log = Segments::open(dir.path(), None, size).unwrap();
        wait_standby(&log);
        append(&log, 1..40);
        let files = seg_files(dir.path());
        assert_eq!(files.len(), 1);
        let path = dir.path().join(&files[0]);
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            size,
            "preallocated"
        );
        assert!(log.state().segments.values().all(|s| s.prealloc));
        // The next standby is prepared; records fill the segment, then
        // roll into it.
        wait_standby(&log);
        for k in 0..60 {
            append(&log, 40 + k * 40..80 + k * 40);
        }
        assert!(seg_files(dir.path()).len() > 2);
        let before = read_all(&log);
        drop(log);
        let log = Segments::open(dir.path(), None, size).unwrap();
        assert_eq!(read_all(&log), before);
        // The last segment is cut to its records at open (its zero tail
        // could hide a torn write); the standby left ready replaces it at the
        // next append.
        let last = dir.path().join(seg_files(dir.path()).last().unwrap());
        assert!(std::fs::metadata(&last).unwrap().len() < size);
        let next = before.last().unwrap().0 + 1;
        append(&log, next..next + 2);
        let segs: Vec<(u64, bool)> = log
            .state()
            .segments
            .values()
            .map(|s| (s.first, s.prealloc))
            .collect();
        assert_eq!(segs.last(), Some(&(next, true)), "{segs:?}");
        drop(log);
        let log = Segments::open(dir.path(), None, size).unwrap();
        assert_eq!(log.last_index(), Some(next + 1));
    }

    #[test]
    fn a_gap_or_a_rewrite_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let log = Segments::open(dir.path(), None, 1 << 20).unwrap();
        append(&log, 1..4);
        let p = rec(9);
        assert!(log.append(&[(9, &p)]).is_err(), "gap");
        assert!(log.append(&[(2, &p)]).is_err(), "rewrite without truncate");
        assert!(log.append(&[(4, &p), (6, &p)]).is_err(), "not consecutive");
        assert!(log.append(&[(4, b"")]).is_err(), "empty record");
        assert_eq!(indexes(&log), vec![1, 2, 3]);
    }

    #[test]
    fn truncate_is_durable_and_appends_continue_from_it() {
        let dir = tempfile::tempdir().unwrap();
        let log = Segments::open(dir.path(), None, 200).unwrap();
        for k in 0..10 {
            append(&log, 1 + k * 3..4 + k * 3);
        }
        log.truncate(11).unwrap();
        assert_eq!(indexes(&log), (1..11).collect::<Vec<_>>());
        // Entries of a new term at the same indexes.
        let owned: Vec<(u64, Vec<u8>)> = (11..14).map(|i| (i, b"new".to_vec())).collect();
        let records: Vec<(u64, &[u8])> = owned.iter().map(|(i, p)| (*i, p.as_slice())).collect();
        Segments::sync(&log.append(&records).unwrap()).unwrap();
        drop(log);
        let log = Segments::open(dir.path(), None, 200).unwrap();
        let all = read_all(&log);
        assert_eq!(all.len(), 13);
        assert_eq!(all[10], (11, b"new".to_vec()));
        assert_eq!(all[9], (10, rec(10)));
        // Truncating everything leaves an empty log that takes any start.
        log.truncate(1).unwrap();
        assert_eq!(log.last_index(), None);
        append(&log, 1..3);
        assert_eq!(indexes(&log), vec![1, 2]);
    }

    #[test]
    fn purge_hides_old_entries_and_deletes_whole_segments() {
        let dir = tempfile::tempdir().unwrap();
        let log = Segments::open(dir.path(), None, 200).unwrap();
        for k in 0..10 {
            append(&log, 1 + k * 3..4 + k * 3);
        }
        let files = seg_files(dir.path()).len();
        log.purge(20).unwrap();
        assert_eq!(indexes(&log), (21..31).collect::<Vec<_>>());
        assert!(seg_files(dir.path()).len() < files);
        drop(log);
        let log = Segments::open(dir.path(), Some(20), 200).unwrap();
        assert_eq!(indexes(&log), (21..31).collect::<Vec<_>>());
        // Purging past the end (a snapshot ahead of the log): the next
        // append starts after it.
        log.purge(40).unwrap();
        assert_eq!(log.last_index(), None);
        append(&log, 41..43);
        assert_eq!(indexes(&log), vec![41, 42]);
    }

    #[test]
    fn a_segment_whose_deletion_was_lost_is_deleted_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let log = Segments::open(dir.path(), None, 100).unwrap();
        for k in 0..6 {
            append(&log, 1 + k * 3..4 + k * 3);
        }
        let before = seg_files(dir.path());
        let saved = std::fs::read(dir.path().join(&before[0])).unwrap();
        log.purge(9).unwrap();
        drop(log);
        // The crash undid the unlink of the first segment.
        std::fs::write(dir.path().join(&before[0]), saved).unwrap();
        let log = Segments::open(dir.path(), Some(9), 100).unwrap();
        assert_eq!(indexes(&log), (10..19).collect::<Vec<_>>());
        assert!(!seg_files(dir.path()).contains(&before[0]));
    }

    #[test]
    fn a_torn_tail_is_cut_off_and_corruption_elsewhere_refused() {
        let dir = tempfile::tempdir().unwrap();
        let log = Segments::open(dir.path(), None, 150).unwrap();
        for k in 0..6 {
            append(&log, 1 + k * 3..4 + k * 3);
        }
        drop(log);
        let files = seg_files(dir.path());
        let last = dir.path().join(files.last().unwrap());
        let good = std::fs::metadata(&last).unwrap().len();
        // A record cut in the middle, then zeros of a preallocated tail.
        let mut bytes = std::fs::read(&last).unwrap();
        bytes.extend_from_slice(&50u32.to_le_bytes());
        bytes.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7]);
        std::fs::write(&last, &bytes).unwrap();
        let log = Segments::open(dir.path(), None, 150).unwrap();
        assert_eq!(log.last_index(), Some(18));
        assert_eq!(std::fs::metadata(&last).unwrap().len(), good);
        append(&log, 19..20);
        drop(log);
        let files = seg_files(dir.path());
        let last = dir.path().join(files.last().unwrap());
        for (tail, what) in [
            (vec![0u8; 64], "zeros"),
            (vec![0xff; 3], "a partial header"),
        ] {
            let mut bytes = std::fs::read(&last).unwrap();
            bytes.extend_from_slice(&tail);
            std::fs::write(&last, &bytes).unwrap();
            let log = Segments::open(dir.path(), None, 150).unwrap();
            assert_eq!(log.last_index(), Some(19), "{what}");
        }
        // A flipped byte inside an earlier segment.
        let first = dir.path().join(&files[0]);
        let mut bytes = std::fs::read(&first).unwrap();
        bytes[HEADER + 2] ^= 0x40;
        std::fs::write(&first, &bytes).unwrap();
        let err = Segments::open(dir.path(), None, 150).unwrap_err();
        assert!(err.to_string().contains("corrupt"), "{err}");
    }

    #[test]
    fn a_missing_middle_segment_is_a_hole() {
        let dir = tempfile::tempdir().unwrap();
        let log = Segments::open(dir.path(), None, 100).unwrap();
        for k in 0..6 {
            append(&log, 1 + k * 3..4 + k * 3);
        }
        drop(log);
        let files = seg_files(dir.path());
        std::fs::remove_file(dir.path().join(&files[1])).unwrap();
        let err = Segments::open(dir.path(), None, 100).unwrap_err();
        assert!(err.to_string().contains("hole"), "{err}");
    }

    #[test]
    fn a_record_changed_on_disk_is_not_returned() {
        let dir = tempfile::tempdir().unwrap();
        let log = Segments::open(dir.path(), None, 1 << 20).unwrap();
        append(&log, 1..4);
        let path = dir.path().join(&seg_files(dir.path())[0]);
        let mut bytes = std::fs::read(&path).unwrap();
        let n = bytes.len();
        bytes[n - 1] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let locs = log.locate(3, None);
        assert!(Segments::read(&locs[0]).is_err());
    }
}
