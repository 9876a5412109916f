//! Page geometry, the rows content is laid out in, and how rows fall onto
//! pages.
//!
//! Everything is measured in PDF points (1/72 inch) with y growing down the
//! page, as krilla draws. Layout is two passes: the document becomes a flow
//! of blocks of rows whose heights are known, then [`paginate`] cuts the
//! flow into pages. Page numbers ("Page 1 of 3") need the page count, so
//! nothing is drawn before both passes are done.

use crate::fonts::Style;

/// A4 portrait.
pub(crate) const PAGE_WIDTH_PT: f32 = 595.28;
pub(crate) const PAGE_HEIGHT_PT: f32 = 841.89;
pub(crate) const MARGIN_PT: f32 = 48.0;
pub(crate) const LEFT_PT: f32 = MARGIN_PT;
pub(crate) const RIGHT_PT: f32 = PAGE_WIDTH_PT - MARGIN_PT;
pub(crate) const BODY_TOP_PT: f32 = MARGIN_PT;
/// The body stops here; the footer sits below it.
pub(crate) const BODY_BOTTOM_PT: f32 = PAGE_HEIGHT_PT - 64.0;
pub(crate) const FOOTER_TOP_PT: f32 = PAGE_HEIGHT_PT - 44.0;

/// Columns of the table of lines: the description from the left margin,
/// quantity and amount right-aligned (numbers line up on their last digit).
pub(crate) const DESCRIPTION_WIDTH_PT: f32 = 250.0;
pub(crate) const QUANTITY_RIGHT_PT: f32 = 440.0;
pub(crate) const QUANTITY_WIDTH_PT: f32 = 136.0;
pub(crate) const AMOUNT_WIDTH_PT: f32 = 96.0;

/// A bound on the output: an invoice that needs more pages than this is a
/// billing defect (or an attack through free text), not something to mail.
pub(crate) const PAGES_MAX: usize = 1_000;

/// Line height as a multiple of the font size.
const LEADING: f32 = 1.3;
/// How far the baseline sits above the bottom of its line, in ems: room for
/// descenders.
const DESCENT_EM: f32 = 0.3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Align {
    Left,
    Right,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tone {
    Ink,
    Muted,
    Alert,
}

/// One line of text. `x_pt` is its left edge, or its right edge when it is
/// right-aligned.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Text {
    pub x_pt: f32,
    pub align: Align,
    pub text: String,
    pub size_pt: f32,
    pub style: Style,
    pub tone: Tone,
}

impl Text {
    pub(crate) fn line_height_pt(&self) -> f32 {
        self.size_pt * LEADING
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Ink {
    Text(Text),
    /// A horizontal rule `y_pt` below the row's top.
    Rule {
        from_x_pt: f32,
        to_x_pt: f32,
        y_pt: f32,
        weight_pt: f32,
        tone: Tone,
    },
}

/// A horizontal band of the page. Texts of different sizes in one row share
/// a baseline near its bottom, so a large title and a small label beside it
/// line up.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Row {
    pub height_pt: f32,
    pub inks: Vec<Ink>,
    /// Part of the table of lines: a page that starts with it repeats the
    /// table's column headings.
    pub in_table: bool,
    /// Only space: dropped where it would open a page.
    pub spacer: bool,
}

impl Row {
    /// A row tall enough for its tallest text.
    pub(crate) fn of_texts(texts: Vec<Text>, in_table: bool) -> Row {
        let height_pt = texts.iter().map(Text::line_height_pt).fold(0.0, f32::max);
        Row { height_pt, inks: texts.into_iter().map(Ink::Text).collect(), in_table, spacer: false }
    }

    pub(crate) fn space(height_pt: f32) -> Row {
        Row { height_pt, inks: Vec::new(), in_table: false, spacer: true }
    }

    /// A full-width rule in the middle of a band `height_pt` tall.
    pub(crate) fn rule(height_pt: f32, weight_pt: f32, tone: Tone, in_table: bool) -> Row {
        let rule = Ink::Rule { from_x_pt: LEFT_PT, to_x_pt: RIGHT_PT, y_pt: height_pt / 2.0, weight_pt, tone };
        Row { height_pt, inks: vec![rule], in_table, spacer: false }
    }
}

/// The baseline of `text` in a row that starts at `top_pt`.
pub(crate) fn baseline_pt(row: &Row, top_pt: f32, text: &Text) -> f32 {
    top_pt + row.height_pt - text.size_pt * DESCENT_EM
}

/// Rows that belong together (an invoice line with its details and tiers):
/// they move to the next page as a whole when they do not fit, unless they
/// would not fit on an empty page either.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Block {
    pub rows: Vec<Row>,
}

impl Block {
    pub(crate) fn height_pt(&self) -> f32 {
        self.rows.iter().map(|r| r.height_pt).sum()
    }
}

/// `blocks` cut into pages: `first_pt` of body height on the first page,
/// `next_pt` on each following one. Returns the rows of each page; there is
/// always one page at least.
pub(crate) fn paginate(blocks: &[Block], first_pt: f32, next_pt: f32) -> Vec<Vec<&Row>> {
    let mut pages = Pages { pages: vec![Vec::new()], used_pt: 0.0, capacity_pt: first_pt, next_pt };
    for block in blocks {
        let height_pt = block.height_pt();
        // Keep the block whole by starting it on a new page, when that helps.
        if pages.used_pt + height_pt > pages.capacity_pt && height_pt <= next_pt && !pages.current_is_empty() {
            pages.turn();
        }
        for row in &block.rows {
            pages.place(row);
        }
    }
    pages.pages
}

struct Pages<'a> {
    pages: Vec<Vec<&'a Row>>,
    used_pt: f32,
    capacity_pt: f32,
    next_pt: f32,
}

impl<'a> Pages<'a> {
    fn current_is_empty(&self) -> bool {
        self.pages.last().is_none_or(Vec::is_empty)
    }

    fn turn(&mut self) {
        self.pages.push(Vec::new());
        self.capacity_pt = self.next_pt;
        self.used_pt = 0.0;
    }

    fn place(&mut self, row: &'a Row) {
        if self.used_pt + row.height_pt > self.capacity_pt && !self.current_is_empty() {
            self.turn();
        }
        if row.spacer && self.current_is_empty() && self.pages.len() > 1 {
            return;
        }
        self.used_pt += row.height_pt;
        if let Some(page) = self.pages.last_mut() {
            page.push(row);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(heights: &[f32]) -> Block {
        Block {
            rows: heights
                .iter()
                .map(|&h| Row { height_pt: h, inks: Vec::new(), in_table: true, spacer: false })
                .collect(),
        }
    }

    fn heights(pages: &[Vec<&Row>]) -> Vec<Vec<f32>> {
        pages.iter().map(|p| p.iter().map(|r| r.height_pt).collect()).collect()
    }

    #[test]
    fn an_empty_flow_is_one_empty_page() {
        assert_eq!(paginate(&[], 100.0, 100.0).len(), 1);
    }

    #[test]
    fn blocks_stay_whole_when_they_fit_a_page() {
        let blocks = [rows(&[40.0]), rows(&[30.0, 30.0]), rows(&[10.0])];
        let pages = paginate(&blocks, 90.0, 80.0);
        assert_eq!(heights(&pages), [vec![40.0], vec![30.0, 30.0, 10.0]]);
    }

    #[test]
    fn blocks_taller_than_a_page_are_cut_between_rows() {
        let blocks = [rows(&[10.0]), rows(&[30.0, 30.0, 30.0, 30.0])];
        let pages = paginate(&blocks, 50.0, 70.0);
        assert_eq!(heights(&pages), [vec![10.0, 30.0], vec![30.0, 30.0], vec![30.0]]);
    }

    #[test]
    fn spacers_never_open_a_page() {
        let mut blocks = vec![rows(&[50.0])];
        blocks.push(Block { rows: vec![Row::space(20.0)] });
        blocks.push(rows(&[40.0]));
        let pages = paginate(&blocks, 60.0, 60.0);
        assert_eq!(heights(&pages), [vec![50.0], vec![40.0]]);
    }

    #[test]
    fn every_row_lands_on_exactly_one_page_within_capacity() {
        let blocks: Vec<Block> = (0..200).map(|i| rows(&vec![7.0 + (i % 5) as f32; 1 + i % 4])).collect();
        let pages = paginate(&blocks, 300.0, 250.0);
        let placed: usize = pages.iter().map(Vec::len).sum();
        let total: usize = blocks.iter().map(|b| b.rows.len()).sum();
        assert_eq!(placed, total);
        for (i, page) in pages.iter().enumerate() {
            let used: f32 = page.iter().map(|r| r.height_pt).sum();
            assert!(used <= if i == 0 { 300.0 } else { 250.0 }, "page {i} holds {used} pt");
        }
    }
}
