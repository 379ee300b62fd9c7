"""Engine benchmark: prefill and decode throughput, continuous batching at 1/4/16 concurrent requests,
time to first token, peak RSS, against a naive full-recompute loop in the same run.

    python bench/engine_bench.py                   # bundled demo model (or a fixture) + a random d12 model
    python bench/engine_bench.py --models d12 --new 32

Prints a table per model and ends with one JSON line. Figures are measured, never assumed; compare ratios
within one run (machines are noisy)."""
import argparse, json, os, resource, statistics, sys, threading, time
from pathlib import Path
import torch
from nanochat.checkpoint import load_model, find_checkpoint, CheckpointError
from nanochat.engine import Engine, BatchEngine
from nanochat.model import GPT, GPTConfig, KVCache
from nanochat.sampler import SamplingParams

ROOT = Path(__file__).resolve().parent.parent

def small_model():
    "The bundled demo model, or the largest upstream fixture when it is missing"
    try: return ('demo',) + load_model(device='cpu')[:2]
    except CheckpointError:
        m, t, _ = load_model(ROOT / 'tests/fixtures/upstream/E4-2026-07/gqa-window', device='cpu')
        return ('fixture-E4-gqa-window', m, t)

def d12_model(tok_from):
    "A randomly initialised d12-shaped model (depth 12, width 768) over the given tokenizer's vocab"
    cfg = GPTConfig(sequence_len=1024, vocab_size=tok_from.get_vocab_size(), n_layer=12, n_head=6, n_kv_head=6, n_embd=768)
    torch.manual_seed(0)
    m = GPT(cfg); m.init_weights()
    with torch.no_grad():
        for p in m.parameters(): p.add_(torch.randn_like(p) * 0.02)
    return m.eval(), tok_from

def prompt_ids(tok, n, vocab):
    ids = tok.encode('To be, or not to be, that is the question: whether tis nobler in the mind to suffer ' * 40)
    ids = [tok.get_bos_token_id()] + [i % vocab for i in ids]
    return ids[:n]

NO_STOP = None

@torch.inference_mode()
def bare_decode_ms(model, ctx, reps=20):
    "One batch-1, one-token forward with a KV cache at context `ctx`: the floor for per-token time"
    cache = KVCache.for_model(model, 1, ctx + reps + 2)
    model(torch.zeros(1, ctx, dtype=torch.long), kv_cache=cache)
    x = torch.zeros(1, 1, dtype=torch.long)
    model(x, kv_cache=cache)
    times = []
    for _ in range(reps):
        t = time.perf_counter(); model(x, kv_cache=cache); times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000          # the median, like the engine's per-token figure

@torch.inference_mode()
def prefill_tps(model, n, reps=3):
    cache = KVCache.for_model(model, 1, n + 1)
    ids = torch.randint(0, model.config.vocab_size, (1, n))
    best = 0
    for _ in range(reps):
        cache.reset(); t = time.perf_counter(); model(ids, kv_cache=cache, slots=torch.tensor([0])); best = max(best, n / (time.perf_counter() - t))
    return best

def single_stream(model, tok, prompt, new):
    "Engine decode tokens/s for one request (after its prefill) and per-token ms"
    eng = Engine(model, tok)
    list(eng.stream(prompt[:8], max_tokens=2, temperature=0))     # warm-up
    times = []
    for ev in eng.stream(prompt, max_tokens=new, params=SamplingParams(temperature=0.8, seed=0, logit_bias=ban_ends(tok))):
        times.append(time.perf_counter())
    gaps = [b - a for a, b in zip(times, times[1:])]
    return len(gaps) / sum(gaps), statistics.median(gaps) * 1000

def ban_ends(tok):
    "Keep random models from ending early, so every run generates the full budget"
    return {tok.encode_special('<|assistant_end|>'): -100.0, tok.get_bos_token_id(): -100.0}

def concurrent(model, tok, prompt, new, k):
    """Aggregate decode tokens/s with k simultaneous requests through the BatchEngine, measured over the
    steady-state window in which all k are decoding (prefills excluded), and each request's TTFT"""
    be = BatchEngine(model, tok, n_slots=max(k, 1), max_queue=64).start()
    try:
        list(be.submit(prompt[:8], max_tokens=2))                   # warm-up
        t0 = time.perf_counter()
        reqs = [be.submit(prompt, max_tokens=new, params=SamplingParams(temperature=0.8, seed=i, logit_bias=ban_ends(tok))) for i in range(k)]
        stamps = [[] for _ in range(k)]
        def drain(i):
            for ev in reqs[i]:
                if ev.token is not None: stamps[i].append(time.perf_counter() - t0)
        ths = [threading.Thread(target=drain, args=(i,)) for i in range(k)]
        for t in ths: t.start()
        for t in ths: t.join()
    finally: be.stop()
    first = [s[0] for s in stamps]
    lo, hi = max(first), min(s[-1] for s in stamps)
    if hi - lo < 1e-3: lo, hi = 0.0, max(s[-1] for s in stamps)   # no common window (k=1): whole run
    n = sum(1 for s in stamps for t in s if lo < t <= hi)
    return n / (hi - lo), first

@torch.inference_mode()
def naive(model, prompt, new):
    "Full recompute every step, no cache: tokens/s"
    ids = list(prompt); t = time.perf_counter()
    for _ in range(new):
        logits = model(torch.tensor([ids]))[0, -1]
        ids.append(int(torch.multinomial(torch.softmax(logits / 0.8, -1), 1)))
    return new / (time.perf_counter() - t)

def pct(xs, q): xs = sorted(xs); return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]

def bench(name, model, tok, plen, new, conc):
    V = model.config.vocab_size
    prompt = prompt_ids(tok, plen, V)
    r = dict(model=name, params=sum(p.numel() for p in model.parameters()), vocab=V, prompt_tokens=len(prompt), new_tokens=new,
             threads=torch.get_num_threads())
    r['prefill_tok_s'] = round(prefill_tps(model, len(prompt)), 1)
    r['bare_forward_ms'] = round(bare_decode_ms(model, len(prompt) + new // 2), 3)
    tps, ms = single_stream(model, tok, prompt, new)
    r['single_stream_tok_s'], r['single_stream_ms_per_tok'] = round(tps, 1), round(ms, 3)
    r['overhead_vs_bare_forward'] = round(ms / r['bare_forward_ms'], 3)
    for k in conc:
        agg, first = concurrent(model, tok, prompt, new, k)
        r[f'aggregate_tok_s@{k}'] = round(agg, 1)
        if k == max(conc): r[f'ttft_p50_s@{k}'], r[f'ttft_p95_s@{k}'] = round(pct(first, .5), 3), round(pct(first, .95), 3)
    r[f'speedup_aggregate@{max(conc)}_vs_single'] = round(r[f'aggregate_tok_s@{max(conc)}'] / r['single_stream_tok_s'], 2)
    r['naive_recompute_tok_s'] = round(naive(model, prompt, new), 1)
    r['speedup_single_vs_naive'] = round(r['single_stream_tok_s'] / r['naive_recompute_tok_s'], 2)
    r['peak_rss_mb'] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return r

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--models', default='small,d12', help='comma list of: small (demo or fixture), d12')
    ap.add_argument('--prompt', type=int, default=128, help='prompt tokens')
    ap.add_argument('--new', type=int, default=48, help='tokens generated per request')
    ap.add_argument('--concurrency', default='1,4,16')
    ap.add_argument('--threads', type=int, default=None, help='torch threads (default: torch decides)')
    a = ap.parse_args(argv)
    if a.threads: torch.set_num_threads(a.threads)
    conc = [int(x) for x in a.concurrency.split(',')]
    name, sm, stok = small_model()
    out = []
    for which in a.models.split(','):
        if which == 'small': r = bench(name, sm, stok, min(a.prompt, sm.config.sequence_len // 2), a.new, conc)
        elif which == 'd12': m, t = d12_model(stok); r = bench('random-d12', m, t, a.prompt, a.new, conc)
        else: sys.exit(f'unknown model {which!r}: use small or d12')
        out.append(r)
        print(f"\n== {r['model']} ({r['params'] / 1e6:.1f}M params, prompt {r['prompt_tokens']}, {r['new_tokens']} new tokens, {r['threads']} threads)")
        for k, v in r.items():
            if k not in ('model',): print(f'  {k:<36} {v}')
    print(json.dumps({'engine_bench': out}))

if __name__ == '__main__': main()
