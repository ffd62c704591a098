//! CPU time and memory of the processes under test, read from /proc.
//!
//! A server is measured as a process tree: a Dovecot master with its login,
//! auth and imap children, or one `tandem run` process. CPU counts the
//! tree's live processes and the children its root has reaped (`cutime` +
//! `cstime`), so a session that ends between two readings still counts;
//! memory is the largest resident set of any one process of the tree, as
//! sampled while a round runs.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Linux's USER_HZ: the unit of the CPU times in /proc/PID/stat.
const TICKS_PER_SECOND: f64 = 100.0;

/// (ppid, own utime + stime, reaped children's cutime + cstime) of `pid`.
fn stat(pid: u32) -> Option<(u32, u64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) state ppid ...": comm may hold spaces.
    let close = text.rfind(')')?;
    let f: Vec<&str> = text[close + 2..].split(' ').collect();
    let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    Some((f.get(1)?.parse().ok()?, n(11) + n(12), n(13) + n(14)))
}

/// Every process's parent, from /proc.
fn parents() -> HashMap<u32, u32> {
    let mut out = HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        if let Some((ppid, _, _)) = stat(pid) {
            out.insert(pid, ppid);
        }
    }
    out
}

/// `root` and every process below it.
pub fn tree(root: u32) -> Vec<u32> {
    let parents = parents();
    let mut out = vec![root];
    let mut i = 0;
    while i < out.len() {
        let p = out[i];
        out.extend(parents.iter().filter(|(_, &pp)| pp == p).map(|(&c, _)| c));
        i += 1;
    }
    out
}

/// CPU seconds used so far by the trees under `roots`.
pub fn cpu_seconds(roots: &[u32]) -> f64 {
    let mut ticks = 0;
    for &root in roots {
        if let Some((_, own, reaped)) = stat(root) {
            ticks += own + reaped;
        }
        for pid in tree(root).into_iter().skip(1) {
            if let Some((_, own, _)) = stat(pid) {
                ticks += own;
            }
        }
    }
    ticks as f64 / TICKS_PER_SECOND
}

/// Resident memory of `pid` in bytes (`VmRSS`).
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The largest resident set of any one process in the trees under
/// `roots`, right now.
pub fn peak_rss(roots: &[u32]) -> u64 {
    roots
        .iter()
        .flat_map(|&r| tree(r))
        .filter_map(rss_bytes)
        .max()
        .unwrap_or(0)
}

/// Samples [`peak_rss`] of some groups of trees in the background and
/// keeps each group's maximum until stopped.
#[derive(Debug)]
pub struct RssSampler {
    stop: Arc<AtomicBool>,
    peaks: Arc<Mutex<Vec<u64>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RssSampler {
    /// Starts sampling each group every `every`.
    pub fn start(groups: Vec<Vec<u32>>, every: Duration) -> RssSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let peaks = Arc::new(Mutex::new(vec![0; groups.len()]));
        let (s, p) = (stop.clone(), peaks.clone());
        let thread = std::thread::spawn(move || loop {
            let now: Vec<u64> = groups.iter().map(|g| peak_rss(g)).collect();
            if let Ok(mut peaks) = p.lock() {
                for (peak, n) in peaks.iter_mut().zip(now) {
                    *peak = (*peak).max(n);
                }
            }
            if s.load(Ordering::Relaxed) {
                return;
            }
            std::thread::sleep(every);
        });
        RssSampler {
            stop,
            peaks,
            thread: Some(thread),
        }
    }

    /// Takes a last sample and returns each group's peak, in bytes.
    pub fn finish(mut self) -> Vec<u64> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.peaks.lock().map(|p| p.clone()).unwrap_or_default()
    }
}

impl Drop for RssSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_uses_memory_and_time() {
        let me = std::process::id();
        assert!(rss_bytes(me).unwrap() > 1 << 20);
        let t0 = cpu_seconds(&[me]);
        let mut x = 0u64;
        let start = std::time::Instant::now();
        while start.elapsed() < Duration::from_millis(300) {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        assert!(cpu_seconds(&[me]) > t0);
        assert!(tree(me).contains(&me));
    }
}
