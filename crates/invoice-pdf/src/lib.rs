//! Pure rendering of Reservoir invoices to PDF, for people to read: A4
//! portrait pages with the issuer, the tenant billed, the period, a table
//! of lines (each usage line with its tier breakdown), the totals, the
//! credit balance carried and any credit notes. Long invoices run over
//! several pages, each after the first opening with a short header (and
//! the table's column headings when it continues the table), all numbered
//! "Page i of n".
//!
//! [`render`] reads no file and no clock: the DejaVu Sans faces it sets
//! text in are compiled in (from `reservoir-fonts`), and the same document
//! gives the same bytes every time.
//!
//! # Money
//!
//! Amounts are printed from their `Decimal`s and never rounded here: each
//! line's amount was rounded to the currency's minor unit by the billing
//! crate, and the total is their sum, so the page shows exactly what was
//! stored and what the CSV and JSON exports show. Only layout coordinates
//! are floating point.

#![cfg_attr(test, allow(clippy::unwrap_used))]

mod draw;
mod flow;
mod fonts;
mod format;
mod layout;
mod wrap;

#[cfg(test)]
mod tests;

use chrono::{Datelike, Timelike};
use krilla::Document;
use krilla::metadata::{DateTime, Metadata};
use krilla::page::PageSettings;
use reservoir_billing::InvoiceDocument;

use crate::flow::{Builder, DRAFT_WARNING, Title};
use crate::fonts::Fonts;
use crate::layout::{BODY_BOTTOM_PT, BODY_TOP_PT, FOOTER_TOP_PT, PAGE_HEIGHT_PT, PAGE_WIDTH_PT, PAGES_MAX, Row};

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("invoice status {0:?} is none of draft, finalized and void")]
    UnknownStatus(String),
    /// Only drafts go without a number; printing a finalized or void
    /// invoice without one would hand out a document nobody can cite.
    #[error("a {status} invoice must have a number")]
    MissingNumber { status: String },
    #[error("the font {0} compiled into the renderer could not be read")]
    Font(&'static str),
    #[error("the invoice needs {pages} pages, more than the {max} an invoice may have")]
    TooLong { pages: usize, max: usize },
    #[error("writing the PDF failed: {0}")]
    Pdf(String),
}

/// The invoice as the bytes of a PDF file.
pub fn render(doc: &InvoiceDocument) -> Result<Vec<u8>, RenderError> {
    let title = title(doc)?;
    let fonts = Fonts::load()?;
    let builder = Builder::new(&fonts, doc, &title);
    let flow = builder.flow();

    let body_pt = BODY_BOTTOM_PT - BODY_TOP_PT;
    // Following pages always keep room for the column headings, whether or
    // not they start inside the table: simpler, and costs a line at most.
    let next_body_pt = body_pt - height_pt(&flow.continuation) - height_pt(&flow.table_heading);
    let pages = layout::paginate(&flow.blocks, body_pt, next_body_pt);
    if pages.len() > PAGES_MAX {
        return Err(RenderError::TooLong { pages: pages.len(), max: PAGES_MAX });
    }

    let settings = PageSettings::from_wh(PAGE_WIDTH_PT, PAGE_HEIGHT_PT)
        .ok_or_else(|| RenderError::Pdf("invalid page size".to_owned()))?;
    let mut document = Document::new();
    document.set_metadata(metadata(doc, &title));
    for (index, rows) in pages.iter().enumerate() {
        let mut page = document.start_page_with(settings.clone());
        let mut surface = page.surface();
        let mut top_pt = BODY_TOP_PT;
        if index > 0 {
            top_pt = draw::rows(&mut surface, &fonts, &flow.continuation, top_pt);
            if rows.first().is_some_and(|row| row.in_table) {
                top_pt = draw::rows(&mut surface, &fonts, &flow.table_heading, top_pt);
            }
        }
        draw::rows(&mut surface, &fonts, rows.iter().copied(), top_pt);
        draw::row(&mut surface, &fonts, &builder.footer(index + 1, pages.len()), FOOTER_TOP_PT);
        surface.finish();
        page.finish();
    }
    document.finish().map_err(|e| RenderError::Pdf(e.to_string()))
}

fn title(doc: &InvoiceDocument) -> Result<Title, RenderError> {
    match doc.status.as_str() {
        // A draft's number, if it had one, is not yet an invoice's number.
        "draft" => Ok(Title { name: DRAFT_WARNING.to_owned(), is_draft: true, is_void: false }),
        status @ ("finalized" | "void") => {
            let number = doc.number.clone().ok_or_else(|| RenderError::MissingNumber { status: status.to_owned() })?;
            Ok(Title { name: number, is_draft: false, is_void: status == "void" })
        }
        other => Err(RenderError::UnknownStatus(other.to_owned())),
    }
}

fn height_pt(rows: &[Row]) -> f32 {
    rows.iter().map(|r| r.height_pt).sum()
}

/// Title and dates for PDF viewers' document properties. The creation date
/// is when the invoice was issued, not when it was rendered, so that the
/// same invoice renders to the same bytes.
fn metadata(doc: &InvoiceDocument, title: &Title) -> Metadata {
    let mut metadata = Metadata::new()
        .title(format!("Invoice {} — {} — {}", title.name, doc.tenant, doc.period))
        .creator(doc.issuer.name.clone());
    if let Some(at) = doc.issued_at
        && let Ok(year) = u16::try_from(at.year())
    {
        // Month, day, hour, minute and second all fit in a byte.
        let date = DateTime::new(year)
            .month(at.month() as u8)
            .day(at.day() as u8)
            .hour(at.hour() as u8)
            .minute(at.minute() as u8)
            .second(at.second() as u8)
            .utc_offset_hour(0)
            .utc_offset_minute(0);
        metadata = metadata.creation_date(date);
    }
    metadata
}
