//! The faces Reservoir draws text in (invoice PDFs, the portal's charts),
//! compiled into the binary so that nothing reads a font file at run time.
//! See `fonts/README` for their origin and licence.

/// DejaVu Sans.
pub static SANS: &[u8] = include_bytes!("../fonts/DejaVuSans.ttf");
/// DejaVu Sans Bold.
pub static SANS_BOLD: &[u8] = include_bytes!("../fonts/DejaVuSans-Bold.ttf");
