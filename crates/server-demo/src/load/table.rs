//! Reporting a plan's results: [`render_table`] (Markdown) and
//! [`to_json`] / [`write_json`], with the number formatting they use
//! ([`fmt_size`]).

use std::path::Path;

use super::error::LoadError;
use super::plan::{LoadRecord, Measurement};

/// `64 B`, `1 KiB`, `1.5 KiB`, `1 MiB`.
pub fn fmt_size(n: usize) -> String {
    const UNITS: [(usize, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    for (u, name) in UNITS {
        if n >= u {
            return if n.is_multiple_of(u) {
                format!("{} {name}", n / u)
            } else {
                format!("{:.1} {name}", n as f64 / u as f64)
            };
        }
    }
    format!("{n} B")
}

/// An integer with thousands separators.
fn fmt_int(v: f64) -> String {
    let s = format!("{:.0}", v.max(0.0));
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Renders results as a Markdown table: one row per record; columns that
/// do not apply to a mode are `-`; a failed run shows its error.
pub fn render_table(records: &[LoadRecord]) -> String {
    let mut t = String::from(
        "| mode | size | setup | count | per sec | MB/s | p50 us | p99 us | p99.9 us | max us | elapsed s |\n\
         |---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in records {
        let cells: [String; 8] = match &r.result {
            Some(Measurement::Throughput(m)) => [
                fmt_int(m.messages as f64),
                fmt_int(m.msgs_per_sec),
                format!("{:.1}", m.mb_per_sec),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                format!("{:.3}", m.elapsed.as_secs_f64()),
            ],
            Some(Measurement::Latency(m)) => [
                fmt_int(m.round_trips as f64),
                fmt_int(if m.mean_us > 0.0 {
                    1e6 / m.mean_us
                } else {
                    0.0
                }),
                "-".into(),
                format!("{:.1}", m.p50_us),
                format!("{:.1}", m.p99_us),
                format!("{:.1}", m.p999_us),
                format!("{:.1}", m.max_us),
                "-".into(),
            ],
            Some(Measurement::FanOut(m)) => {
                let secs = m.elapsed.as_secs_f64();
                [
                    fmt_int(m.deliveries as f64),
                    fmt_int(m.deliveries_per_sec),
                    format!("{:.1}", m.deliveries as f64 * r.size as f64 / secs / 1e6),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    format!("{secs:.3}"),
                ]
            }
            None => {
                let err = r.error.as_deref().unwrap_or("no result").replace('|', "/");
                t.push_str(&format!(
                    "| {} | {} | {} | FAILED: {err} | | | | | | | |\n",
                    r.mode,
                    fmt_size(r.size),
                    r.params
                ));
                continue;
            }
        };
        t.push_str(&format!(
            "| {} | {} | {} | {} |\n",
            r.mode,
            fmt_size(r.size),
            r.params,
            cells.join(" | ")
        ));
    }
    t
}

/// The records as pretty JSON.
pub fn to_json(records: &[LoadRecord]) -> Result<String, LoadError> {
    Ok(serde_json::to_string_pretty(records)?)
}

/// Writes the records as pretty JSON to `path`.
pub fn write_json(path: &Path, records: &[LoadRecord]) -> Result<(), LoadError> {
    let json = to_json(records)?;
    std::fs::write(path, json + "\n").map_err(|source| LoadError::Io {
        phase: "writing the JSON report",
        source,
    })
}
