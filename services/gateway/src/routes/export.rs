//! What every finance export shares: RFC 4180 CSV (a header row, CRLF,
//! decimals as the text they are), JSON lines, and the download answer.

use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::error::{ApiError, ApiResult};
use crate::routes::sla_admin::ExportFormat;

/// `header`, then one record per row.
pub fn csv_of(header: &[&str], rows: impl IntoIterator<Item = Vec<String>>) -> ApiResult<Vec<u8>> {
    let mut writer = csv::WriterBuilder::new().terminator(csv::Terminator::CRLF).from_writer(Vec::new());
    let failed = |e: csv::Error| {
        tracing::error!(error = %e, "csv export");
        ApiError::internal()
    };
    writer.write_record(header).map_err(failed)?;
    for row in rows {
        writer.write_record(&row).map_err(failed)?;
    }
    writer.into_inner().map_err(|_| ApiError::internal())
}

/// One JSON document per line.
pub fn jsonl<T: Serialize>(items: &[T]) -> ApiResult<Vec<u8>> {
    let mut out = Vec::new();
    for item in items {
        serde_json::to_writer(&mut out, item).map_err(|_| ApiError::internal())?;
        out.push(b'\n');
    }
    Ok(out)
}

/// The attachment `{what}-{period}.csv` or `.jsonl`, as `format` asks.
pub fn download(period: &str, what: &str, format: ExportFormat, csv: Vec<u8>, jsonl: Vec<u8>) -> Response {
    let (content_type, extension, body) = match format {
        ExportFormat::Csv => ("text/csv; charset=utf-8", "csv", csv),
        ExportFormat::Jsonl => ("application/jsonl", "jsonl", jsonl),
    };
    let disposition = format!("attachment; filename=\"{what}-{period}.{extension}\"");
    ([(header::CONTENT_TYPE, content_type.to_owned()), (header::CONTENT_DISPOSITION, disposition)], body)
        .into_response()
}
