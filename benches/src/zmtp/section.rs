//! The ZMTP section of REPORT.md: one table (every row, both servers,
//! ratios, issue 15's targets, server CPU per message) and one SVG plot
//! (echo throughput by size over tcp and ipc, per server).

use crate::report::render::rate;
use std::path::Path;

use super::compare::{Impl, ZResults, ZSample, ZScenario};
use crate::report::plots::{self, Chart};

/// Issue 15's target for a row: the least ratio (server-demo vs libzmq,
/// above 1 is better for server-demo) that meets it.
pub fn target(sc: &ZScenario) -> f64 {
    match *sc {
        ZScenario::Throughput { size, .. } if size >= 64 << 10 => 1.5,
        _ => 1.0,
    }
}

/// The figure compared: msg/s for echo and fan-out, p50 for latency.
fn figure(sc: &ZScenario, s: &ZSample) -> Option<f64> {
    match sc {
        ZScenario::Latency { .. } => s.load.p50_us,
        _ => Some(s.load.per_sec()),
    }
}

/// server-demo vs libzmq on the row's figure (> 1: server-demo better;
/// for latency, libzmq's time over server-demo's), and on p99 for latency.
pub fn ratios(sc: &ZScenario, lib: &ZSample, demo: &ZSample) -> (Option<f64>, Option<f64>) {
    let (Some(a), Some(b)) = (figure(sc, lib), figure(sc, demo)) else {
        return (None, None);
    };
    match sc {
        ZScenario::Latency { .. } => {
            let p99 = match (lib.load.p99_us, demo.load.p99_us) {
                (Some(x), Some(y)) if y > 0.0 => Some(x / y),
                _ => None,
            };
            ((b > 0.0).then(|| a / b), p99)
        }
        _ => ((a > 0.0).then(|| b / a), None),
    }
}

fn cell(sc: &ZScenario, c: &Result<ZSample, String>) -> String {
    match c {
        Err(e) => format!("failed: {}", e.replace('|', "/")),
        Ok(s) => match sc {
            ZScenario::Latency { .. } => format!(
                "p50 {:.1} us, p99 {:.1} us",
                s.load.p50_us.unwrap_or(f64::NAN),
                s.load.p99_us.unwrap_or(f64::NAN)
            ),
            ZScenario::Throughput { .. } => {
                format!(
                    "{} ({:.0} MB/s)",
                    rate(s.load.per_sec()),
                    s.load.mb_per_sec()
                )
            }
            ZScenario::FanOut { .. } => format!("{} deliveries", rate(s.load.per_sec())),
        },
    }
}

fn cpu(c: &Result<ZSample, String>) -> String {
    match c {
        Ok(s) if s.cpu_ns_per_msg >= 10_000.0 => format!("{:.1} us", s.cpu_ns_per_msg / 1e3),
        Ok(s) => format!("{:.0} ns", s.cpu_ns_per_msg),
        Err(_) => "-".into(),
    }
}

/// The Markdown section (a `##` heading, the table, the plot link).
pub fn markdown(r: &ZResults, plot: Option<&str>) -> String {
    let mut o = format!(
        "\n## ZMTP: server-demo against libzmq {} (issue 15)\n\n\
         One run, {:.1} s of load per cell, both servers child processes of this run for \
         its whole length (took {:.0} s). The load generator is libzmq too (`benches/src/zmtp/load.rs`): \
         one DEALER with {} requests in flight (echo), one DEALER with one request at a \
         time (ping-pong; p50 and p99 of the round trip), one PUB through the broker to N \
         SUBs in batches of 64, paced to the slowest (fan-out; deliveries). The reference \
         is `zmq-ref`: a libzmq ROUTER that echoes and `zmq_proxy(XSUB, XPUB)`. Ratio: \
         server-demo vs libzmq, above 1 is better for server-demo (for ping-pong: libzmq's \
         p50 / p99 over server-demo's). CPU: the server process's CPU time (all threads) per \
         echo, round trip or delivery.\n\n\
         | row | libzmq | server-demo | ratio | target | met | CPU/msg libzmq | CPU/msg server-demo |\n\
         |---|---:|---:|---:|---:|:---:|---:|---:|\n",
        r.libzmq,
        r.seconds,
        r.elapsed.as_secs_f64(),
        super::compare::WINDOW
    );
    for (sc, [lib, demo]) in &r.rows {
        let (main, p99) = match (lib, demo) {
            (Ok(a), Ok(b)) => ratios(sc, a, b),
            _ => (None, None),
        };
        let ratio = match (main, p99) {
            (Some(m), Some(p)) => format!("p50 {m:.2}x, p99 {p:.2}x"),
            (Some(m), None) => format!("{m:.2}x"),
            _ => "-".into(),
        };
        let want = target(sc);
        let met = match (main, p99) {
            (Some(m), Some(p)) => {
                if m >= want && p >= want {
                    "yes"
                } else {
                    "no"
                }
            }
            (Some(m), None) => {
                if m >= want {
                    "yes"
                } else {
                    "no"
                }
            }
            _ => "-",
        };
        o.push_str(&format!(
            "| {} | {} | {} | {} | {:.1}x | {} | {} | {} |\n",
            sc.label(),
            cell(sc, lib),
            cell(sc, demo),
            ratio,
            want,
            met,
            cpu(lib),
            cpu(demo)
        ));
    }
    if let Some(p) = plot {
        o.push_str(&format!(
            "\nPlot: [{p}]({p}) (echo throughput by size, tcp and ipc).\n"
        ));
    }
    o
}

/// Draws the section's plot: echo MB/s by body size, one line per server
/// and transport. `Ok(false)` when there is nothing to draw.
pub fn draw(r: &ZResults, path: &Path) -> Result<bool, String> {
    let mut series = Vec::new();
    for (i, which) in Impl::ALL.into_iter().enumerate() {
        for ipc in [false, true] {
            let pts: Vec<(f64, f64)> = r
                .rows
                .iter()
                .filter_map(|(sc, cells)| match (sc, &cells[i]) {
                    (ZScenario::Throughput { size, ipc: x }, Ok(s)) if *x == ipc => {
                        Some((*size as f64, s.load.mb_per_sec()))
                    }
                    _ => None,
                })
                .collect();
            if !pts.is_empty() {
                let t = if ipc { "ipc" } else { "tcp" };
                series.push((format!("{} {t}", which.name()), pts));
            }
        }
    }
    if series.is_empty() {
        return Ok(false);
    }
    plots::draw(
        path,
        &Chart {
            title: "ZMTP echo throughput: server-demo vs libzmq (DEALER, window 64)",
            x_label: "body size",
            y_label: "MB/s (bodies, one direction)",
            series,
            log_x: true,
            log_y: true,
            vlines: vec![],
            hline: None,
            x_fmt: plots::fmt_bytes,
        },
    )?;
    Ok(true)
}
