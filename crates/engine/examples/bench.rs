//! `cargo run --release -p reservoir-engine --example bench [model.gguf]`
fn main() {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    // Usage: bench [model.gguf|-] [batch sizes...]
    let args: Vec<String> = std::env::args().skip(1).collect();
    let path = match args.first().map(String::as_str) {
        Some(p) if p != "-" => p.into(),
        _ => reservoir_engine::default_model_path(&root),
    };
    let batches: Vec<usize> = args.iter().skip(1).filter_map(|a| a.parse().ok()).collect();
    let batches = if batches.is_empty() { vec![1, 8, 32, 64] } else { batches };
    let m = match reservoir_engine::load(&path) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("{}: {e}", path.display());
            std::process::exit(1);
        }
    };
    match reservoir_engine::bench::run(
        &m.model,
        &reservoir_engine::bench::Spec {
            prefill_tokens: 256,
            prefill_chunk: 256,
            batches: &batches,
            decode_steps: 32,
            decode_context: 16,
        },
    ) {
        Ok(r) => {
            println!("prefill {} tokens: {:.1} tok/s", r.prefill_tokens, r.prefill_tok_per_s);
            for (b, t) in r.decode_tok_per_s {
                println!("decode batch {b:>3}: {t:.1} tok/s");
            }
        }
        Err(e) => eprintln!("bench: {e}"),
    }
}
