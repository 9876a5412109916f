//! Engine behaviour on tiny random models built in memory (fast, no file).
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use reservoir_engine::test_support::{TinySpec, tiny_model};
use reservoir_engine::*;

fn engine(model: &Arc<Model>, budget_blocks: usize, block_size: usize) -> Engine {
    let c = &model.config;
    let per_block = reservoir_engine::attention::KvStore::bytes_per_block(c.n_layers, block_size, c.kv_dim());
    let cfg = EngineConfig {
        block_size,
        kv_budget_bytes: budget_blocks * per_block,
        prefix_caching: true,
        ..EngineConfig::default()
    };
    Engine::new(model.clone(), cfg).unwrap()
}

fn argmax(l: &[f32]) -> u32 {
    reservoir_engine::sampler::argmax(l)
}

/// Greedy generation of `n` tokens for one sequence, one step per token.
fn generate_alone(eng: &mut Engine, id: SeqId, prompt: &[u32], n: usize) -> Vec<u32> {
    let cached = eng.add_sequence(id, prompt).unwrap();
    let mut out = Vec::new();
    let mut next = prompt[cached..].to_vec();
    for _ in 0..n {
        let o =
            eng.step(&StepBatch { entries: vec![StepEntry { seq: id, tokens: next, logits: Logits::Last }] }).unwrap();
        let t = argmax(&o.outputs[0].logits);
        out.push(t);
        next = vec![t];
    }
    eng.remove_sequence(id).unwrap();
    eng.check_invariants().unwrap();
    out
}

fn prompts(vocab: u32) -> Vec<Vec<u32>> {
    (0..6u32).map(|i| (0..(3 + i * 7)).map(|j| (i * 31 + j * 17 + 5) % vocab).collect()).collect()
}

#[test]
fn batched_generation_equals_generating_each_alone() {
    for (spec, bs) in [
        (TinySpec::default(), 16),
        (
            TinySpec {
                n_heads: 6,
                n_kv_heads: 2,
                weight_type: reservoir_engine::quant::GgmlType::Q8_0,
                seed: 5,
                ..TinySpec::default()
            },
            4,
        ),
        (
            TinySpec {
                n_heads: 2,
                n_kv_heads: 2,
                head_dim: 32,
                weight_type: reservoir_engine::quant::GgmlType::F32,
                seed: 9,
                ..TinySpec::default()
            },
            3,
        ),
    ] {
        let model = tiny_model(&spec).unwrap();
        let ps = prompts(spec.vocab as u32);
        let n_gen = 12;
        let mut eng = engine(&model, 200, bs);
        let alone: Vec<Vec<u32>> =
            ps.iter().enumerate().map(|(i, p)| generate_alone(&mut eng, 100 + i as u64, p, n_gen)).collect();

        // Mixed steps: sequences join at different steps, prefill in chunks of
        // 5 tokens while others decode, all in one forward pass per step.
        let mut eng = engine(&model, 200, bs);
        let mut got: Vec<Vec<u32>> = vec![Vec::new(); ps.len()];
        let mut fed = vec![0usize; ps.len()];
        let mut next: Vec<Option<u32>> = vec![None; ps.len()];
        let mut step_no = 0;
        while got.iter().any(|g| g.len() < n_gen) {
            let mut entries = Vec::new();
            for (i, p) in ps.iter().enumerate() {
                if step_no < i || got[i].len() >= n_gen {
                    continue;
                }
                let id = i as u64;
                if step_no == i {
                    assert_eq!(eng.add_sequence(id, p).unwrap(), 0);
                }
                if fed[i] < p.len() {
                    let end = (fed[i] + 5).min(p.len());
                    let last = end == p.len();
                    entries.push(StepEntry {
                        seq: id,
                        tokens: p[fed[i]..end].to_vec(),
                        logits: if last { Logits::Last } else { Logits::None },
                    });
                    fed[i] = end;
                } else if let Some(t) = next[i] {
                    entries.push(StepEntry { seq: id, tokens: vec![t], logits: Logits::Last });
                }
            }
            let out = eng.step(&StepBatch { entries }).unwrap();
            for o in out.outputs {
                let i = o.seq as usize;
                let t = argmax(&o.logits);
                got[i].push(t);
                next[i] = Some(t);
            }
            eng.check_invariants().unwrap();
            step_no += 1;
        }
        assert_eq!(got, alone, "spec {spec:?}");
        // The generations should not be degenerate (all the same token).
        assert!(alone.iter().flatten().collect::<std::collections::HashSet<_>>().len() > 3);
    }
}

#[test]
fn a_copied_sequence_continues_exactly_as_the_original_in_blocks_of_its_own() {
    let m = tiny_model(&TinySpec::default()).unwrap();
    let mut eng = engine(&m, 64, 4);
    let prompt: Vec<u32> = (0..10).map(|j| (j * 13 + 3) % m.config.vocab_size as u32).collect();
    let want = generate_alone(&mut eng, 9, &prompt, 6);
    // Blocks the first run left in the prefix cache serve the start.
    let cached = eng.add_sequence(1, &prompt).unwrap();
    let rest = prompt[cached..].to_vec();
    let o = eng.step(&StepBatch { entries: vec![StepEntry { seq: 1, tokens: rest, logits: Logits::Last }] });
    let first = argmax(&o.unwrap().outputs[0].logits);
    let free = eng.stats().free_blocks;
    eng.copy_sequence(1, 2).unwrap();
    assert_eq!(eng.stats().free_blocks, free - 3, "10 tokens in blocks of 4: three blocks of its own");
    assert_eq!(eng.sequence_len(2).unwrap(), 10);
    // The original goes away: the copy does not depend on its blocks.
    eng.remove_sequence(1).unwrap();
    let mut got = vec![first];
    for _ in 1..6 {
        let entry = StepEntry { seq: 2, tokens: vec![*got.last().unwrap()], logits: Logits::Last };
        let o = eng.step(&StepBatch { entries: vec![entry] }).unwrap();
        got.push(argmax(&o.outputs[0].logits));
    }
    assert_eq!(got, want);
    assert!(matches!(eng.copy_sequence(2, 2), Err(EngineError::DuplicateSequence(2))));
    assert!(matches!(eng.copy_sequence(7, 3), Err(EngineError::UnknownSequence(7))));
    eng.remove_sequence(2).unwrap();
    eng.check_invariants().unwrap();
}

#[test]
fn prefix_cache_hit_gives_the_same_tokens_as_a_miss() {
    let spec = TinySpec { seed: 3, ..TinySpec::default() };
    let model = tiny_model(&spec).unwrap();
    let prompt: Vec<u32> = (0..45u32).map(|j| (j * 7 + 3) % 96).collect();
    let mut cold = engine(&model, 100, 8);
    cold.add_sequence(1, &[0]).unwrap(); // unrelated, to shift block ids
    cold.step(&StepBatch { entries: vec![StepEntry { seq: 1, tokens: vec![0; 9], logits: Logits::None }] }).unwrap();
    let miss = generate_alone(&mut cold, 2, &prompt, 10);

    let mut eng = engine(&model, 100, 8);
    let first = generate_alone(&mut eng, 1, &prompt, 10);
    assert_eq!(first, miss);
    // 44 tokens can be reused at most (the last prompt token is recomputed): 5 full blocks.
    assert_eq!(eng.add_sequence(2, &prompt).unwrap(), 40);
    eng.remove_sequence(2).unwrap();
    let hit = generate_alone(&mut eng, 3, &prompt, 10);
    assert_eq!(hit, miss);
    let s = eng.stats();
    assert!(s.prefix_hit_rate > 0.6, "{s:?}");
    // A prompt sharing only the first 2 blocks reuses exactly those.
    let mut other = prompt.clone();
    other[20] = (other[20] + 1) % 96;
    assert_eq!(eng.add_sequence(4, &other).unwrap(), 16);
    eng.check_invariants().unwrap();
}

/// A prefix is reused only under the salt that cached it (the worker salts
/// with the tenant): another salt, or none, finds nothing, and computes the
/// same tokens from scratch.
#[test]
fn prefix_cache_hits_stay_within_a_salt() {
    let model = tiny_model(&TinySpec { seed: 3, ..TinySpec::default() }).unwrap();
    let prompt: Vec<u32> = (0..45u32).map(|j| (j * 7 + 3) % 96).collect();
    let (a, b) = (CacheSalt::new("tenant:acme"), CacheSalt::new("tenant:globex"));
    let mut eng = engine(&model, 100, 8);
    assert_eq!(eng.add_sequence_salted(1, &prompt, a).unwrap(), 0);
    eng.step(&StepBatch { entries: vec![StepEntry { seq: 1, tokens: prompt.clone(), logits: Logits::Last }] }).unwrap();
    eng.remove_sequence(1).unwrap();
    assert_eq!(eng.add_sequence_salted(2, &prompt, b).unwrap(), 0, "another salt: no hit");
    assert_eq!(eng.add_sequence(3, &prompt).unwrap(), 0, "no salt: no hit");
    assert_eq!(eng.add_sequence_salted(4, &prompt, a).unwrap(), 40, "the same salt: 5 full blocks");
    for seq in [2, 3, 4] {
        eng.remove_sequence(seq).unwrap();
    }
    eng.check_invariants().unwrap();
    // The unsalted cache is shared by every unsalted sequence, as before.
    let first = generate_alone(&mut eng, 5, &prompt, 6);
    assert_eq!(eng.add_sequence(6, &prompt).unwrap(), 40);
    eng.remove_sequence(6).unwrap();
    assert_eq!(generate_alone(&mut eng, 7, &prompt, 6), first);
}

#[test]
fn running_out_of_blocks_is_an_error_and_leaves_the_pool_consistent() {
    let model = tiny_model(&TinySpec::default()).unwrap();
    let mut eng = engine(&model, 5, 4);
    assert_eq!(eng.stats().total_blocks, 5);
    eng.add_sequence(1, &[1, 2, 3]).unwrap();
    eng.add_sequence(2, &[4, 5, 6]).unwrap();
    eng.allocate(1, 12).unwrap(); // 3 blocks
    assert!(matches!(eng.allocate(2, 12), Err(EngineError::OutOfBlocks { needed: 3, free: 2 })));
    eng.check_invariants().unwrap();
    assert_eq!(eng.stats().free_blocks, 2);
    // A step that needs more than is free runs nothing.
    let batch = StepBatch {
        entries: vec![
            StepEntry { seq: 1, tokens: vec![1; 4], logits: Logits::Last },
            StepEntry { seq: 2, tokens: vec![2; 9], logits: Logits::Last },
        ],
    };
    assert!(matches!(eng.step(&batch), Err(EngineError::OutOfBlocks { .. })));
    assert_eq!(eng.sequence_len(1).unwrap(), 0);
    assert_eq!(eng.stats().free_blocks, 2);
    eng.check_invariants().unwrap();
    // After freeing, the same step fits.
    eng.remove_sequence(1).unwrap();
    eng.add_sequence(1, &[1]).unwrap();
    let out = eng.step(&batch).unwrap();
    assert_eq!(out.outputs.len(), 2);
    assert_eq!(out.n_tokens, 13);
    let s = eng.stats();
    // Seq 1: 4 tokens in 1 block; seq 2: 9 tokens in 3 blocks (3 slots unused of 16).
    assert!((s.kv_waste - 3.0 / 16.0).abs() < 1e-9, "{s:?}");
    eng.check_invariants().unwrap();
}

#[test]
fn invalid_batches_are_errors() {
    let model = tiny_model(&TinySpec { ctx_len: 32, ..TinySpec::default() }).unwrap();
    let mut eng = engine(&model, 20, 4);
    eng.add_sequence(1, &[1]).unwrap();
    let e = |seq, tokens: Vec<u32>| StepEntry { seq, tokens, logits: Logits::Last };
    assert!(matches!(eng.step(&StepBatch { entries: vec![e(9, vec![1])] }), Err(EngineError::UnknownSequence(9))));
    assert!(matches!(eng.step(&StepBatch { entries: vec![e(1, vec![])] }), Err(EngineError::InvalidBatch(_))));
    assert!(matches!(
        eng.step(&StepBatch { entries: vec![e(1, vec![1]), e(1, vec![2])] }),
        Err(EngineError::InvalidBatch(_))
    ));
    assert!(matches!(eng.step(&StepBatch { entries: vec![e(1, vec![5000])] }), Err(EngineError::BadToken(5000))));
    assert!(matches!(
        eng.step(&StepBatch { entries: vec![e(1, vec![1; 33])] }),
        Err(EngineError::ContextOverflow { .. })
    ));
    assert!(matches!(eng.add_sequence(1, &[1]), Err(EngineError::DuplicateSequence(1))));
    let mut small =
        Engine::new(model.clone(), EngineConfig { max_batch_tokens: 4, ..EngineConfig::default() }).unwrap();
    small.add_sequence(1, &[1]).unwrap();
    assert!(matches!(small.step(&StepBatch { entries: vec![e(1, vec![1; 5])] }), Err(EngineError::InvalidBatch(_))));
    eng.check_invariants().unwrap();
}

#[test]
fn generation_iterator_respects_max_tokens_and_frees_blocks() {
    let model = tiny_model(&TinySpec::default()).unwrap();
    let tokens: Vec<String> = (0..96).map(|i| format!("<t{i}>")).collect();
    let tok = Tokenizer::new(tokens, &[], &vec![1; 96], None, Some(95), false).unwrap();
    let mut eng = engine(&model, 50, 16);
    let params = SamplingParams { temperature: 0.8, seed: 4, max_tokens: 7, ..Default::default() };
    let run = |eng: &mut Engine| {
        let g = Generation::new(eng, &tok, 1, &[1, 2, 3], params.clone()).unwrap();
        g.map(|t| t.unwrap().id).collect::<Vec<_>>()
    };
    let a = run(&mut eng);
    assert!(a.len() <= 7);
    assert_eq!(eng.stats().live_sequences, 0);
    assert_eq!(run(&mut eng), a, "same seed, same tokens");
    eng.check_invariants().unwrap();
}

#[test]
fn loader_rejects_other_architectures_and_broken_models() {
    use reservoir_engine::gguf::{Bytes, GgufFile, GgufWriter, Value};
    let mut w = GgufWriter::default();
    w.kv("general.architecture", Value::Str("gpt2".into()));
    let f = GgufFile::parse(Bytes::from_vec(w.to_bytes())).unwrap();
    assert!(matches!(Model::load(&f), Err(EngineError::UnsupportedArchitecture(a)) if a == "gpt2"));

    // A valid tiny model with its last tensor cut short fails to parse.
    let bytes = reservoir_engine::test_support::tiny_gguf(&TinySpec::default());
    let cut = bytes[..bytes.len() - 40].to_vec();
    assert!(GgufFile::parse(Bytes::from_vec(cut)).is_err());

    // A missing file is an I/O error, not a panic.
    assert!(matches!(load(std::path::Path::new("/nonexistent/model.gguf")), Err(EngineError::Io(_))));

    // Missing metadata is reported by name.
    let mut w = GgufWriter::default();
    w.kv("general.architecture", Value::Str("llama".into()));
    let f = GgufFile::parse(Bytes::from_vec(w.to_bytes())).unwrap();
    assert!(matches!(Model::load(&f), Err(EngineError::MissingMetadata(_))));
}

#[test]
fn shared_types_are_thread_safe() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<Model>();
    send_sync::<Tokenizer>();
    send_sync::<LoadedModel>();
    send::<Engine>();
}

/// A tokenizer whose token i is the single letter `a + i % 26` (no merges).
fn letter_tokenizer(vocab: usize) -> Tokenizer {
    let tokens: Vec<String> =
        (0..vocab).map(|i| ((b'a' + (i % 26) as u8) as char).to_string() + &"_".repeat(i / 26)).collect();
    Tokenizer::new(tokens, &[], &vec![1; vocab], None, None, false).unwrap()
}

#[test]
fn stop_strings_cut_the_text_and_streamed_pieces_add_up() {
    let model = tiny_model(&TinySpec::default()).unwrap();
    let tok = letter_tokenizer(96);
    let mut eng = engine(&model, 50, 16);
    // First learn what greedy produces, then stop on a 2-char string inside it.
    let params = SamplingParams { max_tokens: 20, ..Default::default() };
    let full: String =
        Generation::new(&mut eng, &tok, 1, &[1, 2, 3], params.clone()).unwrap().map(|t| t.unwrap().text).collect();
    assert!(full.len() >= 6, "{full:?}");
    let stop = full[4..6].to_string();
    let at = full.find(&stop).unwrap();
    let params = SamplingParams { stop_strings: vec![stop.clone()], ..params };
    let mut g = Generation::new(&mut eng, &tok, 2, &[1, 2, 3], params).unwrap();
    let mut streamed = String::new();
    for t in g.by_ref() {
        streamed.push_str(&t.unwrap().text);
    }
    assert_eq!(g.finish, Some(FinishReason::Stop));
    assert_eq!(g.text(), &full[..at]);
    assert_eq!(streamed, &full[..at]);
    drop(g);
    assert_eq!(eng.stats().live_sequences, 0);
    eng.check_invariants().unwrap();
}

mod random_ops {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
        /// Random add / step / remove sequences on a small pool: every call
        /// returns Ok or an Err (out of blocks, unknown sequence, context
        /// overflow), never panics, and the pool stays consistent.
        #[test]
        fn engine_never_panics_and_stays_consistent(
            ops in proptest::collection::vec((0u8..4, 0u64..5, 1usize..12), 1..40)
        ) {
            let model = tiny_model(&TinySpec { ctx_len: 48, n_layers: 1, ..TinySpec::default() }).unwrap();
            let mut eng = engine(&model, 8, 4);
            for (op, seq, n) in ops {
                let tokens: Vec<u32> = (0..n as u32).map(|i| (i * 5 + seq as u32) % 8).collect();
                match op {
                    0 => { let _ = eng.add_sequence(seq, &tokens); }
                    1 | 2 => {
                        let batch = StepBatch { entries: vec![StepEntry { seq, tokens, logits: Logits::Last }] };
                        let before = eng.stats();
                        match eng.step(&batch) {
                            Ok(out) => prop_assert_eq!(out.outputs.len(), 1),
                            Err(EngineError::OutOfBlocks { .. }) => prop_assert_eq!(eng.stats().free_blocks, before.free_blocks),
                            Err(EngineError::UnknownSequence(_) | EngineError::ContextOverflow { .. }) => {}
                            Err(e) => prop_assert!(false, "unexpected error {e}"),
                        }
                    }
                    _ => { let _ = eng.remove_sequence(seq); }
                }
                prop_assert_eq!(eng.check_invariants(), Ok(()));
            }
        }
    }
}

#[test]
fn model_forward_rejects_bad_block_tables() {
    use reservoir_engine::attention::KvStore;
    let model = tiny_model(&TinySpec::default()).unwrap();
    let c = &model.config;
    let mut kv = KvStore::new(c.n_layers, 4, 4, c.kv_dim(), c.head_dim);
    let bad: &[u32] = &[9, 0];
    let short: &[u32] = &[0];
    for table in [bad, short] {
        let r = model.forward(&[1], &[5], &[table], &mut kv, &[0]);
        assert!(matches!(r, Err(EngineError::InvalidBatch(_))), "{table:?}");
    }
    let ok: &[u32] = &[3, 1];
    assert_eq!(model.forward(&[1], &[5], &[ok], &mut kv, &[0]).unwrap().len(), c.vocab_size);
}

#[test]
fn steps_run_between_the_layers_of_a_pending_step_change_nothing() {
    let spec = TinySpec { n_heads: 6, n_kv_heads: 2, seed: 11, ..TinySpec::default() };
    let model = tiny_model(&spec).unwrap();
    let ps = prompts(spec.vocab as u32);
    let (a, b) = (&ps[4], &ps[2]);
    let n_gen = 8;
    let mut eng = engine(&model, 200, 4);
    let want_a = generate_alone(&mut eng, 1, a, n_gen);
    let want_b = generate_alone(&mut eng, 2, b, n_gen);

    // Sequence 10's every step is begun, then sequence 20's whole step runs
    // after `k` of its layers (a different k each time), then it finishes.
    let mut eng = engine(&model, 200, 4);
    eng.add_sequence(10, a).unwrap();
    eng.add_sequence(20, b).unwrap();
    let (mut next_a, mut next_b) = (a.clone(), b.clone());
    let (mut got_a, mut got_b) = (Vec::new(), Vec::new());
    for i in 0..n_gen {
        let mut pending = eng
            .begin_step(&StepBatch { entries: vec![StepEntry { seq: 10, tokens: next_a, logits: Logits::Last }] })
            .unwrap();
        let k = i % (eng.n_layers() + 1);
        assert_eq!(eng.advance(&mut pending, k, &|| false).unwrap(), k == eng.n_layers());
        assert_eq!(pending.layers_done(), k);
        // Asked to pause, a step stops after one more layer.
        if k + 1 < eng.n_layers() {
            assert!(!eng.advance(&mut pending, usize::MAX, &|| true).unwrap());
            assert_eq!(pending.layers_done(), k + 1);
        }
        // The pending step's sequence is off limits until it finishes.
        assert!(eng.remove_sequence(10).is_err());
        let again = StepBatch { entries: vec![StepEntry { seq: 10, tokens: vec![1], logits: Logits::Last }] };
        assert!(eng.step(&again).is_err());
        let out_b = eng
            .step(&StepBatch { entries: vec![StepEntry { seq: 20, tokens: next_b, logits: Logits::Last }] })
            .unwrap();
        let out_a = eng.finish_step(pending).unwrap();
        eng.check_invariants().unwrap();
        let (ta, tb) = (argmax(&out_a.outputs[0].logits), argmax(&out_b.outputs[0].logits));
        got_a.push(ta);
        got_b.push(tb);
        next_a = vec![ta];
        next_b = vec![tb];
    }
    assert_eq!((got_a, got_b), (want_a, want_b));

    // A pending step belongs to the engine that began it.
    let mut other = engine(&model, 200, 4);
    other.add_sequence(10, a).unwrap();
    let pending = other
        .begin_step(&StepBatch { entries: vec![StepEntry { seq: 10, tokens: vec![3], logits: Logits::Last }] })
        .unwrap();
    assert!(eng.finish_step(pending).is_err());
    eng.remove_sequence(10).unwrap();
    eng.remove_sequence(20).unwrap();
    eng.check_invariants().unwrap();
}

/// Failover continues a request elsewhere by prefilling its prompt and the
/// tokens already sent in one go: that must give, bit for bit, the logits
/// the original run computed one decode step at a time, or the continuation
/// drifts from what the client would have got.
#[test]
fn a_continuation_prefilled_in_one_step_has_the_logits_of_decoding_it() {
    for spec in [TinySpec::default(), TinySpec { n_heads: 6, n_kv_heads: 2, seed: 5, ..TinySpec::default() }] {
        let m = tiny_model(&spec).unwrap();
        let mut eng = engine(&m, 128, 16);
        let vocab = m.config.vocab_size as u32;
        let prompt: Vec<u32> = (0..37).map(|j| (j * 13 + 3) % vocab).collect();
        // One decode step per token, keeping each step's logits.
        eng.add_sequence(1, &prompt).unwrap();
        let mut next = prompt.clone();
        let (mut tokens, mut logits) = (Vec::new(), Vec::new());
        for _ in 0..40 {
            let o = eng.step(&StepBatch { entries: vec![StepEntry { seq: 1, tokens: next, logits: Logits::Last }] });
            let l = o.unwrap().outputs.remove(0).logits;
            let t = argmax(&l);
            (next, tokens, logits) = (vec![t], [tokens, vec![t]].concat(), [logits, vec![l]].concat());
        }
        eng.remove_sequence(1).unwrap();
        // The prompt and the first 39 generated tokens in one prefill step,
        // with no prefix cache to share: every position's logits.
        let mut eng = engine(&m, 128, 16);
        let all: Vec<u32> = prompt.iter().chain(&tokens[..39]).copied().collect();
        eng.add_sequence(2, &all).unwrap();
        let o = eng.step(&StepBatch { entries: vec![StepEntry { seq: 2, tokens: all.clone(), logits: Logits::All }] });
        let out = o.unwrap().outputs;
        let vocab = vocab as usize;
        let rows: Vec<&[f32]> = out[0].logits.chunks_exact(vocab).collect();
        assert_eq!(rows.len(), all.len());
        for (i, want) in logits.iter().enumerate() {
            let got = rows[prompt.len() - 1 + i];
            assert!(got.iter().zip(want).all(|(a, b)| a.to_bits() == b.to_bits()), "position {i} differs");
        }
    }
}
