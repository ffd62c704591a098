//! The bench's output: a table for the terminal and the README,
//! `bench/results.json` for machines, and a PNG chart of the latency
//! distribution of every configuration.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};

use super::{percentile, Sample, Workload};

/// One line of the report: a workload with some clients on one target.
#[derive(Debug, Clone)]
pub struct Row {
    /// The workload.
    pub workload: Workload,
    /// Concurrent clients.
    pub clients: usize,
    /// The configuration's name.
    pub config: String,
    /// Whether the configuration replicates writes.
    pub replicated: bool,
    /// Whether clients reach the backend through a front process.
    pub fronted: bool,
    /// What was measured (latencies sorted).
    pub sample: Sample,
    /// Direct Dovecot's ops/s on the same workload and clients.
    pub direct_rate: f64,
}

impl Row {
    /// Successful operations per second.
    pub fn rate(&self) -> f64 {
        if self.sample.seconds > 0.0 {
            self.sample.lat.len() as f64 / self.sample.seconds
        } else {
            0.0
        }
    }

    /// The `p` quantile of latency, in milliseconds.
    pub fn ms(&self, p: f64) -> f64 {
        percentile(&self.sample.lat, p).as_secs_f64() * 1000.0
    }

    /// Throughput relative to direct Dovecot.
    pub fn ratio(&self) -> f64 {
        if self.direct_rate > 0.0 {
            self.rate() / self.direct_rate
        } else {
            0.0
        }
    }

    fn per_1k(&self, cpu: f64) -> f64 {
        let n = self.sample.lat.len();
        if n == 0 {
            0.0
        } else {
            cpu * 1000.0 / n as f64
        }
    }

    /// CPU seconds of the front processes per 1,000 operations.
    pub fn front_cpu_per_1k(&self) -> f64 {
        self.per_1k(self.sample.front_cpu)
    }

    /// CPU seconds of the backends per 1,000 operations.
    pub fn backend_cpu_per_1k(&self) -> f64 {
        self.per_1k(self.sample.backend_cpu)
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// The table, one line per row, grouped as the rows come.
pub fn table(rows: &[Row]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| workload | clients | configuration | ops/s | p50 ms | p99 ms | p99.9 ms | vs direct | front CPU s/1k ops | backend CPU s/1k ops | front peak RSS MiB | backend peak RSS MiB | errors |"
    );
    let _ = writeln!(
        out,
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for r in rows {
        let front = |v: String| if r.fronted { v } else { "-".to_string() };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {:.0}% | {} | {:.2} | {} | {:.0} | {} |",
            r.workload.name(),
            r.clients,
            r.config,
            r.rate(),
            r.ms(0.5),
            r.ms(0.99),
            r.ms(0.999),
            100.0 * r.ratio(),
            front(format!("{:.2}", r.front_cpu_per_1k())),
            r.backend_cpu_per_1k(),
            front(format!("{:.0}", mib(r.sample.front_rss))),
            mib(r.sample.backend_rss),
            r.sample.errors,
        );
    }
    out
}

/// Every row as JSON.
pub fn rows_json(rows: &[Row]) -> Value {
    Value::Array(
        rows.iter()
            .map(|r| {
                json!({
                    "workload": r.workload.name(),
                    "clients": r.clients,
                    "configuration": r.config,
                    "replicated": r.replicated,
                    "operations": r.sample.lat.len(),
                    "errors": r.sample.errors,
                    "first_error": r.sample.first_error,
                    "seconds": r.sample.seconds,
                    "ops_per_second": r.rate(),
                    "p50_ms": r.ms(0.5),
                    "p99_ms": r.ms(0.99),
                    "p999_ms": r.ms(0.999),
                    "ratio_to_direct": r.ratio(),
                    "front_cpu_seconds_per_1000_ops": r.fronted.then(|| r.front_cpu_per_1k()),
                    "backend_cpu_seconds_per_1000_ops": r.backend_cpu_per_1k(),
                    "front_peak_rss_bytes": r.fronted.then_some(r.sample.front_rss),
                    "backend_peak_rss_bytes": r.sample.backend_rss,
                })
            })
            .collect(),
    )
}

/// Summary statistics of some durations, in milliseconds.
pub fn stats_json(d: &[Duration]) -> Value {
    let mut v = d.to_vec();
    v.sort();
    let ms = |p| percentile(&v, p).as_secs_f64() * 1000.0;
    json!({
        "samples": v.len(),
        "p50_ms": ms(0.5),
        "p99_ms": ms(0.99),
        "max_ms": v.last().map_or(0.0, |d| d.as_secs_f64() * 1000.0),
    })
}

/// A font for the chart's text: the chart is skipped without one.
const FONTS: [&str; 2] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
];

/// Draws the latency distribution of every configuration, one panel per
/// workload and client count: a bar from p50 (dot) to p99.9, with a tick
/// at p99, on a log scale.
pub fn chart(rows: &[Row], path: &Path) -> Result<(), String> {
    use plotters::prelude::*;

    let font = FONTS
        .iter()
        .find_map(|p| std::fs::read(p).ok())
        .ok_or("no DejaVu font (Debian package fonts-dejavu-core)")?;
    // plotters keeps the font for the whole process.
    let font: &'static [u8] = Box::leak(font.into_boxed_slice());
    plotters::style::register_font("sans-serif", FontStyle::Normal, font)
        .map_err(|_| "the font cannot be read")?;

    let mut panels: Vec<(Workload, usize)> = Vec::new();
    for r in rows {
        if !panels.contains(&(r.workload, r.clients)) {
            panels.push((r.workload, r.clients));
        }
    }
    let mut configs: Vec<String> = Vec::new();
    for r in rows {
        if !configs.contains(&r.config) {
            configs.push(r.config.clone());
        }
    }
    let cols = panels.len().div_ceil(2).max(1);
    let e = |e: &dyn std::fmt::Display| e.to_string();
    let root = BitMapBackend::new(path, (cols as u32 * 420, 2 * 460)).into_drawing_area();
    root.fill(&WHITE).map_err(|x| e(&x))?;
    let areas = root.split_evenly((2, cols));
    let palette = [
        RGBColor(60, 60, 60),
        RGBColor(230, 120, 0),
        RGBColor(0, 110, 200),
        RGBColor(0, 150, 70),
        RGBColor(150, 60, 180),
        RGBColor(200, 30, 50),
        RGBColor(120, 90, 40),
        RGBColor(0, 160, 160),
    ];
    for (area, (w, clients)) in areas.iter().zip(panels.iter()) {
        let mine: Vec<&Row> = rows
            .iter()
            .filter(|r| r.workload == *w && r.clients == *clients && !r.sample.lat.is_empty())
            .collect();
        let lo = mine.iter().map(|r| r.ms(0.5)).fold(f64::MAX, f64::min);
        let hi = mine.iter().map(|r| r.ms(0.999)).fold(0.0, f64::max);
        if mine.is_empty() || !(lo > 0.0 && hi > 0.0) {
            continue;
        }
        let mut chart = ChartBuilder::on(area)
            .caption(
                format!(
                    "{} · {clients} client{}",
                    w.name(),
                    if *clients == 1 { "" } else { "s" }
                ),
                ("sans-serif", 18),
            )
            .margin(10)
            .x_label_area_size(90)
            .y_label_area_size(55)
            .build_cartesian_2d(
                -0.5f64..(configs.len() as f64 - 0.5),
                (lo / 1.5..hi * 1.5).log_scale(),
            )
            .map_err(|x| e(&x))?;
        let names = configs.clone();
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(configs.len() * 2 + 1)
            .x_label_formatter(&|x| {
                let i = x.round();
                if (x - i).abs() > 0.01 || i < 0.0 {
                    return String::new();
                }
                names.get(i as usize).cloned().unwrap_or_default()
            })
            .x_label_style(
                ("sans-serif", 12)
                    .into_font()
                    .transform(FontTransform::Rotate90),
            )
            .y_desc("latency, ms (p50 dot, p99 tick, top p99.9)")
            .y_label_style(("sans-serif", 12))
            .draw()
            .map_err(|x| e(&x))?;
        for r in mine {
            let Some(i) = configs.iter().position(|c| *c == r.config) else {
                continue;
            };
            let x = i as f64;
            let color = palette[i % palette.len()];
            chart
                .draw_series(LineSeries::new(
                    [(x, r.ms(0.5)), (x, r.ms(0.999))],
                    color.stroke_width(3),
                ))
                .map_err(|x| e(&x))?;
            chart
                .draw_series(LineSeries::new(
                    [(x - 0.2, r.ms(0.99)), (x + 0.2, r.ms(0.99))],
                    color.stroke_width(2),
                ))
                .map_err(|x| e(&x))?;
            chart
                .draw_series(std::iter::once(Circle::new(
                    (x, r.ms(0.5)),
                    5,
                    color.filled(),
                )))
                .map_err(|x| e(&x))?;
        }
    }
    root.present().map_err(|x| e(&x))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(config: &str, ms: u64, direct_rate: f64) -> Row {
        Row {
            workload: Workload::Append4k,
            clients: 1,
            config: config.to_string(),
            replicated: config != "direct",
            fronted: config != "direct",
            sample: Sample {
                lat: (1..=100)
                    .map(|k| Duration::from_micros(ms * 1000 + k))
                    .collect(),
                seconds: 1.0,
                front_cpu: 0.05,
                ..Sample::default()
            },
            direct_rate,
        }
    }

    #[test]
    fn the_table_and_json_carry_the_figures() {
        let rows = vec![row("direct", 2, 100.0), row("tandem", 4, 100.0)];
        let t = table(&rows);
        assert!(
            t.contains("| APPEND 4 KiB | 1 | tandem | 100 | 4.05 |"),
            "{t}"
        );
        assert!(t.contains("| 100% | 0.50 |"), "{t}");
        let j = rows_json(&rows);
        assert_eq!(j[1]["ops_per_second"], 100.0);
        assert_eq!(j[0]["front_cpu_seconds_per_1000_ops"], Value::Null);
    }

    #[test]
    fn the_chart_is_a_png() {
        if FONTS.iter().all(|p| !Path::new(p).exists()) {
            eprintln!("no font: chart not tested");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chart.png");
        chart(&[row("direct", 2, 100.0), row("tandem", 4, 100.0)], &path).unwrap();
        let png = std::fs::read(&path).unwrap();
        assert!(png.starts_with(b"\x89PNG"));
    }
}
