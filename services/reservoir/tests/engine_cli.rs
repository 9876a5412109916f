//! The `reservoir` binary's engine commands, run as a user would, on the real
//! SmolLM2-135M-Instruct Q4_1 model (`scripts/fetch-model` puts it in
//! `.reservoir/models/`). These tests fail, never skip, without it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::{Command, Output};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn model() -> PathBuf {
    let path = root().join(".reservoir/models/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(path.is_file(), "model file {} missing: run scripts/fetch-model first", path.display());
    path
}

fn reservoir(args: &[&str]) -> Output {
    // From the repository root, as documented; RESERVOIR_CONFIG points at a
    // file that does not exist so a developer's reservoir.toml cannot matter.
    Command::new(env!("CARGO_BIN_EXE_reservoir"))
        .args(args)
        .current_dir(root())
        .env("RESERVOIR_CONFIG", "/nonexistent/reservoir.toml")
        .output()
        .expect("running the reservoir binary")
}

fn stdout_ok(out: &Output) -> String {
    let stdout = String::from_utf8(out.stdout.clone()).expect("utf-8 stdout");
    assert!(
        out.status.success(),
        "exit {:?}\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Greedy decoding is deterministic, and this question's greedy path keeps
/// a wide top-1/top-2 logit margin (see the engine's tests/real_model.rs), so
/// the exact reply is pinned.
#[test]
fn generate_streams_the_greedy_reply() {
    let m = model();
    let out = reservoir(&["generate", "What is the capital of Japan?", "--model", m.to_str().unwrap()]);
    assert_eq!(stdout_ok(&out), "The capital of Japan is Tokyo.\n");
}

#[test]
fn generate_uses_the_default_model_and_honours_max_tokens() {
    model();
    // Default --model is .reservoir/models/... under the current directory.
    let out = reservoir(&["generate", "What is the capital of Japan?", "--max-tokens", "3"]);
    assert_eq!(stdout_ok(&out), "The capital of\n");
}

#[test]
fn generate_without_a_model_says_to_fetch_it() {
    let dir = std::env::temp_dir();
    let out = Command::new(env!("CARGO_BIN_EXE_reservoir"))
        .args(["generate", "hi"])
        .current_dir(&dir)
        .env("RESERVOIR_CONFIG", "/nonexistent/reservoir.toml")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("scripts/fetch-model"), "stderr: {stderr}");
}

/// Reference 15.344: the engine's tests/fixtures/perplexity_reference.py
/// (float64 numpy forward pass over the dequantized weights), same windows
/// and scoring as llama.cpp's perplexity tool.
#[test]
fn perplexity_matches_the_reference() {
    let m = model();
    let text = root().join("crates/engine/tests/fixtures/english.txt");
    let out = reservoir(&["perplexity", text.to_str().unwrap(), "--model", m.to_str().unwrap(), "--ctx", "128"]);
    let stdout = stdout_ok(&out);
    assert!(stdout.contains("[1/2]") && stdout.contains("[2/2]"), "progress per window:\n{stdout}");
    let last = stdout.lines().last().unwrap();
    let x: f64 = last.strip_prefix("perplexity: ").expect(last).parse().expect(last);
    assert_eq!(last, format!("perplexity: {x:.4}"));
    assert!((x / 15.344 - 1.0).abs() < 0.02, "perplexity {x}");
}

#[test]
fn perplexity_refuses_a_window_longer_than_the_text() {
    let m = model();
    let text = root().join("crates/engine/tests/fixtures/english.txt");
    let out = reservoir(&["perplexity", text.to_str().unwrap(), "--model", m.to_str().unwrap(), "--ctx", "512"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("fewer than one window"), "stderr: {stderr}");
}

#[test]
fn bench_engine_help_works() {
    let out = reservoir(&["bench", "engine", "--help"]);
    assert!(stdout_ok(&out).contains("--quick"));
}
