"""Driver of scripts/bench-vs-llamacpp: Reservoir's engine against llama.cpp
(llama-cpp-python's low-level bindings) on the same GGUF and thread count.

Both sides measure the same things the same way: prefill of one prompt of
`--prefill-tokens` tokens in one forward pass; greedy decode of `--steps`
tokens per sequence for 1, 8, 32 and 64 sequences, each with a distinct
16-token prompt prefilled first (untimed); aggregate tokens/s. The engines
alternate round by round, so a shared machine's load drifts over both; the
best round of each figure is reported, as noise only ever slows a run down.
"""

import argparse
import ctypes
import json
import os
import subprocess
import sys
import time

import numpy as np
import llama_cpp as L

BATCHES = (1, 8, 32, 64)
PROMPT_LEN = 16
EXTRA_BUFTS = True
KEYS = ["prefill_tps"] + [f"decode_tps_b{b}" for b in BATCHES]


@L.llama_log_callback
def _quiet_log(level, text, user_data):
    """llama.cpp logs every tensor and buffer while loading: not our output."""


class LlamaCpp:
    """One model, two contexts: a single-sequence one (prefill, batch 1) and
    one with a KV stream per sequence for the parallel decode runs, as
    llama.cpp's own batched-bench sets it up (non-unified KV)."""

    def __init__(self, model_path, threads, prefill_tokens, steps):
        L.llama_log_set(_quiet_log, ctypes.c_void_p(0))
        L.llama_backend_init()
        mp = L.llama_model_default_params()
        mp.n_gpu_layers = 0
        mp.use_extra_bufts = EXTRA_BUFTS
        self.model = L.llama_model_load_from_file(model_path.encode(), mp)
        if not self.model:
            sys.exit(f"llama.cpp could not load {model_path}")
        self.n_vocab = L.llama_vocab_n_tokens(L.llama_model_get_vocab(self.model))
        self.threads, self.prefill_tokens, self.steps = threads, prefill_tokens, steps
        per_seq = PROMPT_LEN + steps + 16
        self.single = self._context(n_seq=1, n_ctx=max(prefill_tokens, per_seq) + 16, n_batch=prefill_tokens)
        n_max = max(BATCHES)
        self.parallel = self._context(n_seq=n_max, n_ctx=n_max * per_seq, n_batch=n_max * PROMPT_LEN)
        self.batch = L.llama_batch_init(max(prefill_tokens, n_max * PROMPT_LEN), 0, 1)

    def _context(self, n_seq, n_ctx, n_batch):
        cp = L.llama_context_default_params()
        cp.n_ctx, cp.n_batch, cp.n_ubatch, cp.n_seq_max = n_ctx, n_batch, n_batch, n_seq
        cp.n_threads = cp.n_threads_batch = self.threads
        cp.no_perf = True
        if hasattr(cp, "kv_unified"):
            cp.kv_unified = False
        ctx = L.llama_init_from_model(self.model, cp)
        if not ctx:
            sys.exit("llama.cpp could not create a context")
        return ctx

    def _fill(self, entries):
        """entries: (token, pos, seq, wants_logits); returns output rows."""
        b = self.batch
        b.n_tokens = len(entries)
        rows = []
        for i, (tok, pos, seq, logits) in enumerate(entries):
            b.token[i], b.pos[i], b.n_seq_id[i] = tok, pos, 1
            b.seq_id[i][0] = seq
            b.logits[i] = 1 if logits else 0
            if logits:
                rows.append(i)
        return rows

    def _decode(self, ctx):
        rc = L.llama_decode(ctx, self.batch)
        if rc != 0:
            sys.exit(f"llama_decode failed: {rc}")
        L.llama_synchronize(ctx)

    def _argmax(self, ctx, row):
        p = L.llama_get_logits_ith(ctx, row)
        return int(np.ctypeslib.as_array(p, shape=(self.n_vocab,)).argmax())

    def _clear(self, ctx):
        L.llama_memory_clear(L.llama_get_memory(ctx), True)

    def prefill_tps(self):
        ctx = self.single
        self._clear(ctx)
        n = self.prefill_tokens
        # Same token pattern as Reservoir's bench::run prefill prompt.
        toks = [(i * 7919 + 13) % self.n_vocab for i in range(n)]
        self._fill([(t, i, 0, i == n - 1) for i, t in enumerate(toks)])
        t0 = time.perf_counter()
        self._decode(ctx)
        return n / (time.perf_counter() - t0)

    def decode_tps(self, n_seq):
        ctx = self.single if n_seq == 1 else self.parallel
        self._clear(ctx)
        entries = []
        for s in range(n_seq):
            sid = s + 1
            prompt = [(i * 31 + sid * 101) % self.n_vocab for i in range(PROMPT_LEN)]
            entries += [(t, i, s, i == PROMPT_LEN - 1) for i, t in enumerate(prompt)]
        rows = self._fill(entries)
        self._decode(ctx)
        next_tok = [self._argmax(ctx, r) for r in rows]
        t0 = time.perf_counter()
        for step in range(self.steps):
            rows = self._fill([(next_tok[s], PROMPT_LEN + step, s, True) for s in range(n_seq)])
            self._decode(ctx)
            next_tok = [self._argmax(ctx, r) for r in rows]
        return n_seq * self.steps / (time.perf_counter() - t0)

    def run(self):
        # Warm-up: page faults on the weights, thread pool start.
        self.decode_tps(1)
        out = {"prefill_tps": self.prefill_tps()}
        for b in BATCHES:
            out[f"decode_tps_b{b}"] = self.decode_tps(b)
        return out


def reservoir(binary, threads, prefill_tokens, steps):
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads))
    cmd = [binary, "bench", "engine", "--rounds", "1",
           "--prefill-tokens", str(prefill_tokens), "--decode-steps", str(steps)]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{p.stdout}\n{p.stderr}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--reservoir", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--prefill-tokens", type=int, default=256)
    ap.add_argument("--steps", type=int, default=128)
    a = ap.parse_args()

    print(f"model {a.model}; {a.threads} threads; prefill {a.prefill_tokens} tokens; "
          f"decode {a.steps} tokens per sequence after a {PROMPT_LEN}-token prompt; {a.rounds} rounds")
    print(f"llama-cpp-python {L.__version__}; system info: "
          f"{L.llama_print_system_info().decode(errors='replace').strip()}")
    llama = LlamaCpp(a.model, a.threads, a.prefill_tokens, a.steps)
    runs = {"reservoir": [], "llama.cpp": []}
    for r in range(1, a.rounds + 1):
        # Alternate which engine goes first so neither always gets the
        # quieter (or the warmer) half of a round.
        order = ["reservoir", "llama.cpp"] if r % 2 else ["llama.cpp", "reservoir"]
        for name in order:
            t0 = time.perf_counter()
            res = (reservoir(a.reservoir, a.threads, a.prefill_tokens, a.steps)
                   if name == "reservoir" else llama.run())
            runs[name].append(res)
            figs = ", ".join(f"{k} {res[k]:.1f}" for k in KEYS)
            print(f"round {r} {name:>9} ({time.perf_counter() - t0:.0f} s): {figs}", flush=True)

    best = {n: {k: max(run[k] for run in rs) for k in KEYS} for n, rs in runs.items()}
    print()
    print(f"{'best of ' + str(a.rounds):<16}{'reservoir':>12}{'llama.cpp':>12}{'ratio':>8}")
    for k in KEYS:
        rv, lv = best["reservoir"][k], best["llama.cpp"][k]
        print(f"{k:<16}{rv:>12.1f}{lv:>12.1f}{rv / lv:>8.2f}")
    print("ratio = reservoir / llama.cpp (above 1: Reservoir is faster)")
    best = {n: {k: round(v, 1) for k, v in figs.items()} for n, figs in best.items()}
    print(json.dumps({"reservoir": best["reservoir"], "llama_cpp": best["llama.cpp"],
                      "rss_mb_reservoir": max(run.get("rss_mb", 0) for run in runs["reservoir"])}))


if __name__ == "__main__":
    main()
