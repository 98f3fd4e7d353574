//! The `bench-report` machinery: read criterion's results for the whole
//! suite ([`criterion`]), run the end-to-end matrix against `server-demo`
//! the two tokio servers and the lean mio server ([`e2e`]; their resident sets through
//! [`rss`]), and write `REPORT.md`, `RESULTS-SECTION.md` and SVG plots
//! ([`render`], [`plots`]).

pub mod criterion;
pub mod e2e;
pub mod plots;
pub mod render;
pub mod rss;

use std::path::{Path, PathBuf};
use std::process::Command;

/// The workspace root (the parent of the `benches` crate).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// What the report says about the machine and the build.
#[derive(Debug, Clone)]
pub struct Machine {
    /// CPU model from `/proc/cpuinfo`.
    pub cpu: String,
    /// Cores usable by this process.
    pub cores: usize,
    /// `MemTotal` from `/proc/meminfo`, in GiB.
    pub memory_gib: f64,
    /// Kernel release.
    pub kernel: String,
    /// `rustc -V`.
    pub rustc: String,
    /// The global allocator of this binary (and of every server it runs).
    pub allocator: String,
    /// `git rev-parse HEAD`, with `-dirty` if the tree has changes.
    pub commit: String,
    /// UTC date and time of the run.
    pub date: String,
}

impl Machine {
    /// Probes the machine.
    pub fn probe() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split(':').nth(1))
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|| "unknown CPU".into());
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory_gib = meminfo
            .lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map(|kb| kb / (1024.0 * 1024.0))
            .unwrap_or(0.0);
        let root = workspace_root();
        let git = |args: &[&str]| {
            Command::new("git")
                .args(args)
                .current_dir(&root)
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        };
        let mut commit = git(&["rev-parse", "HEAD"]).unwrap_or_else(|| "unknown".into());
        if git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty()) {
            commit.push_str("-dirty");
        }
        let run = |cmd: &str, args: &[&str]| {
            Command::new(cmd)
                .args(args)
                .output()
                .ok()
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
                .filter(|s| !s.is_empty())
        };
        Machine {
            cpu,
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            memory_gib,
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|s| s.trim().to_string())
                .unwrap_or_else(|_| "unknown".into()),
            rustc: run("rustc", &["-V"]).unwrap_or_else(|| "unknown rustc".into()),
            allocator: allocators::active().to_string(),
            commit,
            date: run("date", &["-u", "+%Y-%m-%d %H:%M UTC"]).unwrap_or_else(|| "unknown".into()),
        }
    }

    /// One line: `2 cores (Model), 24.0 GiB, Linux 6.x, rustc 1.95, allocator system`.
    pub fn summary(&self) -> String {
        format!(
            "{} cores ({}), {:.1} GiB RAM, Linux {}, {}, global allocator {} (counted)",
            self.cores, self.cpu, self.memory_gib, self.kernel, self.rustc, self.allocator
        )
    }
}

/// Median of `v` (mean of the middle two for an even count); `None` if empty.
pub fn median(v: &[f64]) -> Option<f64> {
    let mut s: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if s.is_empty() {
        return None;
    }
    s.sort_by(f64::total_cmp);
    let n = s.len();
    Some(if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    })
}

/// Parses criterion size labels (`64B`, `4KiB`, `1MiB`) into bytes.
pub fn parse_size_label(s: &str) -> Option<u64> {
    let (num, mul) = if let Some(n) = s.strip_suffix("MiB") {
        (n, 1 << 20)
    } else if let Some(n) = s.strip_suffix("KiB") {
        (n, 1 << 10)
    } else if let Some(n) = s.strip_suffix('B') {
        (n, 1)
    } else {
        return None;
    };
    num.parse::<u64>().ok().map(|n| n * mul)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_sizes() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0]), Some(2.5));
        assert_eq!(median(&[]), None);
        assert_eq!(parse_size_label("64B"), Some(64));
        assert_eq!(parse_size_label("4KiB"), Some(4096));
        assert_eq!(parse_size_label("1MiB"), Some(1 << 20));
        assert_eq!(parse_size_label("1000x100"), None);
    }
}
