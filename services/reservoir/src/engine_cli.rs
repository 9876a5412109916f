//! The engine's command-line face: `reservoir generate`, `reservoir perplexity`
//! and `reservoir bench engine`. Everything here is blocking CPU work on the
//! calling thread (the engine parallelises inside with rayon); nothing needs
//! the database or the configuration file.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail, ensure};
use reservoir_engine::attention::KvStore;
use reservoir_engine::bench::Spec;
use reservoir_engine::{ChatMessage, Engine, EngineConfig, LoadedModel, SamplingParams};

/// Where `scripts/fetch-model` puts the default model, relative to the
/// current directory (the repository root in normal use).
pub fn default_model() -> PathBuf {
    reservoir_engine::default_model_path(Path::new("."))
}

#[derive(clap::Args, Debug)]
pub struct ModelArg {
    /// GGUF model file [default: .reservoir/models/SmolLM2-135M-Instruct.Q4_1.gguf]
    #[arg(long, value_name = "PATH")]
    model: Option<PathBuf>,
}

impl ModelArg {
    pub fn load(&self) -> anyhow::Result<LoadedModel> {
        let path = self.model.clone().unwrap_or_else(default_model);
        load_model(&path, self.model.is_none())
    }
}

fn load_model(path: &Path, is_default: bool) -> anyhow::Result<LoadedModel> {
    if !path.is_file() {
        if is_default {
            bail!(
                "model file {} not found: run scripts/fetch-model from the repository root \
                 (or pass --model PATH)",
                path.display()
            );
        }
        bail!("model file {} not found", path.display());
    }
    reservoir_engine::load(path).with_context(|| format!("loading model {}", path.display()))
}

/// KV bytes for `tokens` tokens plus one spare block, so the engine's pool is
/// sized to the job instead of the 256 MiB serving default.
fn kv_budget_for(loaded: &LoadedModel, tokens: usize) -> usize {
    let c = &loaded.model.config;
    let block = EngineConfig::default().block_size;
    KvStore::bytes_per_block(c.n_layers, 1, c.kv_dim()) * (tokens + 2 * block)
}

// ---------------------------------------------------------------- generate

#[derive(clap::Args, Debug)]
pub struct GenerateArgs {
    /// The user message; the model's chat template is applied around it.
    prompt: String,
    #[command(flatten)]
    model: ModelArg,
    /// Most tokens to generate (the reply stops earlier at end-of-turn).
    #[arg(long, default_value_t = 256)]
    max_tokens: usize,
    /// 0 picks the most likely token every step (greedy, deterministic).
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    temperature: f32,
    /// Seed of the sampler's RNG (only matters with a temperature above 0).
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

pub fn generate(args: &GenerateArgs) -> anyhow::Result<()> {
    ensure!(
        args.temperature.is_finite() && args.temperature >= 0.0,
        "--temperature must be a finite number >= 0, got {}",
        args.temperature
    );
    let loaded = args.model.load()?;
    let prompt = reservoir_engine::chat_prompt(&loaded.tokenizer, &[ChatMessage::new("user", &args.prompt)]);
    let ctx_len = loaded.model.config.ctx_len;
    ensure!(prompt.len() < ctx_len, "the prompt is {} tokens; the model's context is {ctx_len}", prompt.len());
    // Generation stops at the context's end anyway; the cap only keeps the
    // KV budget finite for absurd --max-tokens values.
    let max_tokens = args.max_tokens.min(ctx_len - prompt.len());
    let cfg = EngineConfig {
        kv_budget_bytes: kv_budget_for(&loaded, prompt.len() + max_tokens),
        prefix_caching: false,
        ..EngineConfig::default()
    };
    let mut engine = Engine::new(loaded.model.clone(), cfg).context("creating the engine")?;
    let params =
        SamplingParams { temperature: args.temperature, seed: args.seed, max_tokens, ..SamplingParams::default() };
    let generation = reservoir_engine::generate(&mut engine, &loaded.tokenizer, 1, &prompt, params)
        .context("starting generation")?;
    let mut out = std::io::stdout().lock();
    for token in generation {
        let token = token.context("generating")?;
        // Flush per token: the point of streaming is seeing text as it comes.
        out.write_all(token.text.as_bytes()).context("writing to stdout")?;
        out.flush().context("writing to stdout")?;
    }
    writeln!(out).context("writing to stdout")?;
    Ok(())
}

// -------------------------------------------------------------- perplexity

/// `--ctx` when none is given (llama.cpp's perplexity default).
const DEFAULT_PPL_CTX: usize = 512;
/// Below this a window scores too few tokens to mean anything.
const MIN_PPL_CTX: usize = 16;

#[derive(clap::Args, Debug)]
pub struct PerplexityArgs {
    /// UTF-8 text file to score.
    file: PathBuf,
    #[command(flatten)]
    model: ModelArg,
    /// Tokens per window [default: 512, or the whole text when it is shorter]
    #[arg(long)]
    ctx: Option<usize>,
}

pub fn perplexity(args: &PerplexityArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    let loaded = args.model.load()?;
    let tok = &loaded.tokenizer;
    // As llama.cpp: tokenize the whole text once, with BOS when the model
    // asks for one, and put BOS at the start of every window (SmolLM2 does
    // not add BOS, so its windows are plain slices of the text).
    let tokens = tok.encode(&text, true);
    let bos = if tok.add_bos { tok.bos_id } else { None };
    let model_ctx = loaded.model.config.ctx_len;
    let ctx = match args.ctx {
        Some(ctx) => {
            ensure!(
                (MIN_PPL_CTX..=model_ctx).contains(&ctx),
                "--ctx must be in {MIN_PPL_CTX}..={model_ctx}, got {ctx}"
            );
            ensure!(
                tokens.len() >= ctx,
                "{} has {} tokens, fewer than one window of --ctx {ctx}: pass a smaller --ctx or a longer text",
                args.file.display(),
                tokens.len()
            );
            ctx
        }
        None => {
            ensure!(
                tokens.len() >= MIN_PPL_CTX,
                "{} has {} tokens; perplexity needs at least {MIN_PPL_CTX}",
                args.file.display(),
                tokens.len()
            );
            // The largest even window that fits (even: half of it is context).
            DEFAULT_PPL_CTX.min(tokens.len() & !1)
        }
    };
    let n_windows = tokens.len() / ctx;
    println!(
        "{}: {} tokens, {n_windows} window(s) of {ctx} (tail of {} dropped), bos {}",
        args.file.display(),
        tokens.len(),
        tokens.len() - n_windows * ctx,
        bos.map_or("none".to_string(), |b| b.to_string())
    );
    // Every window scores the same number of tokens (its second half), so the
    // perplexity over all windows is the geometric mean of the windows' ones:
    // scoring window by window gives progress lines and the same figure as
    // one `reservoir_engine::perplexity` call over the whole text.
    let mut sum_log_ppl = 0f64;
    let mut out = std::io::stdout().lock();
    for (i, window) in tokens.chunks_exact(ctx).enumerate() {
        let t0 = Instant::now();
        let ppl = reservoir_engine::perplexity(&loaded.model, window, ctx, bos)
            .with_context(|| format!("window {}", i + 1))?;
        sum_log_ppl += ppl.ln();
        let running = (sum_log_ppl / (i + 1) as f64).exp();
        writeln!(
            out,
            "[{}/{n_windows}] window {ppl:.4}, running {running:.4} ({:.2} s)",
            i + 1,
            t0.elapsed().as_secs_f64()
        )?;
        out.flush()?;
    }
    writeln!(out, "perplexity: {:.4}", (sum_log_ppl / n_windows as f64).exp())?;
    Ok(())
}

// ------------------------------------------------------------ bench engine

/// Batch sizes `bench engine` decodes at.
const BENCH_BATCHES: [usize; 4] = [1, 8, 32, 64];

#[derive(clap::Args, Debug)]
pub struct BenchEngineArgs {
    #[command(flatten)]
    model: ModelArg,
    /// A short run (one round, fewer steps): figures are rougher.
    #[arg(long)]
    quick: bool,
    /// Rounds; the best figure of each kind is reported (the machine is shared) [default: 3, 1 with --quick]
    #[arg(long)]
    rounds: Option<usize>,
    /// Prompt tokens in the prefill measurement [default: 256, 128 with --quick]
    #[arg(long)]
    prefill_tokens: Option<usize>,
    /// Prompt tokens per prefill step, as a worker's step budget splits a
    /// long prompt [default: the whole prompt in one step]
    #[arg(long)]
    prefill_chunk: Option<usize>,
    /// Decode steps timed per batch size [default: 32, 8 with --quick]
    #[arg(long)]
    decode_steps: Option<usize>,
    /// Tokens of context each decoding sequence holds when the timed steps
    /// begin; attention costs more the longer it is (the pool's calibration
    /// decodes from chat traffic's mean context, about 270 for SmolLM2)
    #[arg(long, default_value_t = 16)]
    context: usize,
}

/// Best-of-rounds figures.
struct Best {
    prefill_tps: f64,
    prefill_ms: f64,
    /// Per batch: (batch, tok/s, mean step ms, max step ms, kv waste).
    decode: Vec<(usize, f64, f64, f64, f64)>,
}

pub fn bench_engine(args: &BenchEngineArgs) -> anyhow::Result<()> {
    let rounds = args.rounds.unwrap_or(if args.quick { 1 } else { 3 });
    let prefill_tokens = args.prefill_tokens.unwrap_or(if args.quick { 128 } else { 256 });
    let decode_steps = args.decode_steps.unwrap_or(if args.quick { 8 } else { 32 });
    ensure!(rounds >= 1 && decode_steps >= 1, "--rounds and --decode-steps must be at least 1");
    ensure!(prefill_tokens >= 1, "--prefill-tokens must be at least 1");
    let prefill_chunk = args.prefill_chunk.unwrap_or(prefill_tokens);
    ensure!(prefill_chunk >= 1, "--prefill-chunk must be at least 1");
    let t_load = Instant::now();
    let loaded = args.model.load()?;
    let c = &loaded.model.config;
    ensure!(
        prefill_tokens + 16 <= c.ctx_len && args.context + decode_steps + 16 <= c.ctx_len,
        "--prefill-tokens, and --context with --decode-steps, must fit the model's context of {}",
        c.ctx_len
    );
    println!(
        "model: {} layers, dim {}, vocab {}; loaded in {:.2} s",
        c.n_layers,
        c.dim,
        c.vocab_size,
        t_load.elapsed().as_secs_f64()
    );
    println!("threads: {}", thread_description());
    let context = args.context;
    println!(
        "rounds: {rounds} (best of), prefill {prefill_tokens} tokens, {decode_steps} decode steps per batch size \
         from {context} tokens of context"
    );
    // Warm-up: the first forward pass pays for page faults on the mmapped
    // weights and for rayon's thread start; keep that out of the figures.
    let warm_up = Spec { prefill_tokens: 16, prefill_chunk: 16, batches: &[1], decode_steps: 2, decode_context: 16 };
    reservoir_engine::bench::run(&loaded.model, &warm_up).context("warm-up")?;
    let spec = Spec { prefill_tokens, prefill_chunk, batches: &BENCH_BATCHES, decode_steps, decode_context: context };

    let mut best: Option<Best> = None;
    for round in 1..=rounds {
        let r = reservoir_engine::bench::run(&loaded.model, &spec).with_context(|| format!("bench round {round}"))?;
        let decode: Vec<_> =
            r.decode.iter().map(|d| (d.batch, d.tok_per_s, d.step_ms_mean, d.step_ms_max, d.kv_waste)).collect();
        let line: Vec<String> = decode.iter().map(|d| format!("b{} {:.1}", d.0, d.1)).collect();
        println!("round {round}: prefill {:.1} tok/s; decode tok/s {}", r.prefill_tok_per_s, line.join(", "));
        best = Some(match best {
            None => Best { prefill_tps: r.prefill_tok_per_s, prefill_ms: r.prefill_ms, decode },
            Some(mut b) => {
                if r.prefill_tok_per_s > b.prefill_tps {
                    (b.prefill_tps, b.prefill_ms) = (r.prefill_tok_per_s, r.prefill_ms);
                }
                for (old, new) in b.decode.iter_mut().zip(decode) {
                    if new.1 > old.1 {
                        *old = new;
                    }
                }
                b
            }
        });
    }
    let best = best.context("no bench round ran")?;
    let mem = read_memory().context("reading /proc/self/status")?;

    println!();
    let steps = prefill_tokens.div_ceil(prefill_chunk);
    let steps = if steps == 1 { "one step".to_string() } else { format!("{steps} steps of up to {prefill_chunk}") };
    println!("prefill ({prefill_tokens} tokens, {steps}): {:.1} tok/s, {:.1} ms", best.prefill_tps, best.prefill_ms);
    println!(
        "decode from {context} tokens of context (aggregate tok/s over {decode_steps} steps; time per step mean / max; KV waste):"
    );
    for &(batch, tps, mean_ms, max_ms, waste) in &best.decode {
        println!(
            "  batch {batch:>3}: {tps:>8.1} tok/s  {mean_ms:>7.2} / {max_ms:>7.2} ms per step  KV waste {:>5.1}%",
            waste * 100.0
        );
    }
    println!("resident memory: peak {:.1} MiB (VmHWM), now {:.1} MiB (VmRSS)", mem.peak_rss_mb, mem.rss_mb);
    let tps = |b: usize| best.decode.iter().find(|d| d.0 == b).map_or(0.0, |d| d.1);
    // One JSON line last, for scripts (scripts/bench-vs-llamacpp reads it).
    // rss_mb is the peak: the engines are dropped by now, and what a worker
    // needs is the resident set while the largest batch is live.
    // Written by hand to keep the documented key order (serde_json's map sorts keys).
    println!(
        "{{\"prefill_tps\":{:.1},\"decode_tps_b1\":{:.1},\"decode_tps_b8\":{:.1},\"decode_tps_b32\":{:.1},\"decode_tps_b64\":{:.1},\"rss_mb\":{:.1}}}",
        best.prefill_tps,
        tps(1),
        tps(8),
        tps(32),
        tps(64),
        mem.peak_rss_mb
    );
    Ok(())
}

fn thread_description() -> String {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    match std::env::var("RAYON_NUM_THREADS") {
        Ok(n) => format!("{n} (RAYON_NUM_THREADS; {cores} cores available)"),
        Err(_) => format!("{cores} (all cores)"),
    }
}

struct Memory {
    rss_mb: f64,
    peak_rss_mb: f64,
}

fn read_memory() -> anyhow::Result<Memory> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let kb = |key: &str| -> anyhow::Result<f64> {
        let line = status.lines().find(|l| l.starts_with(key)).with_context(|| format!("no {key} line"))?;
        let n: f64 = line
            .trim_start_matches(key)
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .with_context(|| format!("parsing {line:?}"))?;
        Ok(n)
    };
    Ok(Memory { rss_mb: kb("VmRSS:")? / 1024.0, peak_rss_mb: kb("VmHWM:")? / 1024.0 })
}
