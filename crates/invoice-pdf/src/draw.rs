//! Rows onto krilla surfaces. Nothing is decided here: positions, sizes and
//! page breaks come from the layout; this only turns them into PDF content.

use krilla::color::{luma, rgb};
use krilla::geom::{PathBuilder, Point};
use krilla::paint::{Fill, Paint, Stroke};
use krilla::surface::Surface;

use crate::fonts::Fonts;
use crate::layout::{Align, Ink, Row, Text, Tone, baseline_pt};

fn paint(tone: Tone) -> Paint {
    match tone {
        Tone::Ink => luma::Color::black().into(),
        Tone::Muted => luma::Color::new(105).into(),
        // Dark red: warnings (draft, void) stand out in print and on screen.
        Tone::Alert => rgb::Color::new(176, 0, 0).into(),
    }
}

/// Draws `rows` one under the other from `top_pt`; returns where they end.
pub(crate) fn rows<'r>(
    surface: &mut Surface<'_>,
    fonts: &Fonts,
    rows: impl IntoIterator<Item = &'r Row>,
    top_pt: f32,
) -> f32 {
    let mut y_pt = top_pt;
    for row in rows {
        self::row(surface, fonts, row, y_pt);
        y_pt += row.height_pt;
    }
    y_pt
}

pub(crate) fn row(surface: &mut Surface<'_>, fonts: &Fonts, row: &Row, top_pt: f32) {
    for ink in &row.inks {
        match ink {
            Ink::Text(text) => self::text(surface, fonts, text, baseline_pt(row, top_pt, text)),
            Ink::Rule { from_x_pt, to_x_pt, y_pt, weight_pt, tone } => {
                let mut path = PathBuilder::new();
                path.move_to(*from_x_pt, top_pt + y_pt);
                path.line_to(*to_x_pt, top_pt + y_pt);
                // A degenerate path (zero length) has nothing to draw.
                if let Some(path) = path.finish() {
                    surface.set_fill(None);
                    surface.set_stroke(Some(Stroke { paint: paint(*tone), width: *weight_pt, ..Stroke::default() }));
                    surface.draw_path(&path);
                    surface.set_stroke(None);
                }
            }
        }
    }
}

fn text(surface: &mut Surface<'_>, fonts: &Fonts, text: &Text, baseline_pt: f32) {
    if text.text.is_empty() {
        return;
    }
    let face = fonts.face(text.style);
    let x_pt = match text.align {
        Align::Left => text.x_pt,
        Align::Right => text.x_pt - face.width_pt(&text.text, text.size_pt),
    };
    surface.set_stroke(None);
    surface.set_fill(Some(Fill { paint: paint(text.tone), ..Fill::default() }));
    surface.draw_glyphs(
        Point::from_xy(x_pt, baseline_pt),
        &face.glyphs(&text.text),
        face.font(),
        &text.text,
        text.size_pt,
        false,
    );
}
