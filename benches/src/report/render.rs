//! Markdown of the report: the end-to-end tables with medians and ratios
//! against the tokio peer, the targets, the field-report
//! comparison from criterion's results, and every criterion group.

use std::fmt::Write as _;

use super::Machine;
use super::criterion::{GroupTable, fmt_ns};
use super::e2e::{Matrix, ServerKind};
use server_demo::load::Workload;

/// How a target compares.
#[derive(Debug, Clone)]
pub struct TargetRow {
    /// What is compared (`server-demo echo 64 B throughput`).
    pub what: String,
    /// The goal (`>= 1.5x tokio-peer`).
    pub goal: String,
    /// The measured ratio (as the goal states it).
    pub ratio: Option<f64>,
    /// Measured values (`1.2 M/s vs 0.8 M/s`).
    pub detail: String,
    /// Met, missed, or not measured.
    pub met: Option<bool>,
}

/// A rate for a table cell: `1.23 M/s`, `456.7 k/s` or `89/s`.
pub fn rate(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2} M/s", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1} k/s", v / 1e3)
    } else {
        format!("{v:.0}/s")
    }
}

fn opt<T>(v: Option<T>, f: impl Fn(T) -> String) -> String {
    v.map(f).unwrap_or_else(|| "-".into())
}

/// `x.xx` with an `x` suffix.
pub fn ratio(v: Option<f64>) -> String {
    opt(v, |r| format!("{r:.2}x"))
}

/// The goal, evaluated against a reference server's median.
#[derive(Debug, Clone, Copy)]
enum Goal {
    /// Rate ratio vs the reference at least this (`ahead`: above it).
    FasterBy(f64),
    /// CPU per message at most this fraction of the reference's.
    CpuAtMost(f64),
    /// Ping-pong p50 at most this multiple of the reference's.
    P50AtMost(f64),
    /// Ping-pong p99 at most this multiple of the reference's.
    P99AtMost(f64),
}

/// One target: `server` against `reference` on scenario `idx`.
struct Target<'a> {
    server: ServerKind,
    reference: ServerKind,
    idx: Option<usize>,
    what: &'a str,
    goal: Goal,
    /// The goal is "ahead of" (strictly better than) the reference.
    ahead: bool,
}

fn evaluate(m: &Matrix, t: Target<'_>) -> TargetRow {
    let reference = t.reference;
    let peer = t.idx.and_then(|i| m.cell(i, reference));
    let me = t.idx.and_then(|i| m.cell(i, t.server));
    type Metric = fn(&super::e2e::Cell) -> Option<f64>;
    let (get, unit, lower_is_better, g): (Metric, &str, bool, f64) = match t.goal {
        Goal::FasterBy(g) => (|c| c.per_sec(), "", false, g),
        Goal::CpuAtMost(g) => (|c| c.cpu_ns(), " ns/msg", true, g),
        Goal::P50AtMost(g) => (|c| c.p50_us(), " us", true, g),
        Goal::P99AtMost(g) => (|c| c.p99_us(), " us", true, g),
    };
    let (a, b) = (me.and_then(get), peer.and_then(get));
    let r = a.zip(b).map(|(a, b)| a / b);
    let show = |v: Option<f64>| match t.goal {
        Goal::FasterBy(_) => opt(v, rate),
        Goal::CpuAtMost(_) => opt(v, |v| format!("{v:.0}")),
        _ => opt(v, |v| format!("{v:.1}")),
    };
    let met = r.map(|r| match (lower_is_better, t.ahead) {
        (false, true) => r > g,
        (false, false) => r >= g,
        (true, true) => r < g,
        (true, false) => r <= g,
    });
    let what = match t.goal {
        Goal::FasterBy(_) => "",
        Goal::CpuAtMost(_) => "'s CPU/msg",
        Goal::P50AtMost(_) => "'s p50",
        Goal::P99AtMost(_) => "'s p99",
    };
    let goal = match (lower_is_better, t.ahead) {
        (false, true) => format!("> {g:.1}x {reference}{what} (ahead)"),
        (false, false) => format!(">= {g:.1}x {reference}{what}"),
        (true, true) => format!("< {g:.2}x {reference}{what} (ahead)"),
        (true, false) => format!("<= {g:.2}x {reference}{what}"),
    };
    TargetRow {
        what: format!("{}: {}", t.server, t.what),
        goal,
        ratio: r,
        detail: format!("{} vs {}{unit}", show(a), show(b)),
        met,
    }
}

/// The targets of issue 17 for `server-demo` (default configuration)
/// against the tokio peer and the lean mio server, and tokio-netbuf's
/// "ahead of plain tokio" rows, evaluated on the medians.
pub fn targets(m: &Matrix) -> Vec<TargetRow> {
    let echo = |size: usize| m.find(|s| matches!(s, Workload::Echo { size: z, .. } if *z == size));
    let ping =
        |size: usize| m.find(|s| matches!(s, Workload::Latency { size: z, .. } if *z == size));
    let fan = |size: usize, subs: usize| {
        m.find(|s| {
            matches!(s, Workload::FanOut { size: z, subscribers, .. } if *z == size && *subscribers == subs)
        })
    };
    let demo = ServerKind::Demo;
    let (peer, lean) = (ServerKind::TokioPeer, ServerKind::MioLean);
    let t = |reference, idx, what, goal| Target {
        server: demo,
        reference,
        idx,
        what,
        goal,
        ahead: false,
    };
    let mut list = vec![
        t(peer, echo(64), "echo 64 B throughput", Goal::FasterBy(1.5)),
        t(lean, echo(64), "echo 64 B throughput", Goal::FasterBy(0.9)),
        t(
            peer,
            echo(1024),
            "echo 1 KiB throughput",
            Goal::FasterBy(1.5),
        ),
        t(
            lean,
            echo(1024),
            "echo 1 KiB throughput",
            Goal::FasterBy(0.9),
        ),
        t(
            peer,
            fan(64, 16),
            "fan-out 64 B x16 deliveries",
            Goal::FasterBy(2.0),
        ),
        t(
            peer,
            fan(64, 256),
            "fan-out 64 B x256 deliveries",
            Goal::FasterBy(2.0),
        ),
        t(peer, ping(64), "ping-pong 64 B p50", Goal::P50AtMost(0.8)),
        t(peer, ping(64), "ping-pong 64 B p99", Goal::P99AtMost(0.8)),
        t(
            peer,
            echo(64),
            "echo 64 B server CPU/msg",
            Goal::CpuAtMost(0.5),
        ),
        t(
            peer,
            echo(1024),
            "echo 1 KiB server CPU/msg",
            Goal::CpuAtMost(0.5),
        ),
        t(
            peer,
            echo(256 << 10),
            "echo 256 KiB throughput",
            Goal::FasterBy(1.0),
        ),
        t(
            peer,
            ping(256 << 10),
            "ping-pong 256 KiB p50",
            Goal::P50AtMost(1.0),
        ),
        t(
            peer,
            fan(1024, 256),
            "fan-out 1 KiB x256 deliveries",
            Goal::FasterBy(1.0),
        ),
    ];
    // tokio-netbuf: ahead of plain tokio on the same data path's rows.
    let ahead = |idx, what, goal| Target {
        server: ServerKind::TokioNetbuf,
        reference: peer,
        idx,
        what,
        goal,
        ahead: true,
    };
    list.extend([
        ahead(echo(64), "echo 64 B throughput", Goal::FasterBy(1.0)),
        ahead(echo(1024), "echo 1 KiB throughput", Goal::FasterBy(1.0)),
        ahead(
            echo(256 << 10),
            "echo 256 KiB throughput",
            Goal::FasterBy(1.0),
        ),
        ahead(
            fan(1024, 256),
            "fan-out 1 KiB x256 deliveries",
            Goal::FasterBy(1.0),
        ),
        ahead(echo(64), "echo 64 B server CPU/msg", Goal::CpuAtMost(1.0)),
        ahead(
            echo(1024),
            "echo 1 KiB server CPU/msg",
            Goal::CpuAtMost(1.0),
        ),
    ]);
    list.into_iter().map(|t| evaluate(m, t)).collect()
}

/// The header of a table with the baseline's column, then a value and a
/// `vs peer` ratio column per other server.
fn ratio_head(o: &mut String) {
    let mut names = format!("| scenario | {} |", ServerKind::TokioPeer);
    let mut rule = String::from("|---|---:|");
    for k in ServerKind::OTHERS {
        let _ = write!(names, " {k} | vs peer |");
        rule.push_str("---:|---:|");
    }
    let _ = writeln!(o, "{names}\n{rule}");
}

/// The end-to-end tables.
pub fn e2e_tables(m: &Matrix) -> String {
    let mut o = String::new();
    let others = ServerKind::OTHERS;
    let head = |o: &mut String, metric: &str, note: &str| {
        let _ = writeln!(o, "\n**{metric}** ({note})\n");
        ratio_head(o);
    };
    type Get = fn(&super::e2e::Cell) -> Option<f64>;
    let table = |o: &mut String,
                 metric: &str,
                 note: &str,
                 get: Get,
                 fmt: fn(f64) -> String,
                 inverse: bool,
                 keep: &dyn Fn(&Workload) -> bool| {
        head(o, metric, note);
        for (i, sc) in m.scenarios.iter().enumerate() {
            if !keep(sc) {
                continue;
            }
            let base = m.cell(i, ServerKind::TokioPeer).and_then(get);
            let mut line = format!("| {} | {} |", sc.name(), opt(base, fmt));
            for k in others {
                let v = m.cell(i, k).and_then(get);
                let r = v
                    .zip(base)
                    .map(|(v, b)| if inverse { b / v } else { v / b });
                let _ = write!(line, " {} | {} |", opt(v, fmt), ratio(r));
            }
            let _ = writeln!(o, "{line}");
        }
    };
    let all = |_: &Workload| true;
    let not_ping = |s: &Workload| !matches!(s, Workload::Latency { .. });
    let ping = |s: &Workload| matches!(s, Workload::Latency { .. });
    table(
        &mut o,
        "Throughput",
        "echo: messages/s, window 64, 1 connection; fan-out: deliveries/s; ratio > 1: faster than tokio-peer",
        |c| c.per_sec(),
        rate,
        false,
        &not_ping,
    );
    table(
        &mut o,
        "Body bandwidth",
        "MB/s one direction",
        |c| c.mb_per_sec(),
        |v| format!("{v:.0} MB/s"),
        false,
        &not_ping,
    );
    table(
        &mut o,
        "Ping-pong p50",
        "one request in flight; ratio < 1: lower latency than tokio-peer",
        |c| c.p50_us(),
        |v| format!("{v:.1} us"),
        false,
        &ping,
    );
    table(
        &mut o,
        "Ping-pong p99",
        "ratio < 1: lower latency than tokio-peer",
        |c| c.p99_us(),
        |v| format!("{v:.1} us"),
        false,
        &ping,
    );
    table(
        &mut o,
        "Server CPU per message",
        "all server threads, ns per echo / round trip / delivery, from /proc; ratio < 1: less CPU than tokio-peer",
        |c| c.cpu_ns(),
        |v| format!("{v:.0} ns"),
        false,
        &all,
    );
    table(
        &mut o,
        "Server allocator calls per message",
        "counting global allocator of the server process",
        |c| c.allocs(),
        |v| format!("{v:.2}"),
        false,
        &all,
    );
    rss_table(&mut o, m);
    // Spread and failures.
    let _ = writeln!(
        o,
        "\n**Run-to-run spread of the rate** (min - max over {} runs)\n",
        m.repeats
    );
    let mut names = String::from("| scenario |");
    let mut rule = String::from("|---|");
    for k in ServerKind::ALL {
        let _ = write!(names, " {k} |");
        rule.push_str("---:|");
    }
    let _ = writeln!(o, "{names}\n{rule}");
    for (i, sc) in m.scenarios.iter().enumerate() {
        let mut line = format!("| {} |", sc.name());
        for k in ServerKind::ALL {
            let cell = m.cell(i, k);
            let s = match cell.and_then(|c| c.per_sec_range()) {
                Some((a, b)) => format!("{} - {}", rate(a), rate(b)),
                None => "-".into(),
            };
            let errs = cell.map_or(0, |c| c.errors.len());
            let s = if errs > 0 {
                format!("{s} ({errs} failed)")
            } else {
                s
            };
            let _ = write!(line, " {s} |");
        }
        let _ = writeln!(o, "{line}");
    }
    let errors: Vec<String> = m
        .cells
        .iter()
        .flat_map(|((i, k), c)| {
            c.errors
                .iter()
                .map(move |e| format!("- {} on {k}: {e}", m.scenarios[*i].name()))
        })
        .collect();
    if !errors.is_empty() {
        let _ = writeln!(o, "\nFailed runs:\n\n{}", errors.join("\n"));
    }
    o
}

/// The server resident-set table: start / peak / after per server, in MB,
/// and each server's peak against the tokio peer's.
fn rss_table(o: &mut String, m: &Matrix) {
    let _ = writeln!(
        o,
        "\n**Server RSS** (MB, `VmRSS` of the server process from `/proc/PID/status`, \
         medians: start of the run / peak during it ({}) / after: {}; \
         ratio: peak vs tokio-peer's peak, < 1: less memory; each server runs for the \
         whole matrix, so a run starts where the previous one left it)\n",
        m.rss.peak.describe(),
        m.rss.settle.describe()
    );
    ratio_head(o);
    let mb = |v: Option<f64>| opt(v, |b| format!("{:.1}", b / 1e6));
    let cell = |c: Option<&super::e2e::Cell>| {
        format!(
            "{} / {} / {}",
            mb(c.and_then(|c| c.rss_start())),
            mb(c.and_then(|c| c.rss_peak())),
            mb(c.and_then(|c| c.rss_after()))
        )
    };
    for (i, sc) in m.scenarios.iter().enumerate() {
        let peer = m.cell(i, ServerKind::TokioPeer);
        let base = peer.and_then(|c| c.rss_peak());
        let mut line = format!("| {} | {} |", sc.name(), cell(peer));
        for k in ServerKind::OTHERS {
            let c = m.cell(i, k);
            let r = c.and_then(|c| c.rss_peak()).zip(base).map(|(v, b)| v / b);
            let _ = write!(line, " {} | {} |", cell(c), ratio(r));
        }
        let _ = writeln!(o, "{line}");
    }
}

/// The targets as a Markdown table.
pub fn targets_table(rows: &[TargetRow]) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "| target | goal | measured (median) | ratio | met |");
    let _ = writeln!(o, "|---|---|---|---:|---|");
    for r in rows {
        let met = match r.met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "not measured",
        };
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} | {} |",
            r.what,
            r.goal,
            r.detail,
            ratio(r.ratio),
            met
        );
    }
    o
}

fn table<'a>(tables: &'a [GroupTable], group: &str) -> Option<&'a GroupTable> {
    tables.iter().find(|t| t.group == group)
}

/// The smallest size from which gather is at least as fast as linear at
/// every larger size measured (`None` if it never is).
pub fn crossover(t: &GroupTable) -> Option<String> {
    let mut best: Option<String> = None;
    for row in t.rows.iter().rev() {
        match t.speedup(row, "gather", "linear") {
            Some(s) if s >= 1.0 => best = Some(row.clone()),
            _ => break,
        }
    }
    best
}

/// Each field-report experiment next to our ratio (from criterion).
pub fn field_table(tables: &[GroupTable]) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "| experiment | field report | ours (criterion medians) |"
    );
    let _ = writeln!(o, "|---|---|---|");
    let none = || "not measured (run `bench-report --run-criterion`)".to_string();
    let per_rows = |t: &GroupTable, col: &str, base: &str, rows: &[&str]| -> String {
        let v: Vec<String> = rows
            .iter()
            .filter_map(|r| t.speedup(r, col, base).map(|s| format!("{r}: {s:.2}x")))
            .collect();
        if v.is_empty() { none() } else { v.join(", ") }
    };
    let bc = table(tables, "broadcast").map_or_else(none, |t| {
        format!(
            "shared vs copy (system): {}",
            per_rows(t, "shared", "copy-system", &["64B", "512B", "4KiB"])
        )
    });
    let _ = writeln!(
        o,
        "| broadcast 1,000 rounds x 100 sessions, copy vs shared | shared 14.5x faster | {bc} |"
    );
    let cl = table(tables, "closures_100k").map_or_else(none, |t| {
        let v: Vec<String> = ["system", "mimalloc", "jemalloc"]
            .iter()
            .filter_map(|a| {
                t.speedup(a, "box", "pool4k")
                    .map(|s| format!("{a}: pool {s:.2}x slower"))
            })
            .collect();
        if v.is_empty() { none() } else { v.join(", ") }
    });
    let _ = writeln!(
        o,
        "| 100,000 closures, allocator vs 4 KiB pool blocks | pool 3.7x slower | {cl} |"
    );
    for g in ["send_tcp", "send_unix"] {
        let s = table(tables, g).map_or_else(none, |t| {
            format!(
                "gather vs linear: {}; gather never slower from {}",
                per_rows(t, "gather", "linear", &["4KiB", "64KiB"]),
                crossover(t).unwrap_or_else(|| "(never)".into())
            )
        });
        let _ = writeln!(
            o,
            "| gather vs linear, 4 KiB and 64 KiB ({g}) | crossover 32-64 KiB | {s} |"
        );
    }
    let pe = table(tables, "msg_same_thread").map_or_else(none, |t| {
        format!(
            "pool vs Vec (system): {}",
            per_rows(t, "pool-system", "vec-system", &["4KiB", "64KiB", "1MiB"])
        )
    });
    let _ = writeln!(
        o,
        "| 1 MiB message: pool falls back to the heap | no pool expansion needed | {pe} |"
    );
    let q = table(tables, "queue_2p1c").map_or_else(none, |t| {
        let v: Vec<String> = ["send_queue", "send_queue_batch16", "segqueue", "std_mpsc"]
            .iter()
            .filter_map(|c| {
                t.speedup("64B", c, "mutex_vecdeque")
                    .map(|s| format!("{c}: {s:.2}x"))
            })
            .collect();
        if v.is_empty() {
            none()
        } else {
            format!("vs Mutex<VecDeque>: {}", v.join(", "))
        }
    });
    let _ = writeln!(
        o,
        "| send-queue contention, 2 producers + 1 consumer | lock-free ahead of a lock | {q} |"
    );
    let al = table(tables, "alloc_same_thread").map_or_else(none, |t| {
        let v: Vec<String> = ["mimalloc", "jemalloc"]
            .iter()
            .map(|a| format!("{a} {}", per_rows(t, a, "system", &["16B", "4KiB", "1MiB"])))
            .collect();
        format!("vs system: {}", v.join("; "))
    });
    let _ = writeln!(
        o,
        "| allocators: tiny / block-sized / large | (compared) | {al} |"
    );
    o
}

/// Every criterion group as a table: median (speed-up vs the baseline).
pub fn criterion_tables(tables: &[GroupTable]) -> String {
    let mut o = String::new();
    for t in tables {
        let _ = writeln!(
            o,
            "\n#### {} (median; in brackets speed-up vs `{}`, > 1 is faster)\n",
            t.group, t.baseline
        );
        let _ = write!(o, "| case |");
        for c in &t.columns {
            let _ = write!(o, " {c} |");
        }
        let _ = writeln!(o, "\n|---|{}", "---:|".repeat(t.columns.len()));
        for r in &t.rows {
            let label = if r.is_empty() { "-" } else { r.as_str() };
            let _ = write!(o, "| {label} |");
            for c in &t.columns {
                let cell = match (t.get(r, c), t.speedup(r, c, &t.baseline)) {
                    (Some(v), Some(s)) => format!("{} ({s:.2}x)", fmt_ns(v)),
                    (Some(v), None) => fmt_ns(v),
                    _ => "-".into(),
                };
                let _ = write!(o, " {cell} |");
            }
            let _ = writeln!(o);
        }
    }
    o
}

/// The machine block.
pub fn machine_block(m: &Machine, command: &str) -> String {
    format!(
        "- machine: {}\n- commit: `{}`\n- date: {}\n- command: `{}`\n",
        m.summary(),
        m.commit,
        m.date,
        command
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::e2e::{Cell, Sample};

    #[test]
    fn every_server_gets_a_column_and_a_ratio() {
        let mut m = Matrix {
            scenarios: vec![Workload::Echo {
                size: 64,
                messages: 10,
                decipher: false,
            }],
            servers: ServerKind::ALL.to_vec(),
            repeats: 1,
            ..Default::default()
        };
        for (j, k) in ServerKind::ALL.into_iter().enumerate() {
            let sample = Sample {
                per_sec: 1000.0 * (j + 1) as f64,
                cpu_ns_per_msg: 100.0,
                ..Sample::default()
            };
            m.cells.insert(
                (0, k),
                Cell {
                    samples: vec![sample],
                    errors: Vec::new(),
                },
            );
        }
        let md = e2e_tables(&m);
        assert!(md.contains(
            "| scenario | tokio-peer | server-demo | vs peer | server-demo-logic1 | vs peer | \
             tokio-netbuf | vs peer | mio-lean | vs peer |"
        ));
        // Rates 1-5 k/s: ratios 2x-5x against the peer.
        assert!(md.contains(
            "| echo 64 B | 1.0 k/s | 2.0 k/s | 2.00x | 3.0 k/s | 3.00x | 4.0 k/s | 4.00x | \
             5.0 k/s | 5.00x |"
        ));
        assert!(md.contains(
            "| scenario | tokio-peer | server-demo | server-demo-logic1 | tokio-netbuf | mio-lean |"
        ));
        // The targets: server-demo at 2x the peer and 0.4x mio-lean.
        let rows = targets(&m);
        let row = |what: &str, goal: &str| {
            rows.iter()
                .find(|r| r.what == what && r.goal.starts_with(goal))
                .unwrap_or_else(|| panic!("{what} / {goal}: {rows:?}"))
                .clone()
        };
        let r = row("server-demo: echo 64 B throughput", ">= 1.5x tokio-peer");
        assert_eq!((r.ratio, r.met), (Some(2.0), Some(true)));
        let r = row("server-demo: echo 64 B throughput", ">= 0.9x mio-lean");
        assert_eq!((r.ratio, r.met), (Some(0.4), Some(false)));
        // No fan-out in this matrix: not measured.
        let r = row("server-demo: fan-out 64 B x16 deliveries", ">= 2.0x");
        assert_eq!((r.ratio, r.met), (None, None));
    }
}
