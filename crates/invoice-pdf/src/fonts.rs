//! The two faces invoices are set in, compiled into the binary so that
//! rendering reads no file. Characters map one to one onto glyphs (no
//! shaping, no kerning): invoices are short Latin-script text, and the same
//! advance widths serve both to wrap lines and to place glyphs, so what the
//! wrapper measured is exactly what the page shows.

use krilla::text::{Font, GlyphId, KrillaGlyph};
use skrifa::instance::{LocationRef, Size};
use skrifa::metrics::GlyphMetrics;
use skrifa::{FontRef, MetadataProvider};

use crate::RenderError;

static REGULAR: &[u8] = reservoir_fonts::SANS;
static BOLD: &[u8] = reservoir_fonts::SANS_BOLD;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Style {
    Regular,
    Bold,
}

/// One face: the font krilla embeds, and the tables it is measured with.
pub(crate) struct Face {
    font: Font,
    charmap: skrifa::charmap::Charmap<'static>,
    /// Advances in ems: a 1-pixel-per-em size divides by units per em once
    /// here, which is the unit krilla's glyph advances are given in.
    metrics: GlyphMetrics<'static>,
}

impl Face {
    fn load(bytes: &'static [u8], name: &'static str) -> Result<Face, RenderError> {
        let font_ref = FontRef::new(bytes).map_err(|_| RenderError::Font(name))?;
        let font = Font::new(bytes.into(), 0).ok_or(RenderError::Font(name))?;
        Ok(Face {
            font,
            charmap: font_ref.charmap(),
            metrics: font_ref.glyph_metrics(Size::new(1.0), LocationRef::default()),
        })
    }

    pub(crate) fn font(&self) -> Font {
        self.font.clone()
    }

    /// The glyph of `ch`, or the font's `.notdef` box when it has none: the
    /// character still reaches the PDF's text layer, so a search or a copy
    /// finds it even where the page shows a box.
    fn glyph(&self, ch: char) -> (GlyphId, f32) {
        let id = self.charmap.map(ch).unwrap_or(skrifa::GlyphId::NOTDEF);
        let advance_em = self.metrics.advance_width(id).unwrap_or(0.0);
        (GlyphId::new(id.to_u32()), advance_em)
    }

    /// Width of `text` set at `size_pt`, in points.
    pub(crate) fn width_pt(&self, text: &str, size_pt: f32) -> f32 {
        text.chars().map(|ch| self.glyph(ch).1).sum::<f32>() * size_pt
    }

    /// The glyphs of `text`, each tied to the bytes it stands for so that
    /// text extraction gives back `text`.
    pub(crate) fn glyphs(&self, text: &str) -> Vec<KrillaGlyph> {
        text.char_indices()
            .map(|(at, ch)| {
                let (id, advance_em) = self.glyph(ch);
                KrillaGlyph::new(id, advance_em, 0.0, 0.0, 0.0, at..at + ch.len_utf8(), None)
            })
            .collect()
    }
}

pub(crate) struct Fonts {
    regular: Face,
    bold: Face,
}

impl Fonts {
    pub(crate) fn load() -> Result<Fonts, RenderError> {
        Ok(Fonts { regular: Face::load(REGULAR, "DejaVuSans.ttf")?, bold: Face::load(BOLD, "DejaVuSans-Bold.ttf")? })
    }

    pub(crate) fn face(&self, style: Style) -> &Face {
        match style {
            Style::Regular => &self.regular,
            Style::Bold => &self.bold,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widths_add_up_and_bold_is_wider() {
        let fonts = Fonts::load().unwrap();
        let regular = fonts.face(Style::Regular);
        let one = regular.width_pt("Invoice", 10.0);
        assert!(one > 20.0 && one < 60.0, "\"Invoice\" at 10 pt is {one} pt wide");
        let two = regular.width_pt("InvoiceInvoice", 10.0);
        assert!((two - 2.0 * one).abs() < 1e-3);
        assert!(fonts.face(Style::Bold).width_pt("Invoice", 10.0) > one);
        assert_eq!(regular.width_pt("", 10.0), 0.0);
    }

    #[test]
    fn glyphs_cover_every_byte_of_the_text() {
        let fonts = Fonts::load().unwrap();
        let text = "Total: 1 234,5 € — ok";
        let glyphs = fonts.face(Style::Regular).glyphs(text);
        assert_eq!(glyphs.len(), text.chars().count());
        assert_eq!(glyphs.last().unwrap().text_range.end, text.len());
        // DejaVu has every one of these: no `.notdef` box.
        assert!(glyphs.iter().all(|g| g.glyph_id.to_u32() != 0));
    }
}
