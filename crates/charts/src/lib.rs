//! `charts` draws the reports' PNG charts: [`line_chart`] (loss curves), [`bar_chart`] (horizontal bars with
//! optional whiskers: sensitivity, bits per matrix) and [`point_chart`] (labelled points: size against accuracy).
//! It renders with `plotters`' bitmap backend into memory and text with DejaVu Sans embedded in the binary (the
//! `dejavu` crate, through `ab_glyph`), so a chart needs no system font and looks the same everywhere;
//! [`png`] encodes the pixels.
//!
//! Architecture invariant: `charts` depends on no other crate of the workspace.
#![warn(missing_docs)]

pub mod png;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::{register_font, FontStyle};

/// What can go wrong drawing a chart.
#[derive(Debug, thiserror::Error)]
pub enum ChartError {
    /// Nothing to draw.
    #[error("{chart}: no data to draw")]
    Empty {
        /// The chart's title.
        chart: String,
    },
    /// A value that is not finite.
    #[error("{chart}: {what} is not finite ({value})")]
    NotFinite {
        /// The chart's title.
        chart: String,
        /// Which value.
        what: String,
        /// The value.
        value: f64,
    },
    /// The drawing backend failed.
    #[error("{chart}: drawing failed: {message}")]
    Draw {
        /// The chart's title.
        chart: String,
        /// The backend's message.
        message: String,
    },
}

/// A result with [`ChartError`].
pub type Result<T> = std::result::Result<T, ChartError>;

/// The font family every chart uses (registered once).
const FONT: &str = "sans-serif";

fn register() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // The embedded bytes are a valid TTF, so this only fails if the font were corrupt.
        let _ = register_font(FONT, FontStyle::Normal, dejavu::sans::regular());
    });
}

/// Colours of successive series.
const PALETTE: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

/// The colour of bars in [`bar_chart`].
pub const BAR: [u8; 3] = [70, 130, 180];

/// One line of a [`line_chart`].
#[derive(Clone, Debug)]
pub struct Series {
    /// Its legend entry.
    pub name: String,
    /// `(x, y)` in drawing order.
    pub points: Vec<(f64, f64)>,
}

/// One bar of a [`bar_chart`].
#[derive(Clone, Debug)]
pub struct Bar {
    /// Its label, left of the axis.
    pub label: String,
    /// Its length (negative values go left of zero).
    pub value: f64,
    /// A whisker from `.0` to `.1`, if any (e.g. mean ± std).
    pub whisker: Option<(f64, f64)>,
    /// Text written right of the bar.
    pub note: String,
}

/// One point of a [`point_chart`].
#[derive(Clone, Debug)]
pub struct Point {
    /// Its label, written beside it.
    pub label: String,
    /// Horizontal position.
    pub x: f64,
    /// Vertical position.
    pub y: f64,
}

fn check(chart: &str, what: impl Fn() -> String, value: f64) -> Result<()> {
    if value.is_finite() {
        Ok(())
    } else {
        Err(ChartError::NotFinite {
            chart: chart.into(),
            what: what(),
            value,
        })
    }
}

/// A range that contains `lo..hi` with a margin, never empty.
fn padded(lo: f64, hi: f64) -> std::ops::Range<f64> {
    let span = (hi - lo).abs().max(hi.abs() * 1e-3).max(1e-12);
    (lo - 0.05 * span)..(hi + 0.05 * span)
}

/// Draws into an RGB buffer of `width × height` with `draw`, then encodes it as PNG.
fn render(
    title: &str,
    width: u32,
    height: u32,
    draw: impl FnOnce(&DrawingArea<BitMapBackend<'_>, Shift>) -> std::result::Result<(), String>,
) -> Result<Vec<u8>> {
    register();
    let mut rgb = vec![255u8; width as usize * height as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (width, height)).into_drawing_area();
        draw(&root).map_err(|message| ChartError::Draw {
            chart: title.into(),
            message,
        })?;
        root.present().map_err(|e| ChartError::Draw {
            chart: title.into(),
            message: e.to_string(),
        })?;
    }
    let image = png::Canvas::from_rgb(width as usize, height as usize, rgb).ok_or_else(|| {
        ChartError::Draw {
            chart: title.into(),
            message: "the backend wrote a buffer of the wrong size".into(),
        }
    })?;
    Ok(image.to_png())
}

fn text(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// The chart of [`line_chart`] and [`point_chart`]: white, captioned, on `xs × ys` with a light grid and both
/// axes described.
type XyChart<'a, 'b> = ChartContext<
    'a,
    BitMapBackend<'b>,
    Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
>;

fn xy_chart<'a, 'b>(
    root: &'a DrawingArea<BitMapBackend<'b>, Shift>,
    title: &str,
    margin: u32,
    (xs, ys): (std::ops::Range<f64>, std::ops::Range<f64>),
    (x_desc, y_desc): (&str, &str),
) -> std::result::Result<XyChart<'a, 'b>, String> {
    root.fill(&WHITE).map_err(text)?;
    let mut chart = ChartBuilder::on(root)
        .caption(title, (FONT, 20))
        .margin(margin)
        .x_label_area_size(40)
        .y_label_area_size(64)
        .build_cartesian_2d(xs, ys)
        .map_err(text)?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .label_style((FONT, 13))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()
        .map_err(text)?;
    Ok(chart)
}

/// Lines on shared axes with a legend, e.g. a training loss per step for each stage or each loss term.
pub fn line_chart(title: &str, x_desc: &str, y_desc: &str, series: &[Series]) -> Result<Vec<u8>> {
    let all: Vec<(f64, f64)> = series
        .iter()
        .flat_map(|s| s.points.iter().copied())
        .collect();
    if all.is_empty() {
        return Err(ChartError::Empty {
            chart: title.into(),
        });
    }
    for s in series {
        for (x, y) in &s.points {
            check(title, || format!("a point of `{}`", s.name), *x)?;
            check(title, || format!("a point of `{}`", s.name), *y)?;
        }
    }
    let fold = |f: fn(f64, f64) -> f64, init: f64, pick: fn(&(f64, f64)) -> f64| {
        all.iter().map(pick).fold(init, f)
    };
    let xs = padded(
        fold(f64::min, f64::INFINITY, |p| p.0),
        fold(f64::max, f64::NEG_INFINITY, |p| p.0),
    );
    let ys = padded(
        fold(f64::min, f64::INFINITY, |p| p.1),
        fold(f64::max, f64::NEG_INFINITY, |p| p.1),
    );
    render(title, 800, 480, |root| {
        let mut chart = xy_chart(root, title, 12, (xs, ys), (x_desc, y_desc))?;
        for (i, s) in series.iter().enumerate() {
            let colour = PALETTE[i % PALETTE.len()];
            chart
                .draw_series(LineSeries::new(
                    s.points.iter().copied(),
                    colour.stroke_width(2),
                ))
                .map_err(text)?
                .label(s.name.as_str())
                .legend(move |(x, y)| {
                    PathElement::new([(x, y), (x + 18, y)], colour.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .label_font((FONT, 13))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(text)
    })
}

/// Horizontal bars in the given order (top first), each with an optional whisker and a note at its right.
pub fn bar_chart(title: &str, value_desc: &str, bars: &[Bar]) -> Result<Vec<u8>> {
    if bars.is_empty() {
        return Err(ChartError::Empty {
            chart: title.into(),
        });
    }
    let mut lo = 0.0f64;
    let mut hi = 0.0f64;
    for b in bars {
        check(title, || format!("the value of `{}`", b.label), b.value)?;
        lo = lo.min(b.value);
        hi = hi.max(b.value);
        if let Some((a, z)) = b.whisker {
            check(title, || format!("the whisker of `{}`", b.label), a)?;
            check(title, || format!("the whisker of `{}`", b.label), z)?;
            lo = lo.min(a).min(z);
            hi = hi.max(a).max(z);
        }
    }
    let n = bars.len();
    let height = (90 + 30 * n).min(4000) as u32;
    // Pixels for the longest of the bars' texts (8 per character and a margin); `empty` characters without bars.
    let text_width = |text: fn(&Bar) -> &str, empty: usize| {
        bars.iter()
            .map(|b| text(b).chars().count())
            .max()
            .unwrap_or(empty) as u32
            * 8
            + 16
    };
    let label_width = text_width(|b| &b.label, 4);
    let note_width = text_width(|b| &b.note, 0);
    let xs = padded(lo, hi);
    let width = 560 + label_width + note_width;
    render(title, width, height, |root| {
        root.fill(&WHITE).map_err(text)?;
        let mut chart = ChartBuilder::on(root)
            .caption(title, (FONT, 18))
            .margin(10)
            .margin_right(note_width)
            .x_label_area_size(36)
            .y_label_area_size(label_width)
            .build_cartesian_2d(xs.clone(), 0.0..n as f64)
            .map_err(text)?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(0)
            .x_desc(value_desc)
            .label_style((FONT, 13))
            .draw()
            .map_err(text)?;
        let bar_colour = RGBColor(BAR[0], BAR[1], BAR[2]);
        // Bar i (top first) fills row n − 1 − i, with a gap above and below.
        let row = |i: usize| (n - 1 - i) as f64;
        chart
            .draw_series(bars.iter().enumerate().map(|(i, b)| {
                Rectangle::new(
                    [(0.0, row(i) + 0.15), (b.value, row(i) + 0.85)],
                    bar_colour.filled(),
                )
            }))
            .map_err(text)?;
        chart
            .draw_series(bars.iter().enumerate().filter_map(|(i, b)| {
                let (a, z) = b.whisker?;
                let y = row(i) + 0.5;
                Some(PathElement::new([(a, y), (z, y)], BLACK.stroke_width(2)))
            }))
            .map_err(text)?;
        // Labels left of the plot and notes right of it, level with their bars, in pixels of the whole image.
        let label_style =
            TextStyle::from((FONT, 13).into_font()).pos(Pos::new(HPos::Right, VPos::Center));
        let note_style =
            TextStyle::from((FONT, 13).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
        for (i, b) in bars.iter().enumerate() {
            let (left, y) = chart.backend_coord(&(xs.start, row(i) + 0.5));
            let (right, _) = chart.backend_coord(&(xs.end, row(i) + 0.5));
            root.draw(&Text::new(
                b.label.clone(),
                (left - 8, y),
                label_style.clone(),
            ))
            .map_err(text)?;
            root.draw(&Text::new(
                b.note.clone(),
                (right + 8, y),
                note_style.clone(),
            ))
            .map_err(text)?;
        }
        Ok(())
    })
}

/// Labelled points on two axes, e.g. each stage's size against its accuracy.
pub fn point_chart(title: &str, x_desc: &str, y_desc: &str, points: &[Point]) -> Result<Vec<u8>> {
    if points.is_empty() {
        return Err(ChartError::Empty {
            chart: title.into(),
        });
    }
    for p in points {
        check(title, || format!("x of `{}`", p.label), p.x)?;
        check(title, || format!("y of `{}`", p.label), p.y)?;
    }
    let range = |f: fn(&Point) -> f64| {
        let lo = points.iter().map(f).fold(f64::INFINITY, f64::min);
        let hi = points.iter().map(f).fold(f64::NEG_INFINITY, f64::max);
        let span = (hi - lo).max(hi.abs() * 0.02).max(1e-9);
        (lo - 0.1 * span)..(hi + 0.35 * span)
    };
    let (xs, ys) = (range(|p| p.x), range(|p| p.y));
    render(title, 800, 520, |root| {
        let mut chart = xy_chart(root, title, 14, (xs, ys), (x_desc, y_desc))?;
        let colour = PALETTE[0];
        chart
            .draw_series(points.iter().map(|p| {
                EmptyElement::at((p.x, p.y))
                    + Circle::new((0, 0), 6, colour.filled())
                    + Text::new(p.label.clone(), (10, -6), (FONT, 13))
            }))
            .map_err(text)?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use png::decode::decode;

    fn ink(image: &png::Canvas, x0: usize, x1: usize, y0: usize, y1: usize) -> usize {
        (y0..y1)
            .flat_map(|y| (x0..x1).map(move |x| (x, y)))
            .filter(|(x, y)| {
                image
                    .pixel(*x, *y)
                    .is_some_and(|p| p.iter().all(|c| *c < 100))
            })
            .count()
    }

    /// Bars are as long as their values (25 against 50: half as many bar-coloured pixels per row), and the
    /// title and labels are real text (dark pixels where they are written).
    #[test]
    fn bar_lengths_follow_the_values_and_text_is_drawn() {
        let bars = vec![
            Bar {
                label: "layer.0".into(),
                value: 50.0,
                whisker: Some((40.0, 60.0)),
                note: "50 ± 10".into(),
            },
            Bar {
                label: "layer.1".into(),
                value: 25.0,
                whisker: None,
                note: "25".into(),
            },
        ];
        let image = decode(&bar_chart("Top eigenvalue per block", "eigenvalue", &bars).unwrap());
        let lengths: Vec<usize> = (0..image.height())
            .map(|y| {
                (0..image.width())
                    .filter(|x| image.pixel(*x, y) == Some(BAR))
                    .count()
            })
            .filter(|c| *c > 0)
            .collect();
        // Each bar's full length is its longest row (a whisker hides part of some rows).
        let long = *lengths.iter().max().unwrap() as f64;
        let short = lengths
            .iter()
            .map(|c| *c as f64)
            .filter(|c| *c < 0.75 * long)
            .fold(0.0, f64::max);
        assert!(long > 200.0, "the longest bar row has {long} pixels");
        assert!(
            (short / long - 0.5).abs() < 0.03,
            "bar rows of {short} and {long} pixels"
        );
        assert!(ink(&image, 0, image.width(), 0, 36) > 100, "no title text");
    }

    #[test]
    fn lines_and_points_draw_their_colours_and_refuse_bad_input() {
        let series = vec![Series {
            name: "loss".into(),
            points: (0..50)
                .map(|i| (i as f64, 1.0 / (1.0 + i as f64)))
                .collect(),
        }];
        let image = decode(&line_chart("Loss", "step", "loss", &series).unwrap());
        let [r, g, b] = [PALETTE[0].0, PALETTE[0].1, PALETTE[0].2];
        let line = (0..image.height())
            .flat_map(|y| (0..image.width()).map(move |x| (x, y)))
            .filter(|(x, y)| image.pixel(*x, *y) == Some([r, g, b]))
            .count();
        assert!(line > 500, "{line} line pixels");
        let points = vec![
            Point {
                label: "teacher".into(),
                x: 91.6,
                y: 0.83,
            },
            Point {
                label: "int4".into(),
                x: 5.6,
                y: 0.81,
            },
        ];
        assert!(point_chart("Size and accuracy", "MB", "accuracy", &points).is_ok());
        let err = line_chart("Loss", "step", "loss", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("no data"), "{err}");
        let bad = vec![Series {
            name: "loss".into(),
            points: vec![(0.0, f64::NAN)],
        }];
        let err = line_chart("Loss", "step", "loss", &bad)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("not finite") && err.contains("`loss`"),
            "{err}"
        );
    }
}
