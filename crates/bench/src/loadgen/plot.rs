//! The PNG: one row per workload, throughput against clients on the left and latency
//! percentiles (p50, p99) against clients on the right, etcd in blue and Synod in red.
//!
//! Text is drawn with ab_glyph from a TrueType file read at run time (DejaVu Sans, from
//! Debian's fonts-dejavu-core, or $SYNOD_BENCH_FONT), so no fontconfig or freetype library is
//! needed to build or run.

use super::report::{ComparePoint, RunResult};
use plotters::prelude::*;
use plotters::style::FontStyle;
use std::path::Path;
use std::sync::OnceLock;

const FONT_PATHS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/truetype/freefont/FreeSans.ttf",
];

const ETCD: RGBColor = RGBColor(31, 119, 180);
const SYNOD: RGBColor = RGBColor(214, 39, 40);
const PANEL: (u32, u32) = (700, 380);

/// Registers a font as "sans-serif" once; the error says how to get one.
fn register_font() -> Result<(), String> {
    static REGISTERED: OnceLock<Result<(), String>> = OnceLock::new();
    REGISTERED
        .get_or_init(|| {
            let candidates = std::env::var("SYNOD_BENCH_FONT")
                .ok()
                .into_iter()
                .chain(FONT_PATHS.iter().map(|p| p.to_string()));
            for path in candidates {
                if let Ok(bytes) = std::fs::read(&path) {
                    // ab_glyph keeps fonts for the life of the program; one font, loaded once.
                    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                    if plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
                        .is_ok()
                    {
                        return Ok(());
                    }
                }
            }
            Err(
                "no TrueType font found (apt-get install fonts-dejavu-core, or set \
                 SYNOD_BENCH_FONT to a .ttf file)"
                    .into(),
            )
        })
        .clone()
}

type Series = Vec<(f64, f64)>;

/// (position of the client count on the x axis, value) of one system's results for one
/// workload. Client counts are evenly spaced (1, 16, 64 would crowd on a linear axis, and a
/// log axis labels 1, 10, 100 rather than the counts run).
fn series(
    points: &[&ComparePoint],
    counts: &[usize],
    pick: impl Fn(&ComparePoint) -> Option<f64>,
) -> Series {
    points
        .iter()
        .filter_map(|p| {
            let x = counts.iter().position(|&c| c == p.clients)? as f64;
            pick(p).map(|v| (x, v))
        })
        .collect()
}

/// The client count at an x-axis position, or nothing between positions.
fn count_label(counts: &[usize], x: f64) -> String {
    let i = x.round();
    if (x - i).abs() > 1e-6 || i < 0.0 {
        return String::new();
    }
    counts
        .get(i as usize)
        .map(|c| c.to_string())
        .unwrap_or_default()
}

fn run_of(p: &ComparePoint, etcd: bool) -> Option<&RunResult> {
    if etcd {
        p.etcd.as_ref()
    } else {
        p.synod.as_ref()
    }
}

pub fn draw(points: &[ComparePoint], path: &Path) -> Result<(), String> {
    register_font()?;
    let mut workloads = Vec::new();
    for p in points {
        if !workloads.contains(&p.workload) {
            workloads.push(p.workload);
        }
    }
    if workloads.is_empty() {
        return Err("nothing to plot".into());
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let size = (PANEL.0 * 2, PANEL.1 * workloads.len() as u32 + 40);
    let root = BitMapBackend::new(path, size).into_drawing_area();
    let e = |e: DrawingAreaErrorKind<_>| e.to_string();
    root.fill(&WHITE).map_err(e)?;
    let root = root
        .titled(
            "Synod vs etcd, 3 members on loopback (blue: etcd, red: Synod)",
            ("sans-serif", 24),
        )
        .map_err(e)?;
    let panels = root.split_evenly((workloads.len(), 2));
    let mut counts: Vec<usize> = points.iter().map(|p| p.clients).collect();
    counts.sort_unstable();
    counts.dedup();
    let x_range = -0.3f64..(counts.len() as f64 - 0.7);
    let x_label = |x: &f64| count_label(&counts, *x);

    for (row, workload) in workloads.iter().enumerate() {
        let mine: Vec<&ComparePoint> = points.iter().filter(|p| p.workload == *workload).collect();

        // Throughput.
        let thr = |etcd: bool| series(&mine, &counts, |p| run_of(p, etcd).map(|r| r.throughput));
        let y_max = thr(true)
            .iter()
            .chain(thr(false).iter())
            .map(|(_, y)| *y)
            .fold(1.0, f64::max);
        let mut chart = ChartBuilder::on(&panels[2 * row])
            .caption(format!("{workload}: throughput"), ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(70)
            .build_cartesian_2d(x_range.clone(), 0f64..y_max * 1.15)
            .map_err(e)?;
        chart
            .configure_mesh()
            .x_desc("clients")
            .y_desc("ops/s")
            .max_light_lines(1)
            .light_line_style(WHITE.mix(0.0))
            .x_labels(counts.len() + 1)
            .x_label_formatter(&x_label)
            .y_label_formatter(&|y| format!("{y:.0}"))
            .draw()
            .map_err(e)?;
        for (etcd, color, name) in [(true, ETCD, "etcd"), (false, SYNOD, "Synod")] {
            let data = thr(etcd);
            chart
                .draw_series(LineSeries::new(data.clone(), color.stroke_width(2)))
                .map_err(e)?
                .label(name)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                });
            chart
                .draw_series(data.into_iter().map(|p| Circle::new(p, 4, color.filled())))
                .map_err(e)?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .border_style(BLACK)
            .background_style(WHITE.mix(0.8))
            .draw()
            .map_err(e)?;

        // Latency: p50 solid with dots, p99 dashed with triangles; log scale, in ms.
        let lat = |etcd: bool, p99: bool| {
            series(&mine, &counts, |p| {
                run_of(p, etcd).map(|r| {
                    let us = if p99 {
                        r.latency.p99_us
                    } else {
                        r.latency.p50_us
                    };
                    us.max(1) as f64 / 1000.0
                })
            })
        };
        let all: Vec<f64> = [(true, false), (true, true), (false, false), (false, true)]
            .into_iter()
            .flat_map(|(etcd, p99)| lat(etcd, p99).into_iter().map(|(_, y)| y))
            .collect();
        let y_min = all.iter().copied().fold(f64::INFINITY, f64::min).min(1.0) * 0.7;
        let y_max = all.iter().copied().fold(0.0, f64::max).max(1.0) * 1.5;
        let mut chart = ChartBuilder::on(&panels[2 * row + 1])
            .caption(format!("{workload}: latency p50 / p99"), ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(70)
            .build_cartesian_2d(x_range.clone(), (y_min..y_max).log_scale())
            .map_err(e)?;
        chart
            .configure_mesh()
            .x_desc("clients")
            .y_desc("ms")
            .y_labels(8)
            .max_light_lines(1)
            .light_line_style(WHITE.mix(0.0))
            .x_labels(counts.len() + 1)
            .x_label_formatter(&x_label)
            .y_label_formatter(&|y| format!("{y}"))
            .draw()
            .map_err(e)?;
        for (etcd, color, name) in [(true, ETCD, "etcd"), (false, SYNOD, "Synod")] {
            let p50 = lat(etcd, false);
            chart
                .draw_series(LineSeries::new(p50.clone(), color.stroke_width(2)))
                .map_err(e)?
                .label(format!("{name} p50"))
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                });
            chart
                .draw_series(p50.into_iter().map(|p| Circle::new(p, 4, color.filled())))
                .map_err(e)?;
            let p99 = lat(etcd, true);
            chart
                .draw_series(DashedLineSeries::new(
                    p99.clone(),
                    6,
                    4,
                    color.stroke_width(2),
                ))
                .map_err(e)?
                .label(format!("{name} p99"))
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 8, y)], color.stroke_width(2))
                });
            chart
                .draw_series(
                    p99.into_iter()
                        .map(|p| TriangleMarker::new(p, 5, color.filled())),
                )
                .map_err(e)?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .border_style(BLACK)
            .background_style(WHITE.mix(0.8))
            .draw()
            .map_err(e)?;
    }
    root.present().map_err(e)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loadgen::report::tests::result;
    use crate::loadgen::workload::Workload;

    #[test]
    fn draws_a_png() {
        // A missing font fails the test, saying how to install one (scripts/test.sh does).
        register_font().unwrap_or_else(|e| panic!("{e}"));
        let mut points = Vec::new();
        for workload in [Workload::Put, Workload::Get] {
            for clients in [1, 16, 64] {
                points.push(ComparePoint {
                    workload,
                    clients,
                    etcd: Some(result(workload, clients, 100 * clients as u64, 2000)),
                    synod: Some(result(workload, clients, 300 * clients as u64, 700)),
                });
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plot.png");
        draw(&points, &path).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[1..4], b"PNG");
        assert!(bytes.len() > 10_000);
    }
}
