//! Whole invoices rendered and read back with poppler's `pdftotext`, the
//! way a person's viewer would read them: if the text layer is wrong, the
//! page is wrong.

use std::io::Write;
use std::process::Command;

use chrono::{TimeZone, Utc};
use reservoir_billing::{CreditNoteSummary, InvoiceDocument, Issuer, Line, LineKind, Unit};
use reservoir_domain::Currency;
use reservoir_pricing::TierLine;
use rust_decimal::Decimal;
use rust_decimal_macros::dec;
use uuid::Uuid;

use crate::{RenderError, render};

const TENANT: &str = "Acme Research Laboratories GmbH";

fn line(kind: LineKind, description: &str, quantity: Decimal, unit: Unit, amount: Decimal) -> Line {
    Line {
        kind,
        description: description.to_owned(),
        contract_id: Some(Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0001)),
        model: Some("llama-3.1-8b-instruct".to_owned()),
        catalog_version: Some(3),
        quantity,
        unit,
        tiers: Vec::new(),
        usage_from: Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap(),
        usage_to: Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap(),
        source: None,
        amount_exact: amount,
        amount,
    }
}

fn tier(tier_index: usize, up_to: Option<Decimal>, quantity: Decimal, unit_price: Decimal) -> TierLine {
    TierLine { tier_index, up_to, quantity, unit_price, flat_fee: Decimal::ZERO, amount: quantity * unit_price }
}

/// A finalized November invoice: a reservation, graduated burst usage and
/// an SLA credit, 205.00 USD in all, with one credit note.
fn invoice() -> InvoiceDocument {
    let reservation = line(
        LineKind::Reservation,
        "Reserved capacity: llama-3.1-8b-instruct, 2,000 weighted tokens/s, standard SLA, monthly term",
        dec!(2592000),
        Unit::Second,
        dec!(180.00),
    );
    let mut burst = line(
        LineKind::Burst,
        "Burst usage above the reservation",
        dec!(200.000000),
        Unit::MillionWeightedTokens,
        dec!(35.00),
    );
    burst.tiers = vec![tier(0, Some(dec!(100)), dec!(100), dec!(0.20)), tier(1, None, dec!(100), dec!(0.15))];
    let mut credit = line(
        LineKind::SlaCredit,
        "SLA credit: availability 99.71% below the 99.9% target",
        dec!(10.00),
        Unit::Money,
        dec!(-10.00),
    );
    credit.source = Some("sla_credit:42".to_owned());
    InvoiceDocument {
        issuer: Issuer {
            name: "Reservoir Inference Ltd".to_owned(),
            address: vec!["1 Capacity Street".to_owned(), "London EC1A 1AA".to_owned()],
            email: "billing@reservoir.example".to_owned(),
        },
        id: Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0123),
        tenant: TENANT.to_owned(),
        number: Some("RSV-2026-000123".to_owned()),
        status: "finalized".to_owned(),
        period: "2026-11".parse().unwrap(),
        issued_at: Some(Utc.with_ymd_and_hms(2026, 12, 1, 6, 0, 0).unwrap()),
        currency: Currency::USD,
        lines: vec![reservation, burst, credit],
        subtotal: dec!(205.00),
        total: dec!(205.00),
        credit_balance_after: Decimal::ZERO,
        credit_notes: vec![CreditNoteSummary {
            id: Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0777),
            issued_at: Utc.with_ymd_and_hms(2026, 12, 9, 10, 30, 0).unwrap(),
            reason: "Goodwill for the maintenance overrun".to_owned(),
            amount: dec!(5.00),
        }],
    }
}

/// The text of `pdf` as `pdftotext -layout` reads it; pages are separated
/// by form feeds.
fn pdf_text(pdf: &[u8]) -> String {
    let mut file = tempfile::Builder::new().suffix(".pdf").tempfile().unwrap();
    file.write_all(pdf).unwrap();
    file.flush().unwrap();
    let output = match Command::new("pdftotext").arg("-layout").arg(file.path()).arg("-").output() {
        Ok(output) => output,
        Err(e) => panic!(
            "these tests read the rendered PDF back with `pdftotext`, which could not be run ({e}); \
             install poppler-utils (`apt-get install -y poppler-utils`)"
        ),
    };
    assert!(output.status.success(), "pdftotext failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

fn pages(text: &str) -> Vec<&str> {
    text.split('\u{c}').filter(|page| !page.trim().is_empty()).collect()
}

#[test]
fn renders_a_pdf_file() {
    let pdf = render(&invoice()).unwrap();
    assert!(pdf.starts_with(b"%PDF-"), "starts with {:?}", String::from_utf8_lossy(&pdf[..pdf.len().min(16)]));
    assert!(pdf.len() < 200_000, "{} bytes: the fonts should be subset", pdf.len());
}

#[test]
fn the_text_a_reader_sees() {
    let text = pdf_text(&render(&invoice()).unwrap());
    for expected in [
        "Reservoir Inference Ltd",
        "billing@reservoir.example",
        "Invoice",
        "RSV-2026-000123",
        "Billed to",
        TENANT,
        "Period: 2026-11",
        "Issued: 2026-12-01",
        "Currency: USD",
        "Amount (USD)",
        "2592000 seconds",
        "180.00",
        "200 M weighted tokens",
        "tier 1: 100 x 0.20 = 20.00",
        "tier 2: 100 x 0.15 = 15.00",
        "-10.00",
        "SLA credit",
        "Subtotal: 205.00 USD",
        "Total: 205.00 USD",
        "Credit notes",
        "Goodwill for the maintenance overrun",
        "-5.00",
        "Total after credit notes: 200.00 USD",
        "Page 1 of 1",
    ] {
        assert!(text.contains(expected), "{expected:?} is missing from:\n{text}");
    }
    assert!(!text.contains("DRAFT"), "a finalized invoice says DRAFT:\n{text}");
    assert!(!text.contains("Credit balance carried"), "a zero balance is not worth a line:\n{text}");
    assert_eq!(pages(&text).len(), 1);
}

#[test]
fn long_descriptions_wrap_inside_their_column() {
    let mut doc = invoice();
    let words: Vec<String> = (0..60).map(|i| format!("word{i}")).collect();
    doc.lines[0].description = words.join(" ");
    let text = pdf_text(&render(&doc).unwrap());
    // Every word is there, and the description took several lines.
    for word in &words {
        assert!(text.contains(word.as_str()), "{word} is missing:\n{text}");
    }
    let holding = text.lines().filter(|l| l.contains("word")).count();
    assert!(holding >= 3, "60 words on {holding} lines:\n{text}");
    // No line of the description runs into the amount column.
    for l in text.lines().filter(|l| l.contains("word")) {
        assert!(!l.contains("180.00") || l.find("180.00") > l.rfind("word"), "{l}");
    }
}

/// 120 spot lines of 1.00 USD each.
fn long_invoice() -> InvoiceDocument {
    let mut doc = invoice();
    doc.lines = (0..120)
        .map(|i| {
            let mut l = line(
                LineKind::Spot,
                &format!("Spot usage batch {i:03} on the shared pool"),
                dec!(1.5),
                Unit::MillionWeightedTokens,
                dec!(1.00),
            );
            l.tiers = vec![tier(0, None, dec!(1.5), dec!(0.666666666667))];
            l
        })
        .collect();
    doc.subtotal = dec!(120.00);
    doc.total = dec!(120.00);
    doc
}

#[test]
fn a_long_invoice_runs_over_numbered_pages() {
    let text = pdf_text(&render(&long_invoice()).unwrap());
    let pages = pages(&text);
    let count = pages.len();
    assert!(count >= 3, "120 lines fit on {count} pages");
    for (i, page) in pages.iter().enumerate() {
        let footer = format!("Page {} of {count}", i + 1);
        assert!(page.contains(&footer), "page {} lacks {footer:?}:\n{page}", i + 1);
        if i > 0 {
            assert!(page.contains("RSV-2026-000123 (continued)"), "page {} has no header:\n{page}", i + 1);
        }
    }
    assert!(text.contains("Page 2 of"));
    // The column headings come back on pages that continue the table.
    assert!(pages[1].contains("Description") && pages[1].contains("Amount (USD)"), "{}", pages[1]);
    // Every line is on exactly one page, in order, and the total comes last.
    let mut at = 0;
    for i in 0..120 {
        let needle = format!("Spot usage batch {i:03}");
        let found = text[at..].find(&needle).unwrap_or_else(|| panic!("{needle} missing or out of order"));
        at += found + needle.len();
        assert!(!text[at..].contains(&needle), "{needle} appears twice");
    }
    assert!(text[at..].contains("Total: 120.00 USD"));
    assert!(text.contains("tier 1: 1.5 x 0.666666666667 = 1.0000000000005"));
}

fn in_currency(code: &str, amount: Decimal, balance: Decimal) -> InvoiceDocument {
    let currency: Currency = code.parse().unwrap();
    let mut doc = invoice();
    doc.currency = currency;
    doc.lines = vec![line(LineKind::Burst, "Burst usage", dec!(7), Unit::MillionWeightedTokens, amount)];
    doc.subtotal = amount;
    doc.total = amount;
    doc.credit_balance_after = balance;
    doc.credit_notes.clear();
    doc
}

#[test]
fn currencies_print_their_own_minor_units() {
    let text = pdf_text(&render(&in_currency("JPY", dec!(1235), dec!(300))).unwrap());
    for expected in ["Amount (JPY)", "Total: 1235 JPY", "Subtotal: 1235 JPY", "Credit balance carried: 300 JPY"] {
        assert!(text.contains(expected), "{expected:?} is missing from:\n{text}");
    }
    assert!(!text.contains("1235.0"), "JPY has no minor unit:\n{text}");

    let text = pdf_text(&render(&in_currency("BHD", dec!(12.345), dec!(0.5))).unwrap());
    for expected in ["Amount (BHD)", "Total: 12.345 BHD", "Credit balance carried: 0.500 BHD"] {
        assert!(text.contains(expected), "{expected:?} is missing from:\n{text}");
    }
}

#[test]
fn drafts_and_void_invoices_say_so() {
    let mut draft = invoice();
    draft.status = "draft".to_owned();
    draft.number = None;
    draft.issued_at = None;
    let text = pdf_text(&render(&draft).unwrap());
    assert!(text.contains("DRAFT — not a valid invoice"), "{text}");
    assert!(text.contains("Issued: not yet (draft)"), "{text}");
    assert!(!text.contains("RSV-"), "{text}");

    let mut void = invoice();
    void.status = "void".to_owned();
    let text = pdf_text(&render(&void).unwrap());
    assert!(text.contains("VOID") && text.contains("RSV-2026-000123"), "{text}");
    assert!(text.contains("nothing is due"), "{text}");
}

#[test]
fn documents_that_cannot_be_printed_honestly_are_refused() {
    let mut doc = invoice();
    doc.status = "paid".to_owned();
    assert!(matches!(render(&doc), Err(RenderError::UnknownStatus(s)) if s == "paid"));
    let mut doc = invoice();
    doc.number = None;
    assert!(matches!(render(&doc), Err(RenderError::MissingNumber { .. })));
}

/// Writes sample PDFs for a person to look at:
/// `INVOICE_PDF_SAMPLES=/tmp/samples cargo test -p reservoir-invoice-pdf -- samples`.
#[test]
fn samples() {
    let Ok(dir) = std::env::var("INVOICE_PDF_SAMPLES") else { return };
    let dir = std::path::Path::new(&dir);
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("invoice.pdf"), render(&invoice()).unwrap()).unwrap();
    let mut draft = invoice();
    draft.status = "draft".to_owned();
    draft.number = None;
    std::fs::write(dir.join("draft.pdf"), render(&draft).unwrap()).unwrap();
    std::fs::write(dir.join("long.pdf"), render(&long_invoice()).unwrap()).unwrap();
}

#[test]
fn the_same_invoice_gives_the_same_bytes() {
    assert_eq!(render(&invoice()).unwrap(), render(&invoice()).unwrap());
}

/// DejaVu has no CJK glyphs: such text shows as boxes (and may not come
/// back whole from the text layer), but it must not break the page or the
/// text around it.
#[test]
fn text_outside_the_fonts_does_not_break_the_page() {
    let mut doc = invoice();
    doc.tenant = "Acme 株式会社 Japan".to_owned();
    let text = pdf_text(&render(&doc).unwrap());
    assert!(text.contains("Acme") && text.contains("Japan"), "{text}");
    assert!(text.contains("Total: 205.00 USD"), "{text}");
}
