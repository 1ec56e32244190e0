//! Figures as data ([`Figure`]) and one plotters renderer that writes each
//! figure as PNG and SVG.
//!
//! Fonts: plotters' `ab_glyph` backend has no system fonts, so DejaVu Sans
//! (shipped in `assets/`) is registered once as `sans-serif`.

use anyhow::{Context, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::path::{Path, PathBuf};
use std::sync::Once;

static FONT: Once = Once::new();

/// Registers the bundled DejaVu Sans as `sans-serif` (idempotent).
pub fn register_fonts() {
    FONT.call_once(|| {
        // The font bytes are compiled in, so this can only fail if the
        // asset is not a valid TrueType file — a build defect, not user input.
        let _ = plotters::style::register_font(
            "sans-serif",
            FontStyle::Normal,
            include_bytes!("../../assets/DejaVuSans.ttf"),
        );
    });
}

/// One line of a [`Figure::Lines`]: points `(x, mean, std)`.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    /// Legend entry.
    pub label: String,
    /// `(x, y, ±error)`.
    pub points: Vec<(f64, f64, f64)>,
}

/// A figure to draw.
#[derive(Clone, Debug, PartialEq)]
pub enum Figure {
    /// Lines with markers and error bars.
    Lines {
        /// Title.
        title: String,
        /// x-axis label.
        x_label: String,
        /// y-axis label.
        y_label: String,
        /// Category names when x is an index into them.
        x_categories: Option<Vec<String>>,
        /// The lines.
        series: Vec<Series>,
    },
    /// Cells coloured by value, the value printed in each cell.
    Heatmap {
        /// Title.
        title: String,
        /// x-axis label.
        x_label: String,
        /// y-axis label.
        y_label: String,
        /// Column labels.
        x_values: Vec<String>,
        /// Row labels.
        y_values: Vec<String>,
        /// `cells[y][x]` (`None` = no data).
        cells: Vec<Vec<Option<f64>>>,
        /// How to print a cell value.
        percent: bool,
    },
    /// Histograms from bin edges and counts, overlaid.
    Histogram {
        /// Title.
        title: String,
        /// x-axis label.
        x_label: String,
        /// `(label, edges (n+1), counts (n))`.
        series: Vec<(String, Vec<f64>, Vec<f64>)>,
    },
}

const WIDTH: u32 = 800;
const HEIGHT: u32 = 520;
/// Up to this many series the legend sits inside the plot.
const LEGEND_INSIDE_MAX: usize = 4;

fn legend_height(series: usize) -> u32 {
    18 * series as u32 + 14
}

/// Pixel size of a figure: taller when its legend goes below the plot.
fn size(fig: &Figure) -> (u32, u32) {
    match fig {
        Figure::Lines { series, .. } if series.len() > LEGEND_INSIDE_MAX => {
            (WIDTH, HEIGHT + legend_height(series.len()))
        }
        _ => (WIDTH, HEIGHT),
    }
}

fn err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow::anyhow!("plotting failed: {e:?}")
}

/// A perceptually ordered colour scale (viridis anchors), `h ∈ [0, 1]`.
fn scale_color(h: f64) -> RGBColor {
    const ANCHORS: [(u8, u8, u8); 5] = [
        (68, 1, 84),
        (59, 82, 139),
        (33, 145, 140),
        (94, 201, 98),
        (253, 231, 37),
    ];
    let h = if h.is_finite() {
        h.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let pos = h * (ANCHORS.len() - 1) as f64;
    let i = (pos.floor() as usize).min(ANCHORS.len() - 2);
    let f = pos - i as f64;
    let mix = |a: u8, b: u8| (a as f64 + (b as f64 - a as f64) * f).round() as u8;
    let (a, b) = (ANCHORS[i], ANCHORS[i + 1]);
    RGBColor(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

fn padded(lo: f64, hi: f64) -> (f64, f64) {
    if !(lo.is_finite() && hi.is_finite()) {
        return (0.0, 1.0);
    }
    if (hi - lo).abs() < 1e-12 {
        let d = if lo.abs() > 1e-12 {
            lo.abs() * 0.1
        } else {
            0.5
        };
        return (lo - d, hi + d);
    }
    let d = (hi - lo) * 0.08;
    (lo - d, hi + d)
}

fn draw<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, fig: &Figure) -> Result<()> {
    root.fill(&WHITE).map_err(err)?;
    match fig {
        Figure::Lines {
            title,
            x_label,
            y_label,
            x_categories,
            series,
        } => {
            let pts = series.iter().flat_map(|s| s.points.iter());
            let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
            for &(x, y, e) in pts {
                x0 = x0.min(x);
                x1 = x1.max(x);
                y0 = y0.min(y - e);
                y1 = y1.max(y + e);
            }
            let (x0, x1) = padded(x0, x1);
            let (y0, y1) = padded(y0, y1);
            // Many series: the legend goes below the plot instead of over it.
            let legend_below = series.len() > LEGEND_INSIDE_MAX;
            let (plot, legend) = if legend_below {
                let h = root.dim_in_pixel().1 as i32;
                let (a, b) = root.split_vertically(h - legend_height(series.len()) as i32);
                (a, Some(b))
            } else {
                (root.clone(), None)
            };
            let mut chart = ChartBuilder::on(&plot)
                .caption(title, ("sans-serif", 20))
                .margin(12)
                .x_label_area_size(45)
                .y_label_area_size(70)
                .build_cartesian_2d(x0..x1, y0..y1)
                .map_err(err)?;
            let cats = x_categories.clone();
            let fmt = move |x: &f64| match &cats {
                Some(c) => {
                    let i = x.round();
                    if (x - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < c.len() {
                        c[i as usize].clone()
                    } else {
                        String::new()
                    }
                }
                None => format!("{}", (x * 1e4).round() / 1e4),
            };
            chart
                .configure_mesh()
                .x_desc(x_label.as_str())
                .y_desc(y_label.as_str())
                .x_label_formatter(&fmt)
                .label_style(("sans-serif", 13))
                .draw()
                .map_err(err)?;
            for (i, s) in series.iter().enumerate() {
                let color = Palette99::pick(i).to_rgba();
                let line: Vec<(f64, f64)> = s.points.iter().map(|p| (p.0, p.1)).collect();
                chart
                    .draw_series(LineSeries::new(line, color.stroke_width(2)))
                    .map_err(err)?
                    .label(s.label.clone())
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                    });
                chart
                    .draw_series(s.points.iter().filter(|p| p.2 > 0.0).map(|&(x, y, e)| {
                        ErrorBar::new_vertical(x, y - e, y, y + e, color.filled(), 8)
                    }))
                    .map_err(err)?;
                chart
                    .draw_series(
                        s.points
                            .iter()
                            .map(|&(x, y, _)| Circle::new((x, y), 3, color.filled())),
                    )
                    .map_err(err)?;
            }
            if let Some(area) = legend {
                for (i, s) in series.iter().enumerate() {
                    let color = Palette99::pick(i).to_rgba();
                    let y = 10 + 18 * i as i32;
                    area.draw(&PathElement::new(
                        vec![(80, y), (100, y)],
                        color.stroke_width(2),
                    ))
                    .map_err(err)?;
                    area.draw(&Text::new(
                        s.label.clone(),
                        (108, y - 7),
                        ("sans-serif", 13).into_font(),
                    ))
                    .map_err(err)?;
                }
            } else if series.len() > 1 || series.iter().any(|s| !s.label.is_empty()) {
                chart
                    .configure_series_labels()
                    .label_font(("sans-serif", 13))
                    .background_style(WHITE.mix(0.85))
                    .border_style(BLACK)
                    .position(SeriesLabelPosition::LowerRight)
                    .draw()
                    .map_err(err)?;
            }
        }
        Figure::Heatmap {
            title,
            x_label,
            y_label,
            x_values,
            y_values,
            cells,
            percent,
        } => {
            let nx = x_values.len().max(1) as i32;
            let ny = y_values.len().max(1) as i32;
            let mut chart = ChartBuilder::on(root)
                .caption(title, ("sans-serif", 20))
                .margin(12)
                .x_label_area_size(45)
                .y_label_area_size(80)
                .build_cartesian_2d((0..nx - 1).into_segmented(), (0..ny - 1).into_segmented())
                .map_err(err)?;
            let xl = x_values.clone();
            let yl = y_values.clone();
            let xf = move |v: &SegmentValue<i32>| match v {
                SegmentValue::CenterOf(i) => xl.get(*i as usize).cloned().unwrap_or_default(),
                _ => String::new(),
            };
            let yf = move |v: &SegmentValue<i32>| match v {
                SegmentValue::CenterOf(i) => yl.get(*i as usize).cloned().unwrap_or_default(),
                _ => String::new(),
            };
            chart
                .configure_mesh()
                .disable_mesh()
                .x_desc(x_label.as_str())
                .y_desc(y_label.as_str())
                .x_labels(nx as usize)
                .y_labels(ny as usize)
                .x_label_formatter(&xf)
                .y_label_formatter(&yf)
                .label_style(("sans-serif", 13))
                .draw()
                .map_err(err)?;
            let values: Vec<f64> = cells.iter().flatten().filter_map(|v| *v).collect();
            let lo = values.iter().cloned().fold(f64::MAX, f64::min);
            let hi = values.iter().cloned().fold(f64::MIN, f64::max);
            for (yi, row) in cells.iter().enumerate() {
                for (xi, v) in row.iter().enumerate() {
                    let (x, y) = (xi as i32, yi as i32);
                    let (fill, text) = match v {
                        Some(v) => {
                            let h = if hi > lo { (v - lo) / (hi - lo) } else { 0.5 };
                            let t = if *percent {
                                format!("{:.1}%", v * 100.0)
                            } else {
                                format!("{v:.3}")
                            };
                            (scale_color(h), t)
                        }
                        None => (RGBColor(220, 220, 220), "n/a".to_string()),
                    };
                    chart
                        .draw_series(std::iter::once(Rectangle::new(
                            [
                                (SegmentValue::Exact(x), SegmentValue::Exact(y)),
                                (SegmentValue::Exact(x + 1), SegmentValue::Exact(y + 1)),
                            ],
                            fill.filled(),
                        )))
                        .map_err(err)?;
                    let light = fill.0 as u32 + fill.1 as u32 + fill.2 as u32 > 380;
                    let style = ("sans-serif", 15)
                        .into_font()
                        .color(if light { &BLACK } else { &WHITE })
                        .pos(Pos::new(HPos::Center, VPos::Center));
                    chart
                        .draw_series(std::iter::once(Text::new(
                            text,
                            (SegmentValue::CenterOf(x), SegmentValue::CenterOf(y)),
                            style,
                        )))
                        .map_err(err)?;
                }
            }
        }
        Figure::Histogram {
            title,
            x_label,
            series,
        } => {
            let (mut x0, mut x1, mut y1) = (f64::MAX, f64::MIN, 0.0f64);
            for (_, edges, counts) in series {
                for e in edges {
                    x0 = x0.min(*e);
                    x1 = x1.max(*e);
                }
                for c in counts {
                    y1 = y1.max(*c);
                }
            }
            let (x0, x1) = padded(x0, x1);
            let mut chart = ChartBuilder::on(root)
                .caption(title, ("sans-serif", 20))
                .margin(12)
                .x_label_area_size(45)
                .y_label_area_size(70)
                .build_cartesian_2d(x0..x1, 0.0..(y1.max(1e-9) * 1.08))
                .map_err(err)?;
            chart
                .configure_mesh()
                .x_desc(x_label.as_str())
                .y_desc("fraction of devices")
                .label_style(("sans-serif", 13))
                .draw()
                .map_err(err)?;
            for (i, (label, edges, counts)) in series.iter().enumerate() {
                let color = Palette99::pick(i).to_rgba();
                chart
                    .draw_series(counts.iter().enumerate().filter_map(|(b, &c)| {
                        let (l, r) = (*edges.get(b)?, *edges.get(b + 1)?);
                        Some(Rectangle::new([(l, 0.0), (r, c)], color.mix(0.45).filled()))
                    }))
                    .map_err(err)?
                    .label(label.clone())
                    .legend(move |(x, y)| {
                        Rectangle::new([(x, y - 5), (x + 15, y + 5)], color.filled())
                    });
            }
            chart
                .configure_series_labels()
                .label_font(("sans-serif", 13))
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .draw()
                .map_err(err)?;
        }
    }
    root.present().map_err(err)?;
    Ok(())
}

/// Paths of a saved figure.
#[derive(Clone, Debug, PartialEq)]
pub struct SavedFigure {
    /// PNG file.
    pub png: PathBuf,
    /// SVG file.
    pub svg: PathBuf,
}

/// Draws `fig` into `dir/name.png` and `dir/name.svg`.
pub fn save(fig: &Figure, dir: &Path, name: &str) -> Result<SavedFigure> {
    register_fonts();
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let png = dir.join(format!("{name}.png"));
    let svg = dir.join(format!("{name}.svg"));
    {
        let root = BitMapBackend::new(&png, size(fig)).into_drawing_area();
        draw(&root, fig).with_context(|| format!("drawing {}", png.display()))?;
    }
    {
        let root = SVGBackend::new(&svg, size(fig)).into_drawing_area();
        draw(&root, fig).with_context(|| format!("drawing {}", svg.display()))?;
    }
    Ok(SavedFigure { png, svg })
}
