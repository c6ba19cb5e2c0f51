//! `--plot FILE.png`: the latency distribution (histograms of GPU compute and host latency)
//! and, with a profile, a bar chart of the slowest steps. Drawn with plotters' bitmap backend.
//!
//! Text needs a font: the first usable TTF among `$KILN_PLOT_FONT` and the system font folders
//! (`/usr/share/fonts`, ...) is registered at run time. Without one (the GPU machines have
//! none: carry a TTF and point `KILN_PLOT_FONT` at it) the plot is drawn without any text
//! (bars and axes only) and a note says so. Host code; tested on synthetic data.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{Result, anyhow};
use plotters::prelude::*;
use plotters::style::FontStyle;

use super::report::{ProfileReport, Samples};
use super::stats;

/// The family name fonts are registered under.
const FAMILY: &str = "kiln-plot";
/// Bins of each histogram.
const BINS: usize = 60;
/// Steps in the bar chart.
const TOP_STEPS: usize = 20;

const GPU_COLOR: RGBColor = RGBColor(31, 119, 180);
const HOST_COLOR: RGBColor = RGBColor(255, 127, 14);
const BAR_COLOR: RGBColor = RGBColor(44, 160, 44);

/// `Some(family)` once a font is registered; `None` when no usable font was found.
pub fn font() -> Option<&'static str> {
    static FOUND: OnceLock<bool> = OnceLock::new();
    FOUND.get_or_init(register_font).then_some(FAMILY)
}

fn register_font() -> bool {
    let mut candidates: Vec<PathBuf> = std::env::var_os("KILN_PLOT_FONT")
        .map(PathBuf::from)
        .into_iter()
        .collect();
    candidates.extend(system_fonts());
    // Each font registered stays for the process (plotters wants `'static` bytes); only a
    // few are tried.
    for path in candidates.into_iter().take(4) {
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        if plotters::style::register_font(FAMILY, FontStyle::Normal, bytes).is_ok() {
            tracing::debug!(font = %path.display(), "plot font");
            return true;
        }
    }
    false
}

/// TTF files in the usual folders, the most plain-looking sans fonts first.
fn system_fonts() -> Vec<PathBuf> {
    let mut dirs = vec![
        PathBuf::from("/usr/share/fonts"),
        PathBuf::from("/usr/local/share/fonts"),
        PathBuf::from("/System/Library/Fonts"),
        PathBuf::from("/Library/Fonts"),
        PathBuf::from("C:\\Windows\\Fonts"),
    ];
    if let Some(home) = std::env::var_os("HOME").map(PathBuf::from) {
        dirs.push(home.join(".local/share/fonts"));
        dirs.push(home.join(".fonts"));
    }
    let mut found = Vec::new();
    for d in dirs {
        collect_ttf(&d, 4, &mut found);
    }
    let rank = |p: &PathBuf| -> u8 {
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_default();
        const PREFERRED: [&str; 4] = [
            "dejavusans.ttf",
            "liberationsans-regular.ttf",
            "arial.ttf",
            "notosans-regular.ttf",
        ];
        if let Some(i) = PREFERRED.iter().position(|n| *n == name) {
            return i as u8;
        }
        let styled = ["bold", "italic", "oblique", "mono", "light", "condensed"]
            .iter()
            .any(|s| name.contains(s));
        if name.contains("sans") && !styled {
            10
        } else if !styled {
            20
        } else {
            30
        }
    };
    found.sort_by(|a, b| rank(a).cmp(&rank(b)).then_with(|| a.cmp(b)));
    found
}

fn collect_ttf(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            if depth > 0 {
                collect_ttf(&p, depth - 1, out);
            }
        } else if p.extension().is_some_and(|x| x.eq_ignore_ascii_case("ttf")) {
            out.push(p);
        }
    }
}

/// Writes the PNG, with text when a font is available; returns whether text was drawn.
pub fn write_png(
    path: &Path,
    title: &str,
    samples: &Samples,
    profile: Option<&ProfileReport>,
) -> Result<bool> {
    let font = font();
    render(path, title, samples, profile, font)?;
    Ok(font.is_some())
}

fn plot_err(path: &Path, e: impl std::fmt::Display) -> anyhow::Error {
    anyhow!("drawing the plot {}: {e}", path.display())
}

/// Draws the plot with `font` (a registered family) or, with `None`, without text.
pub fn render(
    path: &Path,
    title: &str,
    samples: &Samples,
    profile: Option<&ProfileReport>,
    font: Option<&str>,
) -> Result<()> {
    let profile = profile.filter(|p| !p.steps.is_empty());
    let height = if profile.is_some() { 1000 } else { 520 };
    let root = BitMapBackend::new(path, (1200, height)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| plot_err(path, e))?;
    let (top, bottom) = match profile {
        Some(_) => {
            let (a, b) = root.split_vertically(480);
            (a, Some(b))
        }
        None => (root.clone(), None),
    };
    histograms(&top, title, samples, font).map_err(|e| plot_err(path, e))?;
    if let (Some(area), Some(p)) = (bottom, profile) {
        step_bars(&area, p, font).map_err(|e| plot_err(path, e))?;
    }
    root.present().map_err(|e| plot_err(path, e))?;
    Ok(())
}

type Area<'a> = DrawingArea<BitMapBackend<'a>, plotters::coord::Shift>;
type DrawResult = std::result::Result<(), Box<dyn std::error::Error + Send + Sync>>;

fn histograms(area: &Area<'_>, title: &str, samples: &Samples, font: Option<&str>) -> DrawResult {
    let series: Vec<(&str, &[f64], RGBColor)> = [
        ("GPU compute", samples.gpu_compute_ms.as_slice(), GPU_COLOR),
        (
            "host latency",
            samples.host_latency_ms.as_slice(),
            HOST_COLOR,
        ),
    ]
    .into_iter()
    .filter(|(_, s, _)| !s.is_empty())
    .collect();
    // The range covers 99.5 % of each series, so rare outliers do not squash the plot.
    let lo = series
        .iter()
        .filter_map(|(_, s, _)| stats::percentile(s, 0.0))
        .fold(f64::INFINITY, f64::min);
    let hi = series
        .iter()
        .filter_map(|(_, s, _)| stats::percentile(s, 99.5))
        .fold(f64::NEG_INFINITY, f64::max);
    let (lo, hi) = if lo.is_finite() && hi.is_finite() && hi > lo {
        let pad = (hi - lo) * 0.02;
        ((lo - pad).max(0.0), hi + pad)
    } else if lo.is_finite() {
        ((lo * 0.9).max(0.0), lo * 1.1 + 1e-6)
    } else {
        (0.0, 1.0)
    };
    let counts: Vec<Vec<usize>> = series
        .iter()
        .map(|(_, s, _)| stats::histogram(s, lo, hi, BINS))
        .collect();
    let ymax = counts.iter().flatten().copied().max().unwrap_or(1).max(1) as f64 * 1.08;
    let mut builder = ChartBuilder::on(area);
    builder.margin(12);
    match font {
        Some(f) => builder
            .caption(title, (f, 22))
            .x_label_area_size(40)
            .y_label_area_size(60),
        // Thin label areas keep the axis lines without any text.
        None => builder.x_label_area_size(6).y_label_area_size(6),
    };
    let mut chart = builder.build_cartesian_2d(lo..hi, 0f64..ymax)?;
    let mut mesh = chart.configure_mesh();
    match font {
        Some(f) => mesh
            .x_desc("latency (ms)")
            .y_desc("iterations")
            .label_style((f, 14))
            .axis_desc_style((f, 16)),
        None => mesh.x_labels(0).y_labels(0),
    };
    mesh.draw()?;
    let width = (hi - lo) / BINS as f64;
    for ((name, _, color), c) in series.iter().zip(&counts) {
        let color = *color;
        let bars = c.iter().enumerate().filter(|(_, n)| **n > 0).map(|(i, n)| {
            let x0 = lo + i as f64 * width;
            Rectangle::new(
                [(x0, 0.0), (x0 + width, *n as f64)],
                color.mix(0.55).filled(),
            )
        });
        let drawn = chart.draw_series(bars)?;
        if font.is_some() {
            drawn.label(*name).legend(move |(x, y)| {
                Rectangle::new([(x, y - 5), (x + 14, y + 5)], color.filled())
            });
        }
    }
    if let Some(f) = font {
        chart
            .configure_series_labels()
            .label_font((f, 15))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()?;
    }
    Ok(())
}

fn step_bars(area: &Area<'_>, p: &ProfileReport, font: Option<&str>) -> DrawResult {
    let top = p.top(TOP_STEPS);
    let k = top.len().max(1) as f64;
    let max_ms = top.iter().map(|s| s.ms).fold(0.0, f64::max).max(1e-6);
    let mut builder = ChartBuilder::on(area);
    builder.margin(12);
    if let Some(f) = font {
        builder
            .caption(
                format!(
                    "slowest {} of {} steps (one profiled run, {:.3} ms)",
                    top.len(),
                    p.steps.len(),
                    p.total_ms
                ),
                (f, 20),
            )
            .x_label_area_size(40)
            .y_label_area_size(20);
    } else {
        builder.x_label_area_size(6).y_label_area_size(6);
    }
    // Room on the right for the labels drawn after each bar.
    let mut chart = builder.build_cartesian_2d(0f64..max_ms * 1.9, 0f64..k)?;
    let mut mesh = chart.configure_mesh();
    mesh.disable_y_mesh().y_labels(0);
    match font {
        Some(f) => mesh
            .x_desc("GPU time (ms)")
            .label_style((f, 14))
            .axis_desc_style((f, 16)),
        None => mesh.x_labels(0),
    };
    mesh.draw()?;
    // Slowest at the top.
    chart.draw_series(top.iter().enumerate().map(|(i, s)| {
        let y = k - i as f64;
        Rectangle::new([(0.0, y - 0.85), (s.ms, y - 0.15)], BAR_COLOR.filled())
    }))?;
    if let Some(f) = font {
        chart.draw_series(top.iter().enumerate().map(|(i, s)| {
            let y = k - i as f64 - 0.3;
            Text::new(
                format!(
                    "#{} {} {:.4} ms ({:.1}%) {}",
                    s.index,
                    s.op,
                    s.ms,
                    s.share * 100.0,
                    short(&s.name, 40)
                ),
                (s.ms + max_ms * 0.02, y),
                (f, 13),
            )
        }))?;
    }
    Ok(())
}

/// `name` cut to `n` characters with an ellipsis.
fn short(name: &str, n: usize) -> String {
    if name.chars().count() <= n {
        name.to_string()
    } else {
        let mut s: String = name.chars().take(n.saturating_sub(1)).collect();
        s.push('…');
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn synthetic(seed: u64) -> (Samples, ProfileReport) {
        let mut r = rand::rngs::StdRng::seed_from_u64(seed);
        let mut s = Samples::default();
        for _ in 0..800 {
            let c: f64 = 0.4 + r.random_range(0.0..0.1);
            s.gpu_compute_ms.push(c);
            s.host_latency_ms.push(c + 0.05 + r.random_range(0.0..0.08));
        }
        let steps = (0..30)
            .map(|i| {
                (
                    i,
                    format!("/layer{i}/op"),
                    ["Conv", "Relu", "Gemm"][i % 3].to_string(),
                    "k".to_string(),
                    r.random_range(0.001..0.05),
                )
            })
            .collect();
        (s, ProfileReport::new(0.6, steps))
    }

    fn png_ok(path: &Path) {
        let bytes = std::fs::read(path).unwrap();
        assert!(bytes.len() > 1000, "{} bytes", bytes.len());
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    }

    #[test]
    fn writes_a_png_with_and_without_text() {
        let dir = tempfile::tempdir().unwrap();
        let (s, p) = synthetic(1);
        // Without a font: shapes only, never an error.
        let a = dir.path().join("plain.png");
        render(&a, "t", &s, Some(&p), None).unwrap();
        png_ok(&a);
        // With whatever font this machine has (text drawn when one is found).
        let b = dir.path().join("text.png");
        write_png(&b, "kiln bench test", &s, Some(&p)).unwrap();
        png_ok(&b);
        // Host-only samples (CPU path), no profile.
        let c = dir.path().join("cpu.png");
        let cpu = Samples {
            host_latency_ms: s.host_latency_ms.clone(),
            ..Samples::default()
        };
        write_png(&c, "cpu", &cpu, None).unwrap();
        png_ok(&c);
        // A constant series still has a range.
        let d = dir.path().join("flat.png");
        let flat = Samples {
            host_latency_ms: vec![2.0; 50],
            ..Samples::default()
        };
        render(&d, "flat", &flat, None, None).unwrap();
        png_ok(&d);
    }

    #[test]
    fn an_unwritable_path_is_an_error_naming_it() {
        let (s, _) = synthetic(2);
        let bad = Path::new("/nonexistent-dir-kiln/x.png");
        let e = render(bad, "t", &s, None, None).unwrap_err();
        assert!(e.to_string().contains("/nonexistent-dir-kiln/x.png"), "{e}");
    }
}
