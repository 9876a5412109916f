//! No amount ever passes through a float: the money code (this crate, the
//! pricing crate and the billing service) names no floating-point type and
//! calls no float conversion. A float that slipped in would fail here.

use std::path::{Path, PathBuf};

const MONEY_CODE: [&str; 3] = ["crates/billing/src", "crates/pricing/src", "services/billing/src"];
const FORBIDDEN: [&str; 5] = ["f64", "f32", "to_f64", "from_f64", "as_f64"];

fn rust_files(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
}

/// Whether `word` appears in `line` as a whole identifier.
fn names(line: &str, word: &str) -> bool {
    line.match_indices(word).any(|(at, _)| {
        let before = line[..at].chars().next_back();
        let after = line[at + word.len()..].chars().next();
        let ident = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
        !ident(before) && !ident(after)
    })
}

#[test]
fn money_code_names_no_float() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut files = Vec::new();
    for dir in MONEY_CODE {
        rust_files(&root.join(dir), &mut files);
    }
    assert!(files.len() > 20, "the money code was found: {files:?}");
    let mut offences = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("read");
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or_default();
            for word in FORBIDDEN {
                if names(code, word) {
                    offences.push(format!("{}:{}: {}", file.display(), n + 1, line.trim()));
                }
            }
        }
    }
    assert!(offences.is_empty(), "floats in money code:\n{}", offences.join("\n"));
}

#[test]
fn the_check_sees_a_float() {
    assert!(names("let x: f64 = 1.0;", "f64"));
    assert!(names("amount.to_f64()", "to_f64"));
    assert!(!names("let buf64 = 1;", "f64"));
}
