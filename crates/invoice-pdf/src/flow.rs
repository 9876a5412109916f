//! The invoice as a flow of rows, top to bottom: the first page's header,
//! the table of lines (each with its details and tier breakdown), the
//! totals and the credit notes; plus what every following page repeats and
//! the footer with page numbers.

use reservoir_billing::{CreditNoteSummary, InvoiceDocument, Line, LineKind};
use reservoir_domain::Currency;
use rust_decimal::Decimal;

use crate::fonts::{Fonts, Style};
use crate::format;
use crate::layout::{
    AMOUNT_WIDTH_PT, Align, Block, DESCRIPTION_WIDTH_PT, LEFT_PT, QUANTITY_RIGHT_PT, QUANTITY_WIDTH_PT, RIGHT_PT, Row,
    Text, Tone,
};
use crate::wrap::wrap;

/// Where a text goes across the page.
#[derive(Clone, Copy)]
struct Column {
    x_pt: f32,
    width_pt: f32,
    align: Align,
}

/// The left and right halves of the page, with a gutter between.
const HALF_WIDTH_PT: f32 = 240.0;
const LEFT_HALF: Column = Column { x_pt: LEFT_PT, width_pt: HALF_WIDTH_PT, align: Align::Left };
const RIGHT_HALF: Column = Column { x_pt: RIGHT_PT, width_pt: HALF_WIDTH_PT, align: Align::Right };
const DESCRIPTION: Column = Column { x_pt: LEFT_PT, width_pt: DESCRIPTION_WIDTH_PT, align: Align::Left };
/// Tier breakdowns sit indented under their line's description.
const TIER_INDENT_PT: f32 = 12.0;
const TIERS: Column =
    Column { x_pt: LEFT_PT + TIER_INDENT_PT, width_pt: DESCRIPTION_WIDTH_PT - TIER_INDENT_PT, align: Align::Left };
/// A line's details run under its description and quantity both: they are
/// long and small, and nothing sits beside them.
const DETAILS: Column = Column { x_pt: LEFT_PT, width_pt: QUANTITY_RIGHT_PT - LEFT_PT, align: Align::Left };
const QUANTITY: Column = Column { x_pt: QUANTITY_RIGHT_PT, width_pt: QUANTITY_WIDTH_PT, align: Align::Right };
const AMOUNT: Column = Column { x_pt: RIGHT_PT, width_pt: AMOUNT_WIDTH_PT, align: Align::Right };

/// How a text looks.
#[derive(Clone, Copy)]
struct Look {
    size_pt: f32,
    style: Style,
    tone: Tone,
}

const TITLE: Look = Look { size_pt: 20.0, style: Style::Bold, tone: Tone::Ink };
const ISSUER: Look = Look { size_pt: 14.0, style: Style::Bold, tone: Tone::Ink };
const HEADING: Look = Look { size_pt: 12.0, style: Style::Bold, tone: Tone::Ink };
const STATUS: Look = Look { size_pt: 12.0, style: Style::Bold, tone: Tone::Alert };
const STRONG: Look = Look { size_pt: 10.0, style: Style::Bold, tone: Tone::Ink };
const BODY: Look = Look { size_pt: 10.0, style: Style::Regular, tone: Tone::Ink };
const DETAIL: Look = Look { size_pt: 9.0, style: Style::Regular, tone: Tone::Ink };
const LABEL: Look = Look { size_pt: 8.0, style: Style::Regular, tone: Tone::Muted };
const TIER: Look = Look { size_pt: 8.0, style: Style::Regular, tone: Tone::Ink };
const NOTE: Look = Look { size_pt: 8.0, style: Style::Regular, tone: Tone::Muted };
const COLUMN_HEADING: Look = Look { size_pt: 9.0, style: Style::Bold, tone: Tone::Ink };

/// What a page shows besides its share of the flow.
pub(crate) struct Flow {
    pub blocks: Vec<Block>,
    /// Top of every page after the first: who, which invoice, and the
    /// table's column headings.
    pub continuation: Vec<Row>,
    pub table_heading: Vec<Row>,
}

/// How the invoice names itself: its number, or what it is instead.
pub(crate) struct Title {
    /// `RSV-2026-000123`, or the draft warning.
    pub name: String,
    pub is_draft: bool,
    pub is_void: bool,
}

pub(crate) struct Builder<'a> {
    fonts: &'a Fonts,
    doc: &'a InvoiceDocument,
    title: &'a Title,
}

pub(crate) const DRAFT_WARNING: &str = "DRAFT — not a valid invoice";

impl<'a> Builder<'a> {
    pub(crate) fn new(fonts: &'a Fonts, doc: &'a InvoiceDocument, title: &'a Title) -> Builder<'a> {
        Builder { fonts, doc, title }
    }

    fn currency(&self) -> Currency {
        self.doc.currency
    }

    /// `text` wrapped to `column`, one `Text` per line.
    fn lines(&self, text: &str, column: Column, look: Look) -> Vec<Text> {
        let face = self.fonts.face(look.style);
        wrap(text, column.width_pt, |s| face.width_pt(s, look.size_pt))
            .into_iter()
            .map(|line| Text {
                x_pt: column.x_pt,
                align: column.align,
                text: line,
                size_pt: look.size_pt,
                style: look.style,
                tone: look.tone,
            })
            .collect()
    }

    pub(crate) fn flow(&self) -> Flow {
        let mut blocks = vec![self.header(), Block { rows: vec![Row::space(14.0)] }, self.billed_to()];
        blocks.push(Block { rows: vec![Row::space(16.0)] });
        let mut lines = self.doc.lines.iter().map(|line| self.line(line));
        // The column headings travel with the first line: never alone at
        // the bottom of a page.
        let mut first = Block { rows: self.table_heading() };
        if let Some(line) = lines.next() {
            first.rows.extend(line.rows);
        }
        blocks.push(first);
        blocks.extend(lines);
        blocks.push(self.totals());
        if !self.doc.credit_notes.is_empty() {
            blocks.push(Block { rows: vec![Row::space(16.0)] });
            // The heading, like the table's, keeps to its first entry.
            let mut notes = self.doc.credit_notes.iter().map(|note| self.credit_note(note));
            let mut first = Block { rows: columns(vec![self.lines("Credit notes", LEFT_HALF, HEADING)], false) };
            if let Some(note) = notes.next() {
                first.rows.extend(note.rows);
            }
            blocks.push(first);
            blocks.extend(notes);
            blocks.push(self.after_credit_notes());
        }
        Flow { blocks, continuation: self.continuation(), table_heading: self.table_heading() }
    }

    /// Issuer top left; "Invoice" and its number (or the draft or void
    /// warning) top right.
    fn header(&self) -> Block {
        let issuer = &self.doc.issuer;
        let mut left = self.lines(&issuer.name, LEFT_HALF, ISSUER);
        for address_line in &issuer.address {
            left.extend(self.lines(address_line, LEFT_HALF, DETAIL));
        }
        left.extend(self.lines(&issuer.email, LEFT_HALF, DETAIL));

        let mut right = self.lines("Invoice", RIGHT_HALF, TITLE);
        let name_look = if self.title.is_draft { STATUS } else { HEADING };
        right.extend(self.lines(&self.title.name, RIGHT_HALF, name_look));
        if self.title.is_void {
            right.extend(self.lines("VOID", RIGHT_HALF, STATUS));
        }
        Block { rows: columns(vec![left, right], false) }
    }

    /// The tenant on the left; period, dates and currency on the right.
    fn billed_to(&self) -> Block {
        let doc = self.doc;
        let mut left = self.lines("Billed to", LEFT_HALF, LABEL);
        left.extend(self.lines(&doc.tenant, LEFT_HALF, STRONG));

        let issued = match doc.issued_at {
            Some(at) => format::date(at),
            None => "not yet (draft)".to_owned(),
        };
        let mut right = self.lines(&format!("Period: {}", doc.period), RIGHT_HALF, BODY);
        right.extend(self.lines(&format!("Issued: {issued}"), RIGHT_HALF, BODY));
        right.extend(self.lines(&format!("Currency: {}", doc.currency), RIGHT_HALF, BODY));
        right.extend(self.lines(&format!("Invoice id: {}", doc.id), RIGHT_HALF, NOTE));
        Block { rows: columns(vec![left, right], false) }
    }

    fn table_heading(&self) -> Vec<Row> {
        let mut rows = columns(
            vec![
                self.lines("Description", DESCRIPTION, COLUMN_HEADING),
                self.lines("Quantity", QUANTITY, COLUMN_HEADING),
                self.lines(&format!("Amount ({})", self.currency()), AMOUNT, COLUMN_HEADING),
            ],
            // Not table content: a page that starts with the headings needs
            // no second copy of them.
            false,
        );
        rows.push(Row::rule(6.0, 0.8, Tone::Ink, false));
        rows
    }

    /// One invoice line: description, quantity and amount side by side; its
    /// kind, model, catalog and window below; then a row per tier.
    fn line(&self, line: &Line) -> Block {
        let currency = self.currency();
        let mut rows = columns(
            vec![
                self.lines(&line.description, DESCRIPTION, BODY),
                self.lines(&format::quantity_with_unit(line.quantity, line.unit), QUANTITY, BODY),
                self.lines(&format::money(line.amount, currency), AMOUNT, BODY),
            ],
            true,
        );
        rows.extend(columns(vec![self.lines(&details(line), DETAILS, NOTE)], true));
        for tier in &line.tiers {
            rows.extend(columns(vec![self.lines(&format::tier(tier, currency), TIERS, TIER)], true));
        }
        rows.push(Row::rule(8.0, 0.3, Tone::Muted, true));
        Block { rows }
    }

    /// Subtotal, total and the credit balance, right-aligned under the
    /// amounts.
    fn totals(&self) -> Block {
        let doc = self.doc;
        let currency = self.currency();
        let mut right =
            self.lines(&format!("Subtotal: {} {currency}", format::money(doc.subtotal, currency)), AMOUNT_SIDE, BODY);
        right.extend(self.lines(
            &format!("Total: {} {currency}", format::money(doc.total, currency)),
            AMOUNT_SIDE,
            HEADING,
        ));
        if !doc.credit_balance_after.is_zero() {
            let balance = format::money(doc.credit_balance_after, currency);
            right.extend(self.lines(&format!("Credit balance carried: {balance} {currency}"), AMOUNT_SIDE, DETAIL));
        }
        let mut rows = vec![Row::space(4.0)];
        rows.extend(columns(vec![right], false));
        let note = if self.title.is_draft {
            Some("This draft may still change and asks for no payment.")
        } else if self.title.is_void {
            Some("This invoice is void: nothing is due on it.")
        } else {
            None
        };
        if let Some(note) = note {
            rows.push(Row::space(6.0));
            rows.extend(columns(vec![self.lines(note, LEFT_HALF, NOTE)], false));
        }
        Block { rows }
    }

    fn credit_note(&self, note: &CreditNoteSummary) -> Block {
        let currency = self.currency();
        let what = format!("{} — {}", format::date(note.issued_at), note.reason);
        // A credit note takes money off the invoice: shown as a deduction.
        let amount = format::money(-note.amount, currency);
        let mut rows = columns(vec![self.lines(&what, DETAILS, BODY), self.lines(&amount, AMOUNT, BODY)], false);
        rows.extend(columns(vec![self.lines(&format!("Credit note {}", note.id), DESCRIPTION, NOTE)], false));
        rows.push(Row::space(4.0));
        Block { rows }
    }

    fn after_credit_notes(&self) -> Block {
        let currency = self.currency();
        let credited: Decimal = self.doc.credit_notes.iter().map(|n| n.amount).sum();
        let left = format::money(self.doc.total - credited, currency);
        let text = format!("Total after credit notes: {left} {currency}");
        Block { rows: columns(vec![self.lines(&text, AMOUNT_SIDE, STRONG)], false) }
    }

    fn continuation(&self) -> Vec<Row> {
        let left = self.lines(&self.doc.issuer.name, LEFT_HALF, STRONG);
        let look = if self.title.is_draft { STATUS } else { STRONG };
        let right = self.lines(&format!("{} (continued)", self.title.name), RIGHT_HALF, look);
        let mut rows = columns(vec![left, right], false);
        rows.push(Row::rule(8.0, 0.5, Tone::Muted, false));
        rows.push(Row::space(8.0));
        rows
    }

    /// The bottom of page `page` (from 1) of `pages`.
    pub(crate) fn footer(&self, page: usize, pages: usize) -> Row {
        // One line each: the footer has room for no more.
        let left = self.lines(&format!("{} · {}", self.title.name, self.doc.period), LEFT_HALF, LABEL);
        let right = self.lines(&format!("Page {page} of {pages}"), RIGHT_HALF, LABEL);
        Row::of_texts(left.into_iter().take(1).chain(right.into_iter().take(1)).collect(), false)
    }
}

/// Totals are wide ("Credit balance carried: ..."): they take the width of
/// the quantity and amount columns together.
const AMOUNT_SIDE: Column = Column { x_pt: RIGHT_PT, width_pt: HALF_WIDTH_PT, align: Align::Right };

/// Side-by-side columns of lines as rows: row `i` holds line `i` of every
/// column that has one.
fn columns(columns: Vec<Vec<Text>>, in_table: bool) -> Vec<Row> {
    let depth = columns.iter().map(Vec::len).max().unwrap_or(0);
    (0..depth).map(|i| Row::of_texts(columns.iter().filter_map(|c| c.get(i).cloned()).collect(), in_table)).collect()
}

/// What a line is and where it comes from, for a reader checking it.
fn details(line: &Line) -> String {
    let mut parts = vec![format::kind(line.kind).to_owned()];
    if let Some(model) = &line.model {
        parts.push(format!("model {model}"));
    }
    if let Some(version) = line.catalog_version {
        parts.push(format!("catalog v{version}"));
    }
    let window = format!("{} to {} UTC", format::instant(line.usage_from), format::instant(line.usage_to));
    parts.push(match line.kind {
        LineKind::Reservation => format!("term {window}"),
        LineKind::Burst | LineKind::Spot | LineKind::LateUsage => format!("usage {window}"),
        LineKind::SlaCredit | LineKind::CreditApplied | LineKind::CreditCarried => format!("for {window}"),
    });
    if let Some(contract) = line.contract_id {
        parts.push(format!("contract {contract}"));
    }
    if let Some(source) = &line.source {
        parts.push(format!("ref {source}"));
    }
    parts.join(" · ")
}
