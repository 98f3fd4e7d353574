//! SVG line charts with `plotters` (SVG backend only, no font files).

use std::path::Path;

use plotters::prelude::*;

/// A named line: `(x, y)` points.
pub type Series = (String, Vec<(f64, f64)>);

/// What to draw.
#[derive(Debug, Clone)]
pub struct Chart<'a> {
    /// Title on top.
    pub title: &'a str,
    /// X axis label.
    pub x_label: &'a str,
    /// Y axis label.
    pub y_label: &'a str,
    /// Lines.
    pub series: Vec<Series>,
    /// Logarithmic X axis.
    pub log_x: bool,
    /// Logarithmic Y axis.
    pub log_y: bool,
    /// Vertical markers `(x, label)`.
    pub vlines: Vec<(f64, String)>,
    /// A horizontal reference line.
    pub hline: Option<f64>,
    /// Formats X tick values (e.g. byte sizes).
    pub x_fmt: fn(f64) -> String,
}

const COLORS: [RGBColor; 6] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x8c, 0x56, 0x4b),
];

/// Byte sizes as `64 B`, `4 KiB`, `1 MiB`.
pub fn fmt_bytes(v: f64) -> String {
    let v = v.round() as usize;
    server_demo::load::fmt_size(v)
}

/// Plain numbers.
pub fn fmt_plain(v: f64) -> String {
    if v >= 100.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

fn bounds(vals: impl Iterator<Item = f64>, log: bool) -> (f64, f64) {
    let v: Vec<f64> = vals
        .filter(|x| x.is_finite() && (!log || *x > 0.0))
        .collect();
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if !lo.is_finite() || !hi.is_finite() {
        return (1.0, 10.0);
    }
    if log {
        (lo / 1.5, hi * 1.5)
    } else {
        let pad = ((hi - lo) * 0.1).max(hi.abs() * 0.05).max(1e-9);
        (if lo >= 0.0 { 0.0 } else { lo - pad }, hi + pad)
    }
}

/// Draws `chart` into the SVG file `path`.
pub fn draw(path: &Path, chart: &Chart<'_>) -> Result<(), String> {
    let root = SVGBackend::new(path, (820, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let xs = chart
        .series
        .iter()
        .flat_map(|s| s.1.iter().map(|p| p.0))
        .chain(chart.vlines.iter().map(|v| v.0));
    let ys = chart
        .series
        .iter()
        .flat_map(|s| s.1.iter().map(|p| p.1))
        .chain(chart.hline);
    let (x0, x1) = bounds(xs, chart.log_x);
    let (y0, y1) = bounds(ys, chart.log_y);
    let mut builder = ChartBuilder::on(&root);
    builder
        .caption(chart.title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70);
    macro_rules! body {
        ($ctx:expr) => {{
            let mut ctx = $ctx;
            ctx.configure_mesh()
                .x_desc(chart.x_label)
                .y_desc(chart.y_label)
                .x_label_formatter(&|v| (chart.x_fmt)(*v))
                .draw()
                .map_err(|e| e.to_string())?;
            if let Some(h) = chart.hline {
                ctx.draw_series(LineSeries::new(
                    [(x0, h), (x1, h)],
                    BLACK.mix(0.4).stroke_width(1),
                ))
                .map_err(|e| e.to_string())?;
            }
            for (x, label) in &chart.vlines {
                ctx.draw_series(LineSeries::new(
                    [(*x, y0), (*x, y1)],
                    RGBColor(0x55, 0x55, 0x55).stroke_width(2),
                ))
                .map_err(|e| e.to_string())?
                .label(label.clone())
                .legend(|(x, y)| {
                    PathElement::new([(x, y), (x + 18, y)], RGBColor(0x55, 0x55, 0x55))
                });
            }
            for (i, (name, pts)) in chart.series.iter().enumerate() {
                let c = COLORS[i % COLORS.len()];
                ctx.draw_series(
                    LineSeries::new(pts.iter().copied(), c.stroke_width(2)).point_size(4),
                )
                .map_err(|e| e.to_string())?
                .label(name.clone())
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], c.stroke_width(2)));
            }
            ctx.configure_series_labels()
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .position(SeriesLabelPosition::UpperLeft)
                .draw()
                .map_err(|e| e.to_string())?;
        }};
    }
    match (chart.log_x, chart.log_y) {
        (true, true) => body!(
            builder
                .build_cartesian_2d((x0..x1).log_scale(), (y0..y1).log_scale())
                .map_err(|e| e.to_string())?
        ),
        (true, false) => body!(
            builder
                .build_cartesian_2d((x0..x1).log_scale(), y0..y1)
                .map_err(|e| e.to_string())?
        ),
        (false, true) => body!(
            builder
                .build_cartesian_2d(x0..x1, (y0..y1).log_scale())
                .map_err(|e| e.to_string())?
        ),
        (false, false) => body!(
            builder
                .build_cartesian_2d(x0..x1, y0..y1)
                .map_err(|e| e.to_string())?
        ),
    }
    root.present().map_err(|e| e.to_string())?;
    Ok(())
}
