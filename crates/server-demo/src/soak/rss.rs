//! A process's resident memory, and where it sits, read from `/proc`:
//! the soak prints it with its after-load figure, so a failed check says
//! whether the bytes are heap, arenas, thread stacks or code.

use std::collections::HashMap;
use std::fmt::Write as _;

/// This process's RSS in bytes from `/proc/self/status` (0 if
/// unavailable).
pub fn rss_bytes() -> u64 {
    rss_bytes_of("self")
}

/// RSS in bytes of process `pid` (a number, or `self`) from
/// `/proc/PID/status` (0 if unavailable).
pub fn rss_bytes_of(pid: &str) -> u64 {
    crate::server::memory::status_field(pid, "VmRSS").unwrap_or(0)
}

/// The largest resident groups of this process's mappings
/// ([`rss_breakdown_of`]).
pub fn rss_breakdown(top: usize) -> String {
    rss_breakdown_of("self", top)
}

/// The largest resident groups of mappings of process `pid`, one line: `[heap]`, named
/// files and `[stack]` by name; anonymous mappings by size class (a
/// glibc arena heap is 64 MiB of address space, a thread stack 2 MiB plus
/// its guard page). Empty when `/proc/self/smaps` cannot be read.
pub fn rss_breakdown_of(pid: &str, top: usize) -> String {
    let Ok(smaps) = std::fs::read_to_string(format!("/proc/{pid}/smaps")) else {
        return String::new();
    };
    let mut groups: HashMap<String, (u64, u32)> = HashMap::new();
    let mut current: Option<String> = None;
    for line in smaps.lines() {
        let mut parts = line.split_whitespace();
        let Some(first) = parts.next() else { continue };
        if first.contains('-') && !first.ends_with(':') {
            // A mapping's header: "start-end perms offset dev inode [name]".
            let size = first
                .split_once('-')
                .and_then(|(a, b)| {
                    Some(u64::from_str_radix(b, 16).ok()? - u64::from_str_radix(a, 16).ok()?)
                })
                .unwrap_or(0);
            let name = parts.nth(4).unwrap_or("");
            current = Some(if name.is_empty() {
                format!("anon {}", size_class(size))
            } else if name.starts_with('[') {
                name.to_string()
            } else {
                name.rsplit('/').next().unwrap_or(name).to_string()
            });
        } else if first == "Rss:" {
            let kb: u64 = parts.next().and_then(|v| v.parse().ok()).unwrap_or(0);
            if let Some(name) = &current {
                let g = groups.entry(name.clone()).or_default();
                g.0 += kb * 1024;
                g.1 += 1;
            }
        }
    }
    let mut sorted: Vec<_> = groups
        .into_iter()
        .filter(|(_, (rss, _))| *rss > 0)
        .collect();
    sorted.sort_by_key(|(_, (rss, _))| std::cmp::Reverse(*rss));
    let mut out = String::new();
    for (name, (rss, n)) in sorted.into_iter().take(top) {
        let _ = write!(
            out,
            "{}{name}: {:.1} MiB in {n}",
            if out.is_empty() { "" } else { ", " },
            rss as f64 / (1 << 20) as f64
        );
    }
    out
}

fn size_class(size: u64) -> &'static str {
    match size {
        0..=0x3_ffff => "< 256 KiB",
        0x4_0000..=0x1f_ffff => "256 KiB-2 MiB",
        0x20_0000..=0x20_1000 => "2 MiB (thread stacks)",
        0x20_1001..=0x3ff_ffff => "2-64 MiB",
        _ => ">= 64 MiB (arenas)",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn breakdown_names_the_heap_or_an_anonymous_group() {
        let v = vec![7u8; 8 << 20];
        let s = rss_breakdown(20);
        assert!(rss_bytes() >= 8 << 20, "{}", rss_bytes());
        assert!(s.contains("MiB in"), "{s}");
        assert!(s.contains("anon") || s.contains("[heap]"), "{s}");
        drop(v);
    }
}
