//! Figures as data ([`Figure`]) and one plotters renderer that writes each
//! figure as SVG, rasterised to PNG by resvg.
//!
//! Conventions every figure follows: axes named in words with units,
//! categorical values drawn as markers (never joined by lines), integer
//! ticks on integer axes (epochs), accuracies in percent on a 0–100 %
//! scale, legends outside the plot, a categorical palette (Tableau 10,
//! then marker shapes), and heatmaps with a colour bar stating their scale.
//!
//! Fonts: plotters measures text with DejaVu Sans (shipped in `assets/`,
//! registered once as `sans-serif`); resvg draws the SVG's text with the
//! same font, so the PNG shows what the SVG shows. (plotters' own bitmap
//! text drew each glyph on its own box, lifting full stops to mid-height
//! and splitting words.)

use anyhow::{Context, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Once, OnceLock};

static FONT: Once = Once::new();

/// The bundled font (DejaVu Sans).
const FONT_BYTES: &[u8] = include_bytes!("../../assets/DejaVuSans.ttf");

/// Registers the bundled DejaVu Sans as plotters' `sans-serif` (idempotent).
pub fn register_fonts() {
    FONT.call_once(|| {
        // The font bytes are compiled in, so this can only fail if the
        // asset is not a valid TrueType file — a build defect, not user input.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT_BYTES);
    });
}

/// Tableau 10: ten categorical colours that stay distinct (also in grey
/// print, mostly); beyond ten series the marker shape changes.
const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// Colour of series `i`.
pub fn series_color(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

/// Marker shape of series `i`: circles for the first ten, then triangles,
/// squares and diamonds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Marker {
    Circle,
    Triangle,
    Square,
    Diamond,
}

fn marker(i: usize) -> Marker {
    match (i / PALETTE.len()) % 4 {
        0 => Marker::Circle,
        1 => Marker::Triangle,
        2 => Marker::Square,
        _ => Marker::Diamond,
    }
}

/// The polygon (or circle) of a marker at pixel `(x, y)`, radius `r`.
fn marker_element<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    shape: Marker,
    (x, y): (i32, i32),
    r: i32,
    color: RGBColor,
) -> Result<()> {
    let style = color.filled();
    match shape {
        Marker::Circle => area.draw(&Circle::new((x, y), r, style)),
        Marker::Triangle => area.draw(&Polygon::new(
            vec![(x, y - r - 1), (x - r - 1, y + r), (x + r + 1, y + r)],
            style,
        )),
        Marker::Square => area.draw(&Rectangle::new([(x - r, y - r), (x + r, y + r)], style)),
        Marker::Diamond => area.draw(&Polygon::new(
            vec![
                (x, y - r - 1),
                (x + r + 1, y),
                (x, y + r + 1),
                (x - r - 1, y),
            ],
            style,
        )),
    }
    .map_err(err)
}

/// One line of a [`Figure::Lines`]: points `(x, mean, std)`.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    /// Legend entry.
    pub label: String,
    /// `(x, y, ±error)`.
    pub points: Vec<(f64, f64, f64)>,
}

/// How a heatmap maps values to colours.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ColourScale {
    /// From the smallest to the largest cell (stated on the colour bar).
    MinMax,
    /// A fixed range, e.g. `0..=1` for a fraction.
    Fixed(f64, f64),
}

/// A figure to draw.
#[derive(Clone, Debug, PartialEq)]
pub enum Figure {
    /// Series with markers and error bars: joined by lines along a numeric
    /// x axis, markers only along a categorical one.
    Lines {
        /// Title.
        title: String,
        /// x-axis label (words and unit).
        x_label: String,
        /// y-axis label (words and unit).
        y_label: String,
        /// Category names when x is an index into them.
        x_categories: Option<Vec<String>>,
        /// The series.
        series: Vec<Series>,
        /// Limits the y axis stays within (e.g. `0..100` for a percentage).
        y_limits: Option<(f64, f64)>,
    },
    /// Cells coloured by value, the value printed in each cell, a colour
    /// bar on the right.
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
        /// Cells are fractions, printed as percentages.
        percent: bool,
        /// Colour scale.
        scale: ColourScale,
        /// What the colour bar shows (e.g. `test accuracy`).
        value_label: String,
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
    /// Horizontal stacked bars, one per category (e.g. energy per sample by
    /// term, per configuration, beside a digital baseline).
    Bars {
        /// Title.
        title: String,
        /// Value-axis label (words and unit).
        value_label: String,
        /// One bar per category, top to bottom.
        categories: Vec<String>,
        /// Stacked segments: `(label, value per category)`; a missing or
        /// zero value draws nothing.
        segments: Vec<(String, Vec<f64>)>,
    },
}

const WIDTH: u32 = 820;
const PLOT_HEIGHT: u32 = 500;
const LEGEND_ROW: u32 = 19;

/// Legend entries of a figure (none for a single unnamed series).
fn legend_entries(fig: &Figure) -> Vec<String> {
    match fig {
        Figure::Lines { series, .. } => {
            if series.len() > 1 || series.iter().any(|s| !s.label.is_empty()) {
                series.iter().map(|s| s.label.clone()).collect()
            } else {
                Vec::new()
            }
        }
        Figure::Histogram { series, .. } if series.len() > 1 => {
            series.iter().map(|s| s.0.clone()).collect()
        }
        Figure::Bars { segments, .. } => segments.iter().map(|s| s.0.clone()).collect(),
        _ => Vec::new(),
    }
}

/// Legend entries per legend row: two columns when the labels are short.
fn legend_columns(entries: &[String]) -> usize {
    let longest = entries.iter().map(|e| e.chars().count()).max().unwrap_or(0);
    if entries.len() > 3 && longest <= 48 {
        2
    } else {
        1
    }
}

fn legend_height(entries: &[String]) -> u32 {
    if entries.is_empty() {
        return 0;
    }
    let rows = entries.len().div_ceil(legend_columns(entries));
    LEGEND_ROW * rows as u32 + 16
}

/// Pixel size of a figure: the plot, the legend below it.
fn size(fig: &Figure) -> (u32, u32) {
    let plot = match fig {
        Figure::Bars { categories, .. } => 110 + 34 * categories.len().max(1) as u32,
        _ => PLOT_HEIGHT,
    };
    (WIDTH, plot + legend_height(&legend_entries(fig)))
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

/// A tick label: integers without a decimal point, others with at most
/// four significant decimals.
pub fn tick(x: f64) -> String {
    // `-0` is `0`.
    let x = if x.abs() < 1e-12 { 0.0 } else { x };
    if (x - x.round()).abs() < 1e-9 {
        format!("{}", x.round() as i64)
    } else {
        let s = format!("{:.4}", x);
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// Draws the legend entries into `area` (below the plot), in one or two
/// columns, each with its series' colour and marker.
fn draw_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    entries: &[String],
    swatch: LegendSwatch,
) -> Result<()> {
    let columns = legend_columns(entries);
    let col_width = (WIDTH as i32 - 90) / columns as i32;
    for (i, label) in entries.iter().enumerate() {
        let (row, col) = (i / columns, i % columns);
        let x = 80 + col as i32 * col_width;
        let y = 12 + LEGEND_ROW as i32 * row as i32;
        let color = series_color(i);
        match swatch {
            LegendSwatch::Line => {
                area.draw(&PathElement::new(
                    vec![(x, y), (x + 22, y)],
                    color.stroke_width(2),
                ))
                .map_err(err)?;
                marker_element(area, marker(i), (x + 11, y), 4, color)?;
            }
            LegendSwatch::Marker => marker_element(area, marker(i), (x + 11, y), 4, color)?,
            LegendSwatch::Block => area
                .draw(&Rectangle::new(
                    [(x + 2, y - 6), (x + 20, y + 6)],
                    color.mix(0.8).filled(),
                ))
                .map_err(err)?,
        }
        area.draw(&Text::new(
            label.clone(),
            (x + 30, y),
            ("sans-serif", 13)
                .into_font()
                .color(&BLACK)
                .pos(Pos::new(HPos::Left, VPos::Center)),
        ))
        .map_err(err)?;
    }
    Ok(())
}

#[derive(Clone, Copy)]
enum LegendSwatch {
    Line,
    Marker,
    Block,
}

/// Splits `root` into the plot and the legend area below it.
fn split_legend<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    fig: &Figure,
) -> (DrawingArea<DB, Shift>, Option<DrawingArea<DB, Shift>>) {
    let entries = legend_entries(fig);
    if entries.is_empty() {
        return (root.clone(), None);
    }
    let h = root.dim_in_pixel().1 as i32;
    let (plot, legend) = root.split_vertically(h - legend_height(&entries) as i32);
    (plot, Some(legend))
}

fn draw<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, fig: &Figure) -> Result<()> {
    root.fill(&WHITE).map_err(err)?;
    let (plot, legend) = split_legend(root, fig);
    match fig {
        Figure::Lines {
            title,
            x_label,
            y_label,
            x_categories,
            series,
            y_limits,
        } => {
            let categorical = x_categories.is_some();
            // Along a categorical axis, the series sit side by side around
            // each category instead of on top of each other.
            let dodge = |i: usize| -> f64 {
                if categorical && series.len() > 1 {
                    let spread = 0.5_f64.min(0.08 * series.len() as f64);
                    -spread / 2.0 + spread * i as f64 / (series.len() - 1) as f64
                } else {
                    0.0
                }
            };
            let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
            for s in series {
                for &(x, y, e) in &s.points {
                    x0 = x0.min(x);
                    x1 = x1.max(x);
                    y0 = y0.min(y - e);
                    y1 = y1.max(y + e);
                }
            }
            let (x0, x1) = match x_categories {
                Some(c) => (-0.5, c.len().max(1) as f64 - 0.5),
                None => padded(x0, x1),
            };
            let (mut y0, mut y1) = padded(y0, y1);
            if let Some((lo, hi)) = y_limits {
                y0 = y0.max(*lo);
                y1 = y1.min(*hi);
                if y1 <= y0 {
                    (y0, y1) = (*lo, *hi);
                }
            }
            let integer_x = !categorical
                && series
                    .iter()
                    .flat_map(|s| s.points.iter())
                    .all(|p| (p.0 - p.0.round()).abs() < 1e-9);
            let mut chart = ChartBuilder::on(&plot)
                .caption(title, ("sans-serif", 20))
                .margin(14)
                .x_label_area_size(48)
                .y_label_area_size(72)
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
                // Integer axes (epochs, layers) have no 1.5th tick.
                None if integer_x && (x - x.round()).abs() > 1e-6 => String::new(),
                None => tick(*x),
            };
            let n_x_labels = match x_categories {
                Some(c) => c.len().max(1),
                None if integer_x => ((x1 - x0).floor() as usize + 1).clamp(2, 12),
                None => 10,
            };
            let mut mesh = chart.configure_mesh();
            mesh.x_desc(x_label.as_str())
                .y_desc(y_label.as_str())
                .x_labels(n_x_labels)
                .x_label_formatter(&fmt)
                .y_label_formatter(&|y: &f64| tick(*y))
                .label_style(("sans-serif", 13))
                .axis_desc_style(("sans-serif", 15))
                .light_line_style(RGBColor(238, 238, 238))
                .max_light_lines(1);
            if categorical || integer_x {
                mesh.disable_x_mesh();
            }
            mesh.draw().map_err(err)?;
            for (i, s) in series.iter().enumerate() {
                let color = series_color(i);
                let shift = dodge(i);
                let pts: Vec<(f64, f64, f64)> = s
                    .points
                    .iter()
                    .map(|&(x, y, e)| (x + shift, y, e))
                    .collect();
                if !categorical {
                    chart
                        .draw_series(LineSeries::new(
                            pts.iter().map(|p| (p.0, p.1)),
                            color.stroke_width(2),
                        ))
                        .map_err(err)?;
                }
                chart
                    .draw_series(pts.iter().filter(|p| p.2 > 0.0).map(|&(x, y, e)| {
                        ErrorBar::new_vertical(x, (y - e).max(y0), y, (y + e).min(y1), color, 8)
                    }))
                    .map_err(err)?;
                let shape = marker(i);
                let r = if categorical { 5 } else { 4 };
                // Markers in pixels on the root, where the shape is known.
                for &(x, y, _) in &pts {
                    let pixel = chart.plotting_area().map_coordinate(&(x, y));
                    marker_element(root, shape, pixel, r, color)?;
                }
            }
            if let Some(area) = legend {
                let swatch = if categorical {
                    LegendSwatch::Marker
                } else {
                    LegendSwatch::Line
                };
                draw_legend(&area, &legend_entries(fig), swatch)?;
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
            scale,
            value_label,
        } => {
            let nx = x_values.len().max(1) as i32;
            let ny = y_values.len().max(1) as i32;
            // The colour bar takes a strip on the right.
            let w = plot.dim_in_pixel().0 as i32;
            let (grid, bar) = plot.split_horizontally(w - 120);
            let mut chart = ChartBuilder::on(&grid)
                .caption(title, ("sans-serif", 20))
                .margin(14)
                .x_label_area_size(48)
                .y_label_area_size(90)
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
                .axis_desc_style(("sans-serif", 15))
                .draw()
                .map_err(err)?;
            let values: Vec<f64> = cells.iter().flatten().filter_map(|v| *v).collect();
            let (lo, hi) = match scale {
                ColourScale::Fixed(lo, hi) => (*lo, *hi),
                ColourScale::MinMax => (
                    values.iter().cloned().fold(f64::MAX, f64::min),
                    values.iter().cloned().fold(f64::MIN, f64::max),
                ),
            };
            let fmt_value = |v: f64| {
                if *percent {
                    format!("{:.1} %", v * 100.0)
                } else {
                    format!("{v:.3}")
                }
            };
            for (yi, row) in cells.iter().enumerate() {
                for (xi, v) in row.iter().enumerate() {
                    let (x, y) = (xi as i32, yi as i32);
                    let (fill, text) = match v {
                        Some(v) => {
                            let h = if hi > lo { (v - lo) / (hi - lo) } else { 0.5 };
                            (scale_color(h), fmt_value(*v))
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
            // Colour bar: the scale from lo (bottom) to hi (top), labelled.
            if !values.is_empty() {
                let (top, bottom) = (70, (bar.dim_in_pixel().1 as i32) - 80);
                let steps = 60;
                for k in 0..steps {
                    let y_a = bottom - (bottom - top) * k / steps;
                    let y_b = bottom - (bottom - top) * (k + 1) / steps;
                    bar.draw(&Rectangle::new(
                        [(14, y_b), (34, y_a)],
                        scale_color((k as f64 + 0.5) / steps as f64).filled(),
                    ))
                    .map_err(err)?;
                }
                bar.draw(&Rectangle::new([(14, top), (34, bottom)], BLACK))
                    .map_err(err)?;
                let label_style = ("sans-serif", 12)
                    .into_font()
                    .color(&BLACK)
                    .pos(Pos::new(HPos::Left, VPos::Center));
                bar.draw(&Text::new(fmt_value(hi), (40, top), label_style.clone()))
                    .map_err(err)?;
                bar.draw(&Text::new(fmt_value(lo), (40, bottom), label_style))
                    .map_err(err)?;
                let caption = match scale {
                    ColourScale::MinMax => "min – max",
                    ColourScale::Fixed(..) => "fixed scale",
                };
                let centred = ("sans-serif", 12)
                    .into_font()
                    .color(&BLACK)
                    .pos(Pos::new(HPos::Center, VPos::Center));
                bar.draw(&Text::new(
                    value_label.clone(),
                    (48, top - 36),
                    centred.clone(),
                ))
                .map_err(err)?;
                bar.draw(&Text::new(caption.to_string(), (48, top - 20), centred))
                    .map_err(err)?;
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
            let mut chart = ChartBuilder::on(&plot)
                .caption(title, ("sans-serif", 20))
                .margin(14)
                .x_label_area_size(48)
                .y_label_area_size(72)
                .build_cartesian_2d(x0..x1, 0.0..(y1.max(1e-9) * 1.08))
                .map_err(err)?;
            chart
                .configure_mesh()
                .x_desc(x_label.as_str())
                .y_desc("fraction of devices")
                .x_label_formatter(&|x: &f64| tick(*x))
                .y_label_formatter(&|y: &f64| tick(*y))
                .label_style(("sans-serif", 13))
                .axis_desc_style(("sans-serif", 15))
                .light_line_style(RGBColor(238, 238, 238))
                .max_light_lines(1)
                .draw()
                .map_err(err)?;
            for (i, (_, edges, counts)) in series.iter().enumerate() {
                let color = series_color(i);
                chart
                    .draw_series(counts.iter().enumerate().filter_map(|(b, &c)| {
                        let (l, r) = (*edges.get(b)?, *edges.get(b + 1)?);
                        Some(Rectangle::new([(l, 0.0), (r, c)], color.mix(0.45).filled()))
                    }))
                    .map_err(err)?;
            }
            if let Some(area) = legend {
                draw_legend(&area, &legend_entries(fig), LegendSwatch::Block)?;
            }
        }
        Figure::Bars {
            title,
            value_label,
            categories,
            segments,
        } => {
            let n = categories.len().max(1) as i32;
            let total = |c: usize| -> f64 {
                segments
                    .iter()
                    .filter_map(|s| s.1.get(c))
                    .filter(|v| v.is_finite())
                    .sum()
            };
            let max = (0..categories.len()).map(total).fold(0.0, f64::max);
            let longest = categories
                .iter()
                .map(|c| c.chars().count())
                .max()
                .unwrap_or(0);
            let mut chart = ChartBuilder::on(&plot)
                .caption(title, ("sans-serif", 20))
                .margin(14)
                .x_label_area_size(48)
                .y_label_area_size((7 * longest as u32 + 16).clamp(60, 360))
                .build_cartesian_2d(0.0..(max.max(1e-30) * 1.12), (0..n - 1).into_segmented())
                .map_err(err)?;
            let cats = categories.clone();
            let yf = move |v: &SegmentValue<i32>| match v {
                SegmentValue::CenterOf(i) => {
                    cats.get((n - 1 - *i) as usize).cloned().unwrap_or_default()
                }
                _ => String::new(),
            };
            chart
                .configure_mesh()
                .disable_y_mesh()
                .x_desc(value_label.as_str())
                .y_labels(n as usize)
                .y_label_formatter(&yf)
                .x_label_formatter(&|x: &f64| tick(*x))
                .label_style(("sans-serif", 13))
                .axis_desc_style(("sans-serif", 15))
                .light_line_style(RGBColor(238, 238, 238))
                .max_light_lines(1)
                .draw()
                .map_err(err)?;
            for c in 0..categories.len() {
                // Top to bottom in the order given.
                let row = n - 1 - c as i32;
                let mut start = 0.0;
                for (k, (_, values)) in segments.iter().enumerate() {
                    let v = values.get(c).copied().unwrap_or(0.0);
                    if !(v.is_finite() && v > 0.0) {
                        continue;
                    }
                    let mut bar = Rectangle::new(
                        [
                            (start, SegmentValue::Exact(row)),
                            (start + v, SegmentValue::Exact(row + 1)),
                        ],
                        series_color(k).mix(0.85).filled(),
                    );
                    // A gap between neighbouring bars.
                    bar.set_margin(5, 5, 0, 0);
                    chart.draw_series(std::iter::once(bar)).map_err(err)?;
                    start += v;
                }
            }
            if let Some(area) = legend {
                draw_legend(&area, &legend_entries(fig), LegendSwatch::Block)?;
            }
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

/// Draws `fig` into `dir/name.svg` and its rasterisation `dir/name.png`.
pub fn save(fig: &Figure, dir: &Path, name: &str) -> Result<SavedFigure> {
    save_drawing(dir, name, size(fig), |root| draw(root, fig))
}

/// Draws with `paint` on an SVG canvas of `size` pixels and writes
/// `dir/name.svg` and `dir/name.png` (the SVG rasterised by resvg with the
/// bundled font), both atomically. Every figure dyadsim writes goes
/// through here.
pub fn save_drawing(
    dir: &Path,
    name: &str,
    size: (u32, u32),
    paint: impl FnOnce(&DrawingArea<SVGBackend, Shift>) -> Result<()>,
) -> Result<SavedFigure> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let png = dir.join(format!("{name}.png"));
    let svg = dir.join(format!("{name}.svg"));
    let text = svg_string(size, paint).with_context(|| format!("drawing {}", svg.display()))?;
    let bytes = svg_to_png(&text).with_context(|| format!("rasterising {}", svg.display()))?;
    crate::experiment::run_dir::write_atomic(&svg, text.as_bytes())?;
    crate::experiment::run_dir::write_atomic(&png, &bytes)?;
    Ok(SavedFigure { png, svg })
}

/// Draws with `paint` on an SVG canvas of `size` pixels and returns the
/// SVG document (text measured with the bundled font).
pub fn svg_string(
    size: (u32, u32),
    paint: impl FnOnce(&DrawingArea<SVGBackend, Shift>) -> Result<()>,
) -> Result<String> {
    register_fonts();
    let mut text = String::new();
    {
        let root = SVGBackend::with_string(&mut text, size).into_drawing_area();
        paint(&root)?;
        root.present().map_err(err)?;
    }
    Ok(text)
}

/// The font database resvg draws text with: only the bundled DejaVu Sans,
/// standing in for every generic family.
fn font_database() -> Arc<resvg::usvg::fontdb::Database> {
    static DB: OnceLock<Arc<resvg::usvg::fontdb::Database>> = OnceLock::new();
    DB.get_or_init(|| {
        let mut db = resvg::usvg::fontdb::Database::new();
        db.load_font_data(FONT_BYTES.to_vec());
        db.set_sans_serif_family("DejaVu Sans");
        db.set_serif_family("DejaVu Sans");
        db.set_monospace_family("DejaVu Sans");
        Arc::new(db)
    })
    .clone()
}

/// Rasterises an SVG document to PNG bytes at its own pixel size, on white.
pub fn svg_to_png(svg: &str) -> Result<Vec<u8>> {
    let options = resvg::usvg::Options {
        fontdb: font_database(),
        font_family: "DejaVu Sans".into(),
        ..Default::default()
    };
    let tree = resvg::usvg::Tree::from_str(svg, &options).context("parsing the SVG")?;
    let size = tree.size().to_int_size();
    let mut pixmap = resvg::tiny_skia::Pixmap::new(size.width(), size.height())
        .context("the figure has no pixels")?;
    pixmap.fill(resvg::tiny_skia::Color::WHITE);
    resvg::render(
        &tree,
        resvg::tiny_skia::Transform::default(),
        &mut pixmap.as_mut(),
    );
    pixmap.encode_png().context("encoding the PNG")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(x_categories: Option<Vec<String>>, xs: &[f64]) -> Figure {
        Figure::Lines {
            title: "Test accuracy vs nudging asymmetry α".into(),
            x_label: "nudging asymmetry α".into(),
            y_label: "test accuracy (%)".into(),
            x_categories,
            series: (0..12)
                .map(|i| Series {
                    label: format!("rule = DP⊤, seed = {i}"),
                    points: xs.iter().map(|&x| (x, 80.0 + i as f64, 1.0)).collect(),
                })
                .collect(),
            y_limits: Some((0.0, 100.0)),
        }
    }

    /// Every `<text>` of an SVG document: its y attribute and its content.
    fn texts(svg: &str) -> Vec<(f64, String)> {
        svg.split("<text ")
            .skip(1)
            .filter_map(|chunk| {
                let y = chunk
                    .split("y=\"")
                    .nth(1)?
                    .split('"')
                    .next()?
                    .parse()
                    .ok()?;
                let body = chunk.split_once('>')?.1.split("</text>").next()?;
                Some((y, body.trim().to_string()))
            })
            .collect()
    }

    #[test]
    fn ticks_have_no_negative_zero_and_no_trailing_zeros() {
        assert_eq!(tick(-1e-15), "0");
        assert_eq!(tick(2.0), "2");
        assert_eq!(tick(0.25), "0.25");
        assert_eq!(tick(0.1 + 0.2), "0.3");
    }

    #[test]
    fn twelve_series_get_twelve_distinguishable_styles() {
        let styles: Vec<_> = (0..12)
            .map(|i| {
                let c = series_color(i);
                (c.0, c.1, c.2, marker(i))
            })
            .collect();
        for (i, a) in styles.iter().enumerate() {
            for b in &styles[i + 1..] {
                assert_ne!(a, b, "two series share colour and marker");
            }
        }
    }

    #[test]
    fn legends_are_drawn_below_the_plot_in_words() {
        let fig = lines(None, &[0.0, 0.5, 1.0]);
        let (_, height) = size(&fig);
        assert!(height > PLOT_HEIGHT, "the legend adds rows below the plot");
        let svg = svg_string(size(&fig), |root| draw(root, &fig)).unwrap();
        let texts = texts(&svg);
        let legend: Vec<_> = texts
            .iter()
            .filter(|(_, t)| t.contains("seed = "))
            .collect();
        assert_eq!(legend.len(), 12, "one legend entry per series");
        assert!(texts.iter().any(|(_, t)| t == "nudging asymmetry α"));
        // Every legend entry sits below the x-axis label, i.e. outside the plot.
        let x_label_y = texts
            .iter()
            .find(|(_, t)| t == "nudging asymmetry α")
            .map(|(y, _)| *y)
            .unwrap();
        for (y, t) in legend {
            assert!(
                *y > x_label_y,
                "legend entry '{t}' at y {y} is inside the plot"
            );
        }
    }

    #[test]
    fn categorical_series_are_markers_without_lines() {
        let categorical = lines(Some(vec!["DP".into(), "DP⊤".into()]), &[0.0, 1.0]);
        let numeric = lines(None, &[0.0, 1.0]);
        let svg_c = svg_string(size(&categorical), |r| draw(r, &categorical)).unwrap();
        let svg_n = svg_string(size(&numeric), |r| draw(r, &numeric)).unwrap();
        assert!(
            texts(&svg_c).iter().any(|(_, t)| t == "DP⊤"),
            "category names on the x axis"
        );
        assert!(
            svg_c.matches("<polyline").count() < svg_n.matches("<polyline").count(),
            "categorical x draws no connecting lines"
        );
    }

    #[test]
    fn stacked_bars_render_to_svg_and_png() {
        let fig = Figure::Bars {
            title: "Energy per training sample by term".into(),
            value_label: "energy per training sample (nJ)".into(),
            categories: vec!["α = 0".into(), "digital BP (baseline)".into()],
            segments: vec![
                ("crossbar reads".into(), vec![5.0, 0.0]),
                ("write pulses".into(), vec![70.0, 0.0]),
                ("digital MACs".into(), vec![0.0, 700.0]),
            ],
        };
        let svg = svg_string(size(&fig), |r| draw(r, &fig)).unwrap();
        for word in ["digital BP (baseline)", "write pulses", "crossbar reads"] {
            assert!(svg.contains(word), "lacks {word}");
        }
        let png = svg_to_png(&svg).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    }
}
