//! SVG charts for the portal, drawn on the server with plotters: stacked
//! bars per day (usage by class) and lines over time (capacity, sold, used).
//! Pure: data in, an `<svg>` string out; no file, no clock. Every chart is
//! meant to stand beside a table of the same figures, which is what screen
//! readers and copy-paste use; the SVG carries an `aria-label` only.
//!
//! Text is measured with ab_glyph against DejaVu Sans (compiled in), and
//! written as SVG `<text>` the browser sets in its own sans-serif.

use std::sync::OnceLock;

use chrono::{DateTime, Utc};
use plotters::coord::Shift;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::{FontStyle, register_font};

#[derive(Debug, thiserror::Error)]
pub enum ChartError {
    #[error("drawing the chart: {0}")]
    Draw(String),
    #[error("series {label:?} has {got} values for {expected} categories")]
    Misaligned { label: String, got: usize, expected: usize },
}

/// Colours of the series, in order: distinct for the common kinds of colour
/// blindness (Okabe and Ito's palette).
const PALETTE: [RGBColor; 6] = [
    RGBColor(0, 114, 178),
    RGBColor(230, 159, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(86, 180, 233),
    RGBColor(213, 94, 0),
];

const WIDTH: u32 = 720;
const HEIGHT: u32 = 300;
const FONT: &str = "sans-serif";

/// Registers the face once per process; plotters measures text with it.
fn font_ready() -> Result<(), ChartError> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| register_font(FONT, FontStyle::Normal, reservoir_fonts::SANS).is_ok());
    if ok { Ok(()) } else { Err(ChartError::Draw("the chart font does not load".into())) }
}

fn draw_error(e: impl std::fmt::Display) -> ChartError {
    ChartError::Draw(e.to_string())
}

/// One series of a chart: a label for the legend and its values.
#[derive(Debug, Clone)]
pub struct Series<T> {
    pub label: String,
    pub values: Vec<T>,
}

/// A nice upper bound for an axis that must show `max`.
fn axis_top(max: f64) -> f64 {
    if max <= 0.0 || !max.is_finite() {
        return 1.0;
    }
    let magnitude = 10f64.powf(max.log10().floor());
    [1.0, 1.2, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0]
        .iter()
        .map(|s| s * magnitude)
        .find(|top| *top >= max)
        .unwrap_or(max)
}

/// The value axis' labels: whole numbers once the axis reaches 10.
fn value_label(top: f64) -> impl Fn(&f64) -> String {
    move |v| if top >= 10.0 { format!("{v:.0}") } else { format!("{v:.1}") }
}

/// Marks the SVG as one image with `label` for assistive technology.
fn labelled(svg: String, label: &str) -> String {
    let escaped = label.replace('&', "&amp;").replace('"', "&quot;").replace('<', "&lt;");
    svg.replacen("<svg ", &format!("<svg role=\"img\" aria-label=\"{escaped}\" "), 1)
}

type Plane = Cartesian2d<RangedCoordf64, RangedCoordf64>;

/// A white chart with its title and room for the axes' labels, over `x`
/// and from 0 to `top`.
fn frame<'a>(
    root: &DrawingArea<SVGBackend<'a>, Shift>,
    title: &str,
    x: std::ops::Range<f64>,
    top: f64,
) -> Result<ChartContext<'a, SVGBackend<'a>, Plane>, ChartError> {
    root.fill(&WHITE).map_err(draw_error)?;
    ChartBuilder::on(root)
        .caption(title, (FONT, 16))
        .margin(10)
        .x_label_area_size(36)
        .y_label_area_size(70)
        .build_cartesian_2d(x, 0f64..top)
        .map_err(draw_error)
}

/// The legend box, where it hides the least of the series.
fn legend<'a, CT: plotters::coord::CoordTranslate>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, CT>,
    position: SeriesLabelPosition,
) -> Result<(), ChartError> {
    chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font((FONT, 12))
        .draw()
        .map_err(draw_error)
}

/// Bars per category (e.g. a day), each the stack of the series' values
/// there. Every series has one value per category.
pub fn stacked_bars(
    title: &str,
    y_label: &str,
    categories: &[String],
    series: &[Series<f64>],
) -> Result<String, ChartError> {
    font_ready()?;
    for s in series {
        if s.values.len() != categories.len() {
            return Err(ChartError::Misaligned {
                label: s.label.clone(),
                got: s.values.len(),
                expected: categories.len(),
            });
        }
    }
    let totals: Vec<f64> = (0..categories.len()).map(|i| series.iter().map(|s| s.values[i].max(0.0)).sum()).collect();
    let top = axis_top(totals.iter().copied().fold(0.0, f64::max));
    let n = categories.len().max(1);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        let mut chart = frame(&root, title, 0f64..n as f64, top)?;
        // At most about 10 labels, so that dates never overlap.
        let step = n.div_ceil(10);
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(n + 1)
            .x_label_formatter(&|x| {
                let i = x.floor() as usize;
                if (x - x.floor()).abs() < f64::EPSILON && i.is_multiple_of(step) {
                    categories.get(i).cloned().unwrap_or_default()
                } else {
                    String::new()
                }
            })
            .y_label_formatter(&value_label(top))
            .y_desc(y_label)
            .label_style((FONT, 12))
            .draw()
            .map_err(draw_error)?;
        let mut base = vec![0.0f64; categories.len()];
        for (k, s) in series.iter().enumerate() {
            let color = PALETTE[k % PALETTE.len()];
            let bars: Vec<Rectangle<(f64, f64)>> = s
                .values
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    let (from, to) = (base[i], base[i] + v.max(0.0));
                    base[i] = to;
                    Rectangle::new([(i as f64 + 0.15, from), (i as f64 + 0.85, to)], color.filled())
                })
                .collect();
            chart
                .draw_series(bars)
                .map_err(draw_error)?
                .label(s.label.as_str())
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], color.filled()));
        }
        legend(&mut chart, SeriesLabelPosition::UpperLeft)?;
        root.present().map_err(draw_error)?;
    }
    Ok(labelled(svg, title))
}

/// Lines over time between `from` and `to`; each point is (instant, value),
/// and a line holds its value until its next point (a step), as capacity
/// and reservations do.
pub fn steps_over_time(
    title: &str,
    y_label: &str,
    (from, to): (DateTime<Utc>, DateTime<Utc>),
    series: &[Series<(DateTime<Utc>, f64)>],
) -> Result<String, ChartError> {
    font_ready()?;
    let x = |t: &DateTime<Utc>| t.timestamp() as f64;
    let (x0, x1) = (x(&from), x(&to).max(x(&from) + 1.0));
    let max = series.iter().flat_map(|s| s.values.iter().map(|(_, v)| *v)).fold(0.0, f64::max);
    let top = axis_top(max * 1.05);
    let span_days = (x1 - x0) / 86_400.0;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        let mut chart = frame(&root, title, x0..x1, top)?;
        chart
            .configure_mesh()
            .x_labels(8)
            .x_label_formatter(&|v| {
                let at = DateTime::<Utc>::from_timestamp(*v as i64, 0).unwrap_or(from);
                if span_days > 2.0 { at.format("%m-%d").to_string() } else { at.format("%H:%M").to_string() }
            })
            .y_label_formatter(&value_label(top))
            .y_desc(y_label)
            .label_style((FONT, 12))
            .draw()
            .map_err(draw_error)?;
        for (k, s) in series.iter().enumerate() {
            let color = PALETTE[k % PALETTE.len()];
            let mut points: Vec<(f64, f64)> = Vec::with_capacity(s.values.len() * 2 + 1);
            for (i, (at, v)) in s.values.iter().enumerate() {
                let t = x(at).clamp(x0, x1);
                if i > 0 {
                    points.push((t, points.last().map_or(*v, |p| p.1)));
                }
                points.push((t, *v));
            }
            if let Some(&(_, last)) = points.last() {
                points.push((x1, last));
            }
            chart
                .draw_series(LineSeries::new(points, color.stroke_width(2)))
                .map_err(draw_error)?
                .label(s.label.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 12, y)], color.stroke_width(2)));
        }
        legend(&mut chart, SeriesLabelPosition::LowerRight)?;
        root.present().map_err(draw_error)?;
    }
    Ok(labelled(svg, title))
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn day(d: u32) -> String {
        format!("11-{d:02}")
    }

    #[test]
    fn stacked_bars_draw_each_series_with_its_legend_and_the_title() {
        let categories: Vec<String> = (1..=3).map(day).collect();
        let series = vec![
            Series { label: "reserved".into(), values: vec![10.0, 20.0, 0.0] },
            Series { label: "spot".into(), values: vec![5.0, 0.0, 7.5] },
        ];
        let svg = stacked_bars("Usage by day", "weighted tokens", &categories, &series).expect("drawn");
        assert!(svg.starts_with("<svg role=\"img\" aria-label=\"Usage by day\" "), "{}", &svg[..80]);
        for text in ["Usage by day", "reserved", "spot", "11-01", "weighted tokens"] {
            assert!(svg.contains(text), "the chart shows {text:?}");
        }
        // One rectangle per value and series, plus the legend's and frame's.
        assert!(svg.matches("<rect").count() >= 6);
    }

    #[test]
    fn a_series_that_does_not_match_the_categories_is_refused() {
        let categories: Vec<String> = (1..=3).map(day).collect();
        let series = vec![Series { label: "reserved".into(), values: vec![1.0] }];
        let err = stacked_bars("t", "y", &categories, &series).expect_err("misaligned");
        assert!(matches!(err, ChartError::Misaligned { got: 1, expected: 3, .. }), "{err}");
    }

    #[test]
    fn steps_over_time_draw_a_line_per_series_and_survive_no_data() {
        let from = Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).single().expect("instant");
        let to = from + chrono::Duration::days(1);
        let series = vec![
            Series { label: "capacity".into(), values: vec![(from, 500.0)] },
            Series {
                label: "reserved".into(),
                values: vec![(from, 100.0), (from + chrono::Duration::hours(6), 250.0)],
            },
            Series { label: "used".into(), values: vec![] },
        ];
        let svg = steps_over_time("Pool", "tokens/s", (from, to), &series).expect("drawn");
        let strokes = |color: &str| svg.matches(&format!("stroke=\"{color}\" stroke-width=\"2\"")).count();
        assert_eq!(strokes("#0072B2"), 2, "capacity: its line and its legend mark");
        assert_eq!(strokes("#E69F00"), 2, "reserved: its line and its legend mark");
        assert_eq!(strokes("#009E73"), 1, "used: no points, only its legend mark");
        assert!(svg.contains("capacity") && svg.contains("reserved") && svg.contains("used"));
    }

    #[test]
    fn the_axis_top_is_a_round_number_at_or_above_the_maximum() {
        assert_eq!(axis_top(0.0), 1.0);
        assert_eq!(axis_top(7.0), 8.0);
        assert_eq!(axis_top(120.0), 120.0);
        assert_eq!(axis_top(121.0), 150.0);
        assert_eq!(axis_top(1050.0), 1200.0);
        assert_eq!(axis_top(8001.0), 10000.0);
    }
}
