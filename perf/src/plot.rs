//! `sluice bench plot RESULT.json... --out DIR`: PNG charts from result files.
//!
//! - `throughput.png`: bars of produce and consume messages/s per result (MB/s written on top).
//! - `latency-produce.png`, `latency-e2e.png`: latency percentile curves, one line per result,
//!   on HdrHistogram's axes: x is the percentile on a log scale of "nines" (90%, 99%, 99.9%...),
//!   y the latency in milliseconds on a log scale.
//!
//! Text is drawn with `ab_glyph` from DejaVu Sans (Debian's `fonts-dejavu-core`), or the TTF
//! file named by `SLUICE_PLOT_FONT`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::OnceLock;

use plotters::prelude::*;
use serde_json::Value;

pub const FONT_PATH_DEFAULT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";
const FONT_FAMILY: &str = "sans-serif";
const CHART_SIZE: (u32, u32) = (1200, 700);

pub fn main(inputs: &[PathBuf], out: &Path) -> ExitCode {
    match plot_files(inputs, out) {
        Ok(written) => {
            for path in written {
                println!("{}", path.display());
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("sluice bench plot: {error}");
            ExitCode::from(1)
        }
    }
}

/// Reads result files and writes the charts into `out`; returns the files written.
pub fn plot_files(inputs: &[PathBuf], out: &Path) -> Result<Vec<PathBuf>, String> {
    let mut results = Vec::new();
    for path in inputs {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let value: Value =
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        results.push(value);
    }
    plot_results(&results, out)
}

pub fn plot_results(results: &[Value], out: &Path) -> Result<Vec<PathBuf>, String> {
    register_font()?;
    std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let mut written = Vec::new();
    let throughput = out.join("throughput.png");
    throughput_chart(results, &throughput).map_err(|e| format!("throughput chart: {e}"))?;
    written.push(throughput);
    for (section, key, file, title) in [
        (
            "produce",
            "ack_latency_us",
            "latency-produce.png",
            "Produce ack latency",
        ),
        (
            "consume",
            "e2e_latency_us",
            "latency-e2e.png",
            "End-to-end latency",
        ),
    ] {
        let curves: Vec<(String, Vec<(f64, f64)>)> = results
            .iter()
            .filter_map(|result| {
                let curve = result[section][key]["curve"].as_array()?;
                let points = curve
                    .iter()
                    .filter_map(|point| Some((point[0].as_f64()?, point[1].as_f64()? / 1000.0)))
                    .collect();
                Some((label(result), points))
            })
            .collect();
        if curves.is_empty() {
            continue;
        }
        let path = out.join(file);
        latency_chart(&curves, title, &path).map_err(|e| format!("{title} chart: {e}"))?;
        written.push(path);
    }
    Ok(written)
}

fn register_font() -> Result<(), String> {
    static REGISTERED: OnceLock<Result<(), String>> = OnceLock::new();
    REGISTERED
        .get_or_init(|| {
            let path = std::env::var("SLUICE_PLOT_FONT").unwrap_or_else(|_| FONT_PATH_DEFAULT.into());
            let bytes = std::fs::read(&path).map_err(|error| {
                format!("cannot read font {path}: {error} (apt-get install fonts-dejavu-core, or set SLUICE_PLOT_FONT)")
            })?;
            // Registered once per process; plotters keeps a 'static reference.
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            plotters::style::register_font(FONT_FAMILY, FontStyle::Normal, bytes)
                .map_err(|_| format!("{path} is not a usable TrueType font"))
        })
        .clone()
}

fn label(result: &Value) -> String {
    result["label"].as_str().unwrap_or("run").to_string()
}

type ChartResult = Result<(), Box<dyn std::error::Error>>;

fn throughput_chart(results: &[Value], path: &Path) -> ChartResult {
    let bars: Vec<(String, f64, f64, f64, f64)> = results
        .iter()
        .map(|result| {
            let rate = |section: &str, key: &str| {
                result[section]["throughput"][key].as_f64().unwrap_or(0.0)
            };
            (
                label(result),
                rate("produce", "messages_per_s"),
                rate("produce", "mb_per_s"),
                rate("consume", "messages_per_s"),
                rate("consume", "mb_per_s"),
            )
        })
        .collect();
    let top = bars.iter().map(|bar| bar.1.max(bar.3)).fold(1.0, f64::max) * 1.2;
    let root = BitMapBackend::new(path, CHART_SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Throughput (messages/s; MB/s on the bars)",
            (FONT_FAMILY, 26),
        )
        .margin(20)
        .x_label_area_size(60)
        .y_label_area_size(90)
        .build_cartesian_2d(0f64..bars.len() as f64, 0f64..top)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .disable_x_axis()
        .y_desc("messages/s")
        .y_label_formatter(&|value| format!("{value:.0}"))
        .draw()?;
    let produce_color = RGBColor(31, 119, 180);
    let consume_color = RGBColor(255, 127, 14);
    for (index, (name, produce, produce_mb, consume, consume_mb)) in bars.iter().enumerate() {
        let x = index as f64;
        for (offset, value, mb, color) in [
            (0.1, produce, produce_mb, produce_color),
            (0.5, consume, consume_mb, consume_color),
        ] {
            if *value <= 0.0 {
                continue;
            }
            chart.draw_series(std::iter::once(Rectangle::new(
                [(x + offset, 0.0), (x + offset + 0.4, *value)],
                color.filled(),
            )))?;
            chart.draw_series(std::iter::once(Text::new(
                format!("{value:.0} ({mb:.1} MB/s)"),
                (x + offset, *value + top * 0.02),
                (FONT_FAMILY, 14).into_font(),
            )))?;
        }
        chart.draw_series(std::iter::once(Text::new(
            name.clone(),
            (x + 0.1, -top * 0.04),
            (FONT_FAMILY, 16).into_font(),
        )))?;
    }
    for (index, (name, color)) in [("produce", produce_color), ("consume", consume_color)]
        .into_iter()
        .enumerate()
    {
        let y = top * (0.97 - 0.05 * index as f64);
        chart.draw_series(std::iter::once(Rectangle::new(
            [
                (0.02 * bars.len() as f64, y),
                (0.05 * bars.len() as f64, y - top * 0.03),
            ],
            color.filled(),
        )))?;
        chart.draw_series(std::iter::once(Text::new(
            name,
            (0.06 * bars.len() as f64, y),
            (FONT_FAMILY, 16).into_font(),
        )))?;
    }
    root.present()?;
    Ok(())
}

/// "Nines" of a percentile: 90% -> 1, 99% -> 2, 99.9% -> 3.
fn nines(percentile: f64) -> f64 {
    -(1.0 - (percentile / 100.0).min(0.999_999_9)).log10()
}

fn nines_label(value: f64) -> String {
    if value.fract().abs() > 1e-9 {
        return String::new();
    }
    match value as i32 {
        0 => "0%".into(),
        1 => "90%".into(),
        2 => "99%".into(),
        count => format!("99.{}%", "9".repeat(count as usize - 2)),
    }
}

fn latency_chart(curves: &[(String, Vec<(f64, f64)>)], title: &str, path: &Path) -> ChartResult {
    // The 100% point (max) has no place on a nines axis; it is drawn at the right edge.
    let highest = curves
        .iter()
        .flat_map(|(_, points)| points.iter())
        .filter(|(percentile, _)| *percentile < 100.0)
        .map(|(percentile, _)| nines(*percentile))
        .fold(2.0, f64::max);
    let x_max = highest.ceil() + 0.5;
    let values = curves
        .iter()
        .flat_map(|(_, points)| points.iter().map(|(_, value)| *value));
    let (low, high) = values.fold((f64::MAX, 0.0f64), |(low, high), v| {
        (low.min(v), high.max(v))
    });
    let low = (low.max(0.001) / 2.0).max(0.001);
    let high = (high * 2.0).max(low * 10.0);
    let root = BitMapBackend::new(path, CHART_SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(format!("{title} by percentile"), (FONT_FAMILY, 26))
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(90)
        .build_cartesian_2d(0f64..x_max, (low..high).log_scale())?;
    chart
        .configure_mesh()
        .x_labels((x_max.floor() as usize + 1) * 2)
        .x_label_formatter(&|value| nines_label(*value))
        .x_desc("percentile (max at the right edge)")
        .y_desc("latency (ms)")
        .y_label_formatter(&|value| format!("{value}"))
        .draw()?;
    for (index, (name, points)) in curves.iter().enumerate() {
        let color = Palette99::pick(index).to_rgba();
        let line: Vec<(f64, f64)> = points
            .iter()
            .map(|(percentile, value)| {
                let x = if *percentile >= 100.0 {
                    x_max
                } else {
                    nines(*percentile)
                };
                (x, value.max(low))
            })
            .collect();
        chart
            .draw_series(LineSeries::new(line, color.stroke_width(2)))?
            .label(name.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font((FONT_FAMILY, 16))
        .draw()?;
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::report::{latency_json, new_histogram, record_latency_ns};
    use serde_json::json;

    #[test]
    fn nines_axis() {
        assert!((nines(90.0) - 1.0).abs() < 1e-9);
        assert!((nines(99.9) - 3.0).abs() < 1e-9);
        assert_eq!(nines_label(0.0), "0%");
        assert_eq!(nines_label(3.0), "99.9%");
        assert_eq!(nines_label(4.0), "99.99%");
        assert_eq!(nines_label(2.5), "");
    }

    #[test]
    fn charts_are_written_as_png() {
        if !Path::new(FONT_PATH_DEFAULT).exists() && std::env::var("SLUICE_PLOT_FONT").is_err() {
            panic!("{FONT_PATH_DEFAULT} missing: apt-get install fonts-dejavu-core");
        }
        let mut histogram = new_histogram();
        for value_us in 1..=5000u64 {
            record_latency_ns(&mut histogram, value_us * 1700);
        }
        let latency = latency_json(&histogram);
        let results = vec![
            json!({"label": "a", "produce": {"throughput": {"messages_per_s": 1000.0, "mb_per_s": 1.0},
                   "ack_latency_us": latency}, "consume": {"throughput": {"messages_per_s": 900.0, "mb_per_s": 0.9},
                   "e2e_latency_us": latency}}),
            json!({"label": "b (produce only)", "produce": {"throughput": {"messages_per_s": 2500.0, "mb_per_s": 2.5},
                   "ack_latency_us": {"count": 0}}, "consume": null}),
        ];
        let out = tempfile::tempdir().unwrap();
        let written = plot_results(&results, out.path()).unwrap();
        let names: Vec<String> = written
            .iter()
            .map(|path| path.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            ["throughput.png", "latency-produce.png", "latency-e2e.png"]
        );
        for path in written {
            let bytes = std::fs::read(&path).unwrap();
            assert!(
                bytes.len() > 5000,
                "{} is {} bytes",
                path.display(),
                bytes.len()
            );
            assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
        }
    }
}
