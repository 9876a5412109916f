//! `cargo run --release -p reservoir-engine --example bench [model.gguf]`
fn main() {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let path = std::env::args().nth(1).map(Into::into).unwrap_or_else(|| reservoir_engine::default_model_path(&root));
    let m = match reservoir_engine::load(&path) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("{}: {e}", path.display());
            std::process::exit(1);
        }
    };
    match reservoir_engine::bench::run(&m.model, 256, &[1, 8, 32, 64], 32) {
        Ok(r) => {
            println!("prefill {} tokens: {:.1} tok/s", r.prefill_tokens, r.prefill_tok_per_s);
            for (b, t) in r.decode_tok_per_s {
                println!("decode batch {b:>3}: {t:.1} tok/s");
            }
        }
        Err(e) => eprintln!("bench: {e}"),
    }
}
