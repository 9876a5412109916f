//! The portable scalar kernels on the real model (own test binary: the
//! kernel override is process-wide). Needs `scripts/fetch-model`.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use reservoir_engine::kernels::Level;
use reservoir_engine::*;

#[test]
fn scalar_kernels_agree_with_simd_on_the_real_model() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let path = default_model_path(&root);
    assert!(path.exists(), "model file {} missing: run scripts/fetch-model first", path.display());
    let m = load(&path).unwrap();
    let toks = m.tokenizer.encode(include_str!("fixtures/english.txt"), true);
    let window = &toks[..64];

    Level::set_override(None);
    let simd = perplexity(&m.model, window, 64, None).unwrap();
    Level::set_override(Some(Level::Scalar));
    let scalar = perplexity(&m.model, window, 64, None).unwrap();

    let ids = chat_prompt(&m.tokenizer, &[ChatMessage::new("user", "What is the capital of Japan?")]);
    let mut eng = Engine::new(m.model.clone(), EngineConfig::default()).unwrap();
    let params = SamplingParams { max_tokens: 16, ..Default::default() };
    let reply: String =
        Generation::new(&mut eng, &m.tokenizer, 1, &ids, params).unwrap().map(|t| t.unwrap().text).collect();
    Level::set_override(None);

    // Only 31 tokens are scored, and Q8 activation rounding makes perplexity
    // move ~2% with summation order alone; a real kernel bug (nibble order,
    // scales) moves it by orders of magnitude.
    assert!((simd / scalar - 1.0).abs() < 0.04, "simd {simd} vs scalar {scalar}");
    assert_eq!(reply, "The capital of Japan is Tokyo.");
}
