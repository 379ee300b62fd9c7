"""Engine speed figures of issue #12, as ratios within one run (machines are noisy: compare within a run).

    python bench/engine_speed.py                          # demo model + random d12-shaped model, 1 torch thread
    python bench/engine_speed.py --models demo --new 32   # quicker
    python bench/engine_speed.py --http-model d12         # the 16-client HTTP figure on d12 too (slow on 2 cores)

Per model: memory copy bandwidth and the decode roofline (weight bytes streamed per step / bandwidth; also against
the read bandwidth of a plain reduction, since decode only reads its weights), one bare
forward of one token vs the engine's per-token time (single stream), one bare decode step of 16 rows (the most
batching can gain in decode alone), the fp32 `Linear` on oneDNN vs MKL (bare forward, 16-row step, a 1024-token
prefill, interleaved in this run), prefill tok/s at 64 and 1024 tokens (the
engine's time to first token with the prefix cache off), int8 vs fp32 decode and greedy top-1 agreement, a 5-turn
chat's time to first token per turn with and without the prefix cache. Through `nanochat serve` (a subprocess on
a free loopback port): 16 concurrent streaming clients vs the same 16 one at a time (aggregate tok/s, TTFT
p50/p95 vs a lone client; one keep-alive client, every request its own prompt) and the server's RSS at start and
under load against the weights' size, also counted over a bare `import torch` process and over one that imported
everything the server imports but loaded no model. Prints a table per model and ends with one JSON line."""
from concurrent.futures import ThreadPoolExecutor
import argparse, copy, json, os, shutil, socket, statistics, subprocess, sys, tempfile, threading, time
from pathlib import Path
import torch
from nanochat.checkpoint import load_model, save_checkpoint
from nanochat.engine import Engine, BatchEngine
from nanochat.model import GPT, GPTConfig, KVCache, Packed, quantize_model, onednn_linear_ok
from nanochat.sampler import SamplingParams

ROOT = Path(__file__).resolve().parent.parent

def d12_model(tok):
    "A random d12-shaped E4 model (depth 12, width 768) over the demo tokenizer's vocab"
    cfg = GPTConfig(sequence_len=2048, vocab_size=tok.get_vocab_size(), n_layer=12, n_head=6, n_kv_head=6, n_embd=768)
    torch.manual_seed(0)
    m = GPT(cfg); m.init_weights()
    with torch.no_grad():
        for p in m.parameters(): p.add_(torch.randn_like(p) * 0.02)
    return m.eval()

def text_prompt(tok, n):
    ids = [tok.get_bos_token_id()] + tok.encode('To be, or not to be, that is the question: whether tis nobler in the mind to suffer ' * 200)
    return ids[:n]

def ban_ends(tok): return {tok.encode_special('<|assistant_end|>'): -100.0, tok.get_bos_token_id(): -100.0}

def median(xs): return statistics.median(xs)
def pct(xs, q): xs = sorted(xs); return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]

def copy_bandwidth(mb=256, reps=7):
    "Bytes per second moved by a large tensor copy (read + write), the best of `reps`"
    a = torch.empty(mb * 2**20 // 4); b = torch.empty_like(a); a.fill_(1); b.copy_(a)
    best = min(_t(lambda: b.copy_(a)) for _ in range(reps))
    return 2 * a.nbytes / best

def read_bandwidth(mb=256, reps=7):
    "Bytes per second read by a reduction over a large tensor (what a decode step does with its weights), the best of `reps`"
    a = torch.empty(mb * 2**20 // 4); a.fill_(1); a.sum()
    return a.nbytes / min(_t(lambda: a.sum()) for _ in range(reps))

def _t(f):
    t = time.perf_counter(); f(); return time.perf_counter() - t

def streamed_bytes(model):
    "Bytes one decode step must read: every Linear weight (the embeddings are looked up, one row each)"
    n = 0
    for mod in model.modules():
        if isinstance(mod, torch.nn.Linear): n += mod.weight.nbytes
        elif hasattr(mod, 'weight_nbytes'): n += mod.weight_nbytes                      # Int8Linear
    return n

@torch.inference_mode()
def bare_forward_ms(model, ctx, reps=30):
    "One forward of one token for one sequence at context `ctx`, through the same packed call the engine makes"
    cache = KVCache.for_model(model, 1, ctx + reps + 8)
    model(torch.zeros(1, ctx, dtype=torch.long), kv_cache=cache)
    x = torch.zeros(1, dtype=torch.long); at = torch.tensor([0])
    for _ in range(3): model.forward_packed(x, Packed(cache, 1, []), at)
    return median([_t(lambda: model.forward_packed(x, Packed(cache, 1, []), at)) for _ in range(reps)]) * 1000

@torch.inference_mode()
def bare_batch_step_ms(model, rows, ctx, reps=10):
    "One decode step of `rows` sequences at context `ctx` (the packed call the engine makes), median ms"
    cache = KVCache.for_model(model, rows, ctx + reps + 8)
    model(torch.zeros(rows, ctx, dtype=torch.long), kv_cache=cache)
    x, at = torch.zeros(rows, dtype=torch.long), torch.arange(rows)
    for _ in range(2): model.forward_packed(x, Packed(cache, rows, []), at)
    return median([_t(lambda: model.forward_packed(x, Packed(cache, rows, []), at)) for _ in range(reps)]) * 1000

@torch.inference_mode()
def bare_prefill_ms(model, n, reps=3):
    "One forward over an `n`-token prompt, median ms"
    ids = torch.arange(n)[None] % model.config.vocab_size
    model(ids)
    return median([_t(lambda: model(ids)) for _ in range(reps)]) * 1000

def linear_backend(onednn):
    "Force the fp32 `Linear` backend: oneDNN (True) or MKL through F.linear (False)"
    os.environ['NANOCHAT_ONEDNN'] = '1' if onednn else '0'
    onednn_linear_ok.cache_clear()

def backend_figures(model, ctx, n_prefill, reps=3):
    """Bare forward, 16-row step and prefill under MKL and oneDNN, interleaved, which goes first alternating
    (the second of a pair ran ~3-6% slower with both on MKL): best of `reps` each, oneDNN's speed-up"""
    res = {True: [], False: []}
    try:
        for r in range(reps):
            for b in ((False, True) if r % 2 == 0 else (True, False)):
                linear_backend(b)
                res[b].append((bare_forward_ms(model, ctx, reps=10), bare_batch_step_ms(model, 16, ctx, reps=5), bare_prefill_ms(model, n_prefill, reps=1)))
    finally: linear_backend(True)
    best = {b: [min(x[i] for x in v) for i in range(3)] for b, v in res.items()}
    return {f'mkl_{k}': round(best[False][i], 2) for i, k in enumerate(('bare_forward_ms', 'step16_ms', f'prefill_{n_prefill}_ms'))} | {
            f'onednn_vs_mkl_{k}': round(best[False][i] / best[True][i], 2) for i, k in enumerate(('decode', 'step16', f'prefill_{n_prefill}'))}

def engine_decode(model, tok, prompt, new):
    "Engine single-stream decode: median ms per token (after the first) and tokens/s"
    eng = Engine(model, tok, prefix_cache_tokens=0)
    list(eng.stream(prompt[:8], max_tokens=3, temperature=0))
    ts = [time.perf_counter() for _ in eng.stream(prompt, max_tokens=new, params=SamplingParams(temperature=0, logit_bias=ban_ends(tok)))]
    gaps = [b - a for a, b in zip(ts, ts[1:])]
    return median(gaps) * 1000, len(gaps) / sum(gaps)

def engine_ttft(model, tok, prompt, reps=3):
    "Engine time to first token (prefill + first sample), prefix cache off: the median of `reps`"
    eng = Engine(model, tok, prefix_cache_tokens=0)
    list(eng.stream(prompt[:8], max_tokens=1, temperature=0))
    out = []
    for _ in range(reps):
        t = time.perf_counter(); next(iter(eng.stream(prompt, max_tokens=1, temperature=0))); out.append(time.perf_counter() - t)
    return median(out)

@torch.inference_mode()
def agreement(a, b, tok, n_seq=12, length=96):
    "Greedy top-1 agreement and max |logit diff| of model b against a, on a's own greedy continuations"
    agree = total = 0; worst = 0.0
    for i in range(n_seq):
        ids = text_prompt(tok, 4 + 6 * i)
        for _ in range(length - len(ids)): ids.append(int(a(torch.tensor([ids]))[0, -1].argmax()))
        la, lb = a(torch.tensor([ids]))[0], b(torch.tensor([ids]))[0]
        worst = max(worst, (la - lb).abs().max().item()); agree += int((la.argmax(-1) == lb.argmax(-1)).sum()); total += len(ids)
    return agree / total, worst

def chat_turns(model, tok, prefix_cache, turns=5, reply=24):
    "TTFT of each turn of a chat (a long system-like first message; each turn resends the whole conversation)"
    be = BatchEngine(model, tok, n_slots=2, prefix_cache_tokens=None if prefix_cache else 0).start()
    msgs, out = [], []
    small = model.config.sequence_len <= 256
    sys_text = 'You are a helpful assistant. ' * (3 if small else 40)
    reply = 12 if small else reply
    try:
        list(be.submit(text_prompt(tok, 8), max_tokens=2))
        for k in range(turns):
            msgs.append({'role': 'user', 'content': (sys_text if k == 0 else '') + f'Question number {k}: tell me more about topic {k}.'})
            ids = tok.render_for_completion({'messages': msgs + [{'role': 'assistant', 'content': ''}]})
            r = be.submit(ids, max_tokens=reply, params=SamplingParams(temperature=0, logit_bias=ban_ends(tok)))
            toks = [e.token for e in r if e.token is not None]
            out.append(r.t_first - r.t_submit)
            msgs.append({'role': 'assistant', 'content': tok.decode(toks)})
    finally: be.stop()
    return out, len(ids)

# ---- HTTP through `nanochat serve` ----
def free_port():
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); return s.getsockname()[1]

def rss_mb(pid, field='VmRSS'):
    for line in Path(f'/proc/{pid}/status').read_text().splitlines():
        if line.startswith(field + ':'): return int(line.split()[1]) / 1024
    return float('nan')

MODEL, CLIENT = {}, {}

def client(port):
    """One shared HTTP client per server (keep-alive connections, as an OpenAI SDK client): a fresh `httpx` client per
    request builds its own TLS context (tens of ms of CPU, under the GIL), which would be timed as the server's TTFT"""
    import httpx
    if port not in CLIENT: CLIENT[port] = httpx.Client(timeout=600, limits=httpx.Limits(max_connections=64, max_keepalive_connections=64))
    return CLIENT[port]

def stream_one(port, prompt_text, new, ban):
    "One streaming /v1/completions request: (time to first token, token count, seconds)"
    c = client(port)
    if port not in MODEL: MODEL[port] = c.get(f'http://127.0.0.1:{port}/v1/models', timeout=10).json()['data'][0]['id']
    body = dict(model=MODEL[port], prompt=prompt_text, max_tokens=new, temperature=0, stream=True, logit_bias={str(k): v for k, v in ban.items()})
    t0 = time.perf_counter(); first = None; n = 0
    with c.stream('POST', f'http://127.0.0.1:{port}/v1/completions', json=body) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if not line.startswith('data: ') or line == 'data: [DONE]': continue
            ch = json.loads(line[6:])['choices']
            if ch and ch[0].get('text'):
                n += 1
                if first is None: first = time.perf_counter() - t0
    return first, n, time.perf_counter() - t0

def baseline_rss_mb(code):
    "RSS (MB) of a fresh interpreter after running `code`: what the process holds before any model is loaded"
    probe = code + "\nprint([l for l in open('/proc/self/status') if l.startswith('VmRSS:')][0].split()[1])"
    out = subprocess.run([sys.executable, '-c', probe], capture_output=True, text=True, env={**os.environ, 'OMP_NUM_THREADS': '1'})
    return int(out.stdout.split()[-1]) / 1024

def http_bench(model_dir, tok, slots=16, clients=16, new=64, plen=64, extra=()):
    import httpx
    port = free_port()
    cmd = [str(Path(sys.executable).parent / 'nanochat'), 'serve', '--port', str(port), '--no-rate-limit', '--slots', str(slots),
           '--log-level', 'warning', *extra] + (['--model', str(model_dir)] if model_dir else [])
    env = {**os.environ, 'OMP_NUM_THREADS': str(torch.get_num_threads())}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 600
        while time.time() < deadline:
            try:
                h = httpx.get(f'http://127.0.0.1:{port}/health', timeout=5).json()
                if h.get('status') == 'ok' or h.get('ready') or h.get('model_loaded'):
                    break
            except Exception: pass
            if proc.poll() is not None: raise RuntimeError(f'server exited: {proc.stderr.read()[-2000:]}')
            time.sleep(0.5)
        time.sleep(1.0)
        r = dict(rss_start_mb=round(rss_mb(proc.pid), 1), rss_bare_torch_mb=round(baseline_rss_mb('import torch'), 1),
                 rss_server_imports_mb=round(baseline_rss_mb('import torch, nanochat.server, nanochat.checkpoint, nanochat.engine, uvicorn'), 1))
        prompt_text = tok.decode(text_prompt(tok, plen)[1:])
        ban = ban_ends(tok)
        ask = lambda i: f'Request {i}. ' + prompt_text    # every request its own prompt: no prefix-cache hits between them
        for i in range(2): stream_one(port, ask(i)[:40], 4, ban)          # warm-up (imports, first-call paths)
        lone = [stream_one(port, ask(100 + i), new, ban) for i in range(3)]
        t = time.perf_counter(); seq = [stream_one(port, ask(200 + i), new, ban) for i in range(clients)]; seq_s = time.perf_counter() - t
        res = [None] * clients
        def go(i): res[i] = stream_one(port, ask(300 + i), new, ban)
        ths = [threading.Thread(target=go, args=(i,)) for i in range(clients)]
        list(ThreadPoolExecutor(clients).map(lambda _: client(port).get(f'http://127.0.0.1:{port}/health'), range(clients)))   # open the connections
        t = time.perf_counter()
        for th in ths: th.start()
        for th in ths: th.join()
        conc_s = time.perf_counter() - t
        r['rss_under_load_peak_mb'] = round(rss_mb(proc.pid, 'VmHWM'), 1)
        stats = httpx.get(f'http://127.0.0.1:{port}/stats', timeout=10).json()
        toks_seq, toks_conc = sum(x[1] for x in seq), sum(x[1] for x in res)
        r.update(sequential_tok_s=round(toks_seq / seq_s, 1), concurrent_tok_s=round(toks_conc / conc_s, 1))
        r['concurrent_vs_sequential'] = round(r['concurrent_tok_s'] / r['sequential_tok_s'], 2)
        lone_ttft = median([x[0] for x in lone])
        ft = [x[0] for x in res]
        r.update(ttft_lone_s=round(lone_ttft, 3), ttft_p50_s=round(pct(ft, .5), 3), ttft_p95_s=round(pct(ft, .95), 3))
        r['ttft_p95_vs_lone'] = round(pct(ft, .95) / lone_ttft, 2)
        r['server_kv_cache_tokens_peak'] = stats.get('kv_cache_tokens_peak')
        return r
    finally:
        if port in CLIENT: CLIENT.pop(port).close()
        proc.terminate()
        try: proc.wait(timeout=20)
        except subprocess.TimeoutExpired: proc.kill()

def bench_model(name, model, tok, a, model_dir=None, http=False):
    r = dict(model=name, params_m=round(sum(p.numel() for p in model.parameters()) / 1e6, 1), threads=torch.get_num_threads())
    bw = copy_bandwidth()
    sb = streamed_bytes(model)
    r['copy_bandwidth_gb_s'] = round(bw / 1e9, 2)
    r['weights_streamed_per_step_mb'] = round(sb / 1e6, 1)
    roof_ms = sb / bw * 1000
    prompt = text_prompt(tok, 64)
    ctx = 64 + a.new // 2                      # the context halfway through the single-stream decode
    r['bare_forward_ms'] = round(bare_forward_ms(model, ctx), 3)
    ms, tps = engine_decode(model, tok, prompt, a.new)
    r.update(engine_ms_per_token=round(ms, 3), engine_decode_tok_s=round(tps, 1))
    r['engine_step_vs_bare_forward'] = round(ms / r['bare_forward_ms'], 3)
    r['roofline_ms_per_token'] = round(roof_ms, 3)
    r['decode_pct_of_roofline'] = round(100 * roof_ms / ms, 1)
    rbw = read_bandwidth()                      # the copy figure counts read + write; decode only reads its weights
    r['read_bandwidth_gb_s'] = round(rbw / 1e9, 2)
    r['decode_pct_of_read_roofline'] = round(100 * sb / rbw * 1000 / ms, 1)
    r['bare_step16_ms'] = round(bare_batch_step_ms(model, 16, ctx), 3)      # what batching can gain in decode alone
    r['decode16_vs_single_tok_s'] = round(16 * r['bare_forward_ms'] / r['bare_step16_ms'], 2)
    if onednn_linear_ok(): r.update(backend_figures(model, ctx, min(1024, model.config.sequence_len - 8), reps=4))
    for n in (64, 1024):
        n = min(n, model.config.sequence_len - 8)
        s = engine_ttft(model, tok, text_prompt(tok, n), reps=3 if n <= 64 else 1)
        r[f'prefill_{n}_ttft_s'], r[f'prefill_{n}_tok_s'] = round(s, 3), round(n / s, 1)
    if not a.no_int8:
        q = quantize_model(copy.deepcopy(model), 'int8')
        qms, qtps = engine_decode(q, tok, prompt, a.new)
        r.update(int8_ms_per_token=round(qms, 3), int8_decode_tok_s=round(qtps, 1), int8_vs_fp32_decode=round(ms / qms, 2))
        ag, worst = agreement(model, q, tok)
        r.update(int8_greedy_top1_agreement=round(ag, 4), int8_max_abs_logit_diff=round(worst, 4))
        del q
    for pc in (False, True):
        tt, plen = chat_turns(model, tok, pc)
        key = 'with' if pc else 'without'
        r[f'chat_ttft_{key}_prefix_cache_s'] = [round(x, 3) for x in tt]
        r[f'chat_turn5_vs_turn1_{key}_prefix_cache'] = round(tt[-1] / tt[0], 2)
    r['chat_turn5_prompt_tokens'] = plen
    if http:
        r['weights_mb'] = round(sum(p.nbytes for p in model.parameters()) / 1e6, 1)
        h = http_bench(model_dir, tok, new=a.http_new, clients=a.clients, slots=a.clients)
        r.update({f'http_{k}': v for k, v in h.items()})
        r['http_rss_start_vs_weights'] = round(h['rss_start_mb'] / r['weights_mb'], 2)
        # what the server allocates, against the weights: its RSS over a bare `import torch` process, and over a
        # process that imported everything the server imports but loaded no model
        r['http_rss_start_over_torch_vs_weights'] = round((h['rss_start_mb'] - h['rss_bare_torch_mb']) / r['weights_mb'], 2)
        r['http_rss_start_over_imports_vs_weights'] = round((h['rss_start_mb'] - h['rss_server_imports_mb']) / r['weights_mb'], 2)
    return r

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--models', default='demo,d12')
    ap.add_argument('--http-model', default='demo', help='which models get the HTTP figures: demo, d12, both, none')
    ap.add_argument('--new', type=int, default=64, help='tokens decoded for the single-stream figures')
    ap.add_argument('--http-new', type=int, default=32, help='tokens per HTTP client')
    ap.add_argument('--clients', type=int, default=16)
    ap.add_argument('--threads', type=int, default=1, help='torch threads (default 1, as the issue measures)')
    ap.add_argument('--no-int8', action='store_true')
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    demo, tok, _ = load_model(device='cpu', dtype=torch.float32)
    out, tmp = [], Path(tempfile.mkdtemp(prefix='nanochat-bench-'))
    try:
        for which in a.models.split(','):
            http = a.http_model in (which, 'both')
            if which == 'demo': r = bench_model('demo', demo, tok, a, None, http)
            elif which == 'd12':
                m = d12_model(tok); d = None
                if http: save_checkpoint(tmp, m, tok, step=1); d = tmp
                r = bench_model('random-d12', m, tok, a, d, http)
            else: sys.exit(f'unknown model {which!r}: use demo or d12')
            out.append(r)
            print(f"\n== {r['model']} ({r['params_m']}M params, {r['threads']} torch thread(s))", flush=True)
            for k, v in r.items():
                if k != 'model': print(f'  {k:<42} {v}', flush=True)
    finally: shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps({'engine_speed': out}))

if __name__ == '__main__': main()
