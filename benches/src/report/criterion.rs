//! Reads criterion's results (`<dir>/**/new/{benchmark,estimates}.json`)
//! for every bench of the suite.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use super::parse_size_label;

/// One benchmark's latest median.
#[derive(Debug, Clone, PartialEq)]
pub struct Estimate {
    /// Criterion group (`broadcast`, `send_tcp`, ...).
    pub group: String,
    /// Function id (the column: `shared`, `linear`, ...).
    pub function: String,
    /// Parameter (the row: `4KiB`, `64B`, ...; empty if none).
    pub value: String,
    /// Median time per iteration in nanoseconds.
    pub median_ns: f64,
    /// Bytes per iteration, if the bench declared a throughput in bytes.
    pub bytes: Option<u64>,
    /// The criterion directory it came from.
    pub dir: PathBuf,
}

/// Every estimate under `dirs`; a benchmark present in several directories
/// is taken from the first.
pub fn read_all(dirs: &[PathBuf]) -> Vec<Estimate> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for d in dirs {
        let mut found = Vec::new();
        walk(d, &mut found);
        found.sort();
        for new_dir in found {
            if let Some(e) = read_one(&new_dir, d) {
                let key = (e.group.clone(), e.function.clone(), e.value.clone());
                if seen.insert(key) {
                    out.push(e);
                }
            }
        }
    }
    out
}

fn walk(dir: &Path, found: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in rd.flatten() {
        let p = entry.path();
        if !p.is_dir() {
            continue;
        }
        if p.file_name().is_some_and(|n| n == "new") {
            if p.join("estimates.json").is_file() && p.join("benchmark.json").is_file() {
                found.push(p);
            }
        } else if p.file_name().is_none_or(|n| n != "report") {
            walk(&p, found);
        }
    }
}

/// The estimate in one benchmark's `new` directory (`benchmark.json` and
/// `estimates.json`; criterion has no stable machine-readable output of
/// its own, only cargo-criterion's JSON messages, so its files are read).
pub(crate) fn read_one(new_dir: &Path, root: &Path) -> Option<Estimate> {
    let bench: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(new_dir.join("benchmark.json")).ok()?)
            .ok()?;
    let est: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(new_dir.join("estimates.json")).ok()?)
            .ok()?;
    let s = |k: &str| bench.get(k).and_then(|v| v.as_str()).map(str::to_string);
    let bytes = bench
        .get("throughput")
        .and_then(|t| t.get("Bytes"))
        .and_then(|b| b.as_u64());
    Some(Estimate {
        group: s("group_id")?,
        function: s("function_id").unwrap_or_default(),
        value: s("value_str").unwrap_or_default(),
        median_ns: est.get("median")?.get("point_estimate")?.as_f64()?,
        bytes,
        dir: root.to_path_buf(),
    })
}

/// Estimates of one group as `rows x columns`, rows in size order when
/// they are sizes, columns in first-seen order.
#[derive(Debug, Clone)]
pub struct GroupTable {
    /// The group.
    pub group: String,
    /// Column (function) names.
    pub columns: Vec<String>,
    /// Row (parameter) names.
    pub rows: Vec<String>,
    /// `(row, column) -> median ns`.
    pub cells: BTreeMap<(String, String), f64>,
    /// The column ratios are taken against.
    pub baseline: String,
}

impl GroupTable {
    /// The median of `column` at `row`.
    pub fn get(&self, row: &str, column: &str) -> Option<f64> {
        self.cells
            .get(&(row.to_string(), column.to_string()))
            .copied()
    }

    /// Speed of `column` relative to `base` at `row` (`> 1`: `column` is faster).
    pub fn speedup(&self, row: &str, column: &str, base: &str) -> Option<f64> {
        Some(self.get(row, base)? / self.get(row, column)?)
    }
}

/// The column each known group's ratios are taken against (what a user
/// would otherwise pick).
pub fn baseline_for(group: &str, columns: &[String]) -> String {
    let pick = match group {
        "alloc_same_thread" | "alloc_cross_thread" => "system",
        "msg_same_thread" | "msg_cross_thread" => "vec-system",
        "alloc_free_4k" => "vec",
        "broadcast" => "copy-system",
        "closures_100k" => "box",
        "queue_2p1c" => "mutex_vecdeque",
        "recv_decode" => "tokio-ld",
        "send_tcp" | "send_unix" => "linear",
        "counting_overhead" => "plain_system",
        _ => "",
    };
    if columns.iter().any(|c| c == pick) {
        pick.to_string()
    } else {
        columns.first().cloned().unwrap_or_default()
    }
}

/// Groups the estimates, groups in first-seen order.
pub fn tables(estimates: &[Estimate]) -> Vec<GroupTable> {
    let mut order: Vec<String> = Vec::new();
    for e in estimates {
        if !order.contains(&e.group) {
            order.push(e.group.clone());
        }
    }
    order
        .into_iter()
        .map(|g| {
            let mine: Vec<&Estimate> = estimates.iter().filter(|e| e.group == g).collect();
            let mut columns: Vec<String> = Vec::new();
            let mut rows: Vec<String> = Vec::new();
            let mut cells = BTreeMap::new();
            for e in &mine {
                if !columns.contains(&e.function) {
                    columns.push(e.function.clone());
                }
                if !rows.contains(&e.value) {
                    rows.push(e.value.clone());
                }
                cells.insert((e.value.clone(), e.function.clone()), e.median_ns);
            }
            columns.sort();
            if rows.iter().all(|r| parse_size_label(r).is_some()) {
                rows.sort_by_key(|r| parse_size_label(r));
            } else {
                rows.sort();
            }
            let baseline = baseline_for(&g, &columns);
            GroupTable {
                group: g,
                columns,
                rows,
                cells,
                baseline,
            }
        })
        .collect()
}

/// Formats nanoseconds with a unit that keeps 3-4 significant digits.
pub fn fmt_ns(ns: f64) -> String {
    if ns < 1_000.0 {
        format!("{ns:.1} ns")
    } else if ns < 1_000_000.0 {
        format!("{:.2} us", ns / 1e3)
    } else {
        format!("{:.2} ms", ns / 1e6)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_criterion_layout() {
        let root = std::env::temp_dir().join(format!("bench-report-test-{}", std::process::id()));
        let new = root
            .join("send_tcp")
            .join("gather")
            .join("4KiB")
            .join("new");
        std::fs::create_dir_all(&new).unwrap();
        std::fs::write(
            new.join("benchmark.json"),
            r#"{"group_id":"send_tcp","function_id":"gather","value_str":"4KiB","throughput":{"Bytes":410400}}"#,
        )
        .unwrap();
        std::fs::write(
            new.join("estimates.json"),
            r#"{"mean":{"point_estimate":12.0},"median":{"point_estimate":10.5}}"#,
        )
        .unwrap();
        let est = read_all(std::slice::from_ref(&root));
        std::fs::remove_dir_all(&root).unwrap();
        assert_eq!(est.len(), 1);
        assert_eq!(
            (est[0].group.as_str(), est[0].median_ns),
            ("send_tcp", 10.5)
        );
        assert_eq!(est[0].bytes, Some(410400));
        let t = tables(&est);
        assert_eq!(t[0].baseline, "gather"); // "linear" absent: first column
        assert_eq!(t[0].get("4KiB", "gather"), Some(10.5));
    }
}
