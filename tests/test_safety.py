"""Integration tests of `nanochat.safety` (safety-gen) against a fault-injecting OpenAI-compatible fake teacher
(tests/fake_teacher.py) on loopback: a 500-conversation run, kill -9 and resume, near-duplicates and the judge,
the probe and response_format downgrades, the turns mode, an unreachable teacher (before and during a run),
Ctrl-C and SIGTERM, the API key never leaking, the rate limit, mixing, and `nanochat serve` as a teacher.
The real-model tests (llama.cpp) are in tests/test_teacher_llamacpp.py."""
import importlib.util, json, os, signal, socket, subprocess, sys, time, warnings
from collections import Counter
from pathlib import Path

import httpx
import pytest

from nanochat.safety import (CATEGORIES, CARD_FILE, CONV_FILE, META_FILE, REJ_FILE, RUNS_FILE, GenConfig, NearDupIndex,
                             Teacher, check_structure, generate_safety_data, is_refusal, mix_cli, points_to_help, safety_gen_cli)

with warnings.catch_warnings():   # a keyword, so that `pytest -k 06_safety` selects these tests with nbs/06_safety.ipynb
    warnings.simplefilter('ignore')
    pytestmark = pytest.mark.nb_06_safety

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
KEY = 'sk-test-' + 'S3cr3tK3y' * 3          # the fake teacher demands it; it must never show up in logs or outputs
GEN = 'import sys; from nanochat.safety import safety_gen_cli; sys.exit(safety_gen_cli(sys.argv[1:]))'


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0)); return s.getsockname()[1]


def server(args, **kw):
    "A subprocess whose stderr goes to a temporary file (a pipe nobody reads could fill up and block it)"
    import tempfile
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=log, **kw)
    proc.log = log
    return proc


def stderr_of(proc):
    proc.log.seek(0); return proc.log.read().decode(errors='replace')[-3000:]


def wait_http(url, proc, timeout, headers=None):
    t = time.monotonic()
    while time.monotonic() - t < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f'server exited with {proc.returncode}: {stderr_of(proc)}')
        try:
            r = httpx.get(url, headers=headers, timeout=2)
            if r.status_code == 200: return r
        except httpx.HTTPError: pass
        time.sleep(0.1)
    raise TimeoutError(f'{url} not up after {timeout}s')


@pytest.fixture(scope='module')
def fake():
    "Base URL of a fake teacher subprocess on a free loopback port"
    port = free_port()
    proc = server([PY, str(ROOT / 'tests' / 'fake_teacher.py'), '--port', str(port), '--api-key', KEY,
                   '--retry-after', '0.1', '--slow', '1.5'])
    base = f'http://127.0.0.1:{port}/v1'
    try:
        wait_http(base + '/models', proc, 30, {'Authorization': f'Bearer {KEY}'})
        yield base
    finally:
        proc.terminate(); proc.wait(10)


def reset(base): httpx.post(base.removesuffix('/v1') + '/_reset').raise_for_status()
def fake_stats(base): return httpx.get(base.removesuffix('/v1') + '/_stats').json()


def teacher(base, model='fake-teacher', concurrency=32, **kw):
    return Teacher(base, model, KEY, timeout=1.0, max_concurrency=concurrency, max_retries=6, **kw)


def jsonl(path):
    return [json.loads(l) for l in Path(path).read_text().splitlines()] if Path(path).exists() else []


def by_id(out):
    "{id: conversation} of an output directory (metadata line i describes conversation line i)"
    convs, metas = jsonl(out / CONV_FILE), jsonl(out / META_FILE)
    assert len(convs) == len(metas)
    return {m['id']: c for m, c in zip(metas, convs)}


@pytest.fixture(scope='module')
def reference(fake, tmp_path_factory):
    "An uninterrupted 500-conversation run (in-process, concurrency 32)"
    reset(fake)
    out = tmp_path_factory.mktemp('reference')
    t0 = time.monotonic()
    res = generate_safety_data(teacher(fake), out, GenConfig(n=500, seed=1, price_in=1.0, price_out=2.0), progress=False)
    print(f'reference run: {time.monotonic() - t0:.1f}s\n{res.summary}')
    return out, res, fake_stats(fake)


def test_500_balanced_valid_unique(reference):
    out, res, injected = reference
    assert res.complete and res.accepted == 500
    convs, metas, rejs = jsonl(out / CONV_FILE), jsonl(out / META_FILE), jsonl(out / REJ_FILE)
    assert len(convs) == len(metas) == 500
    # every line valid nanochat SFT format, metadata aligned and complete
    for c, m in zip(convs, metas):
        assert check_structure(c) is None
        assert {'id', 'category', 'kind', 'hazards', 'seed', 'teacher_model', 'usage', 'started_at', 'finished_at', 'sha'} <= set(m)
        assert m['seed'] == 1 and m['teacher_model'] == 'fake-teacher' and m['usage']['completion_tokens'] > 0
        assert len(c) == 2 * m['user_turns']
    # balanced: 62 or 63 per category, 1 benign per 2 harmful
    per_cat = Counter(m['category'] for m in metas)
    assert set(per_cat) == set(CATEGORIES) and max(per_cat.values()) - min(per_cat.values()) <= 1
    assert Counter((m['category'], m['kind']) for m in metas) == Counter(res.quotas)
    kinds = Counter(m['kind'] for m in metas)
    assert (kinds['harmful'], kinds['benign']) == (332, 168)   # 4 x (42 + 21) + 4 x (41 + 21)
    assert 90 <= sum(m['user_turns'] > 1 for m in metas) <= 160        # ~25% multi-turn
    # no duplicates: unique ids, unique opening turns, nothing a fresh MinHash index flags
    assert len({m['id'] for m in metas}) == 500 and len({c[0]['content'] for c in convs}) == 500
    idx = NearDupIndex()
    assert all(idx.check_add(m['id'], c) is None for m, c in zip(metas, convs))
    # the response policy holds in what was kept
    for c, m in zip(convs, metas):
        assts = [x['content'] for x in c[1::2]]
        if m['kind'] == 'benign': assert not any(map(is_refusal, assts))
        elif m['category'] == 'self_harm': assert points_to_help(assts[0])
        else: assert all(map(is_refusal, assts))
    # what the fake injected was caught and recorded
    reasons = Counter(r['reason'] for r in rejs)
    for r in ('parse_error', 'teacher_refused', 'harmful_not_refused', 'benign_refused', 'not_alternating'):
        assert reasons[r] > 0, (r, reasons)
    assert 'near_duplicate' not in reasons and len({r['id'] for r in rejs}) == len(rejs)
    assert not {r['id'] for r in rejs} & {m['id'] for m in metas}
    assert injected['429'] > 0 and injected['5xx'] > 0 and injected['slow'] > 0, injected
    assert res.stats['retry_429'] > 0 and res.stats['retry_5xx'] > 0 and res.stats['retry_timeout'] > 0, res.stats
    assert sum(m['retries'] for m in metas) + sum(r['retries'] for r in rejs) == res.stats['retries']
    card = (out / CARD_FILE).read_text()
    assert '| Conversations | 500 (332 harmful' in card and '| S7 | Privacy | `privacy` |' in card
    assert 'Estimated cost: **$' in card and '`harmful_not_refused`' in card


def _gen_cmd(base, out, *extra):
    return [PY, '-c', GEN, '--base-url', base, '--model', 'fake-teacher', '--api-key-env', 'FAKE_TEACHER_KEY',
            '--out-dir', str(out), '--timeout', '1', '--no-progress', *extra]


def _env(**kw): return {**os.environ, 'FAKE_TEACHER_KEY': KEY, **kw}


def _lines(path): return path.read_bytes().count(b'\n') if path.exists() else 0


def test_kill9_and_resume_matches_uninterrupted(fake, reference, tmp_path):
    ref_out, _, _ = reference
    reset(fake)
    out = tmp_path / 'killed'
    cmd = _gen_cmd(fake, out, '--n', '500', '--seed', '1', '--concurrency', '32')
    for kill_at in (120, 300):                  # kill -9 twice, at different points
        proc = server(cmd, env=_env())
        t = time.monotonic()
        while _lines(out / META_FILE) < kill_at:
            assert proc.poll() is None, f'run ended before the kill: {stderr_of(proc)}'
            assert time.monotonic() - t < 60
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL); proc.wait()
        assert proc.returncode == -signal.SIGKILL
        # no corrupt line: every complete line parses; at most the last one is torn
        for name in (CONV_FILE, META_FILE, REJ_FILE):
            lines = (out / name).read_bytes().split(b'\n')
            for l in lines[:-1]: json.loads(l)
        assert _lines(out / CONV_FILE) >= _lines(out / META_FILE)     # metadata lines commit conversation lines
    done = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert 'total' in done.stdout and '332/332' in done.stdout and '168/168' in done.stdout
    # exactly the uninterrupted run's items, contents and rejections; nothing twice, nothing lost
    got, ref = by_id(out), by_id(ref_out)
    assert len(jsonl(out / META_FILE)) == 500 and got.keys() == ref.keys() and got == ref
    rej_ids = [r['id'] for r in jsonl(out / REJ_FILE)]
    assert len(rej_ids) == len(set(rej_ids)) and set(rej_ids) == {r['id'] for r in jsonl(ref_out / REJ_FILE)}
    assert (out / CARD_FILE).exists() and not (out / 'safety_run.lock').exists()


def test_near_duplicates_and_judge(fake, tmp_path):
    reset(fake)
    t = teacher(fake, 'fake-teacher+dups')
    res = generate_safety_data(t, tmp_path, GenConfig(n=64, seed=3), judge=t, progress=False)
    assert res.complete and res.reasons['near_duplicate'] > 0 and res.reasons['judge_fail'] > 0, res.reasons
    convs, metas = jsonl(tmp_path / CONV_FILE), jsonl(tmp_path / META_FILE)
    assert len(convs) == 64 and len({c[0]['content'] for c in convs}) == 64
    assert all(m['judge'] == {'model': 'fake-teacher+dups', 'verdict': 'pass', 'reason': 'follows the policy'} for m in metas)
    dups = [r for r in jsonl(tmp_path / REJ_FILE) if r['reason'] == 'near_duplicate']
    assert all(r['detail'].startswith('near-duplicate of ') for r in dups)


@pytest.mark.parametrize('flag,mode,synthesis', [('no-json-schema', 'json_object_schema', 'turns'), ('llamacpp', 'json_object_schema', 'turns'),
                                               ('no-response-format', 'none', 'turns')])
def test_probe_picks_format_and_synthesis(fake, tmp_path, flag, mode, synthesis):
    "The probe finds the best format once: a json_schema rejection (400, or llama.cpp's 500) is never retried per item"
    reset(fake)
    t = teacher(fake, f'fake-teacher+{flag}', concurrency=8)
    res = generate_safety_data(t, tmp_path, GenConfig(per_category=2, categories=['privacy', 'misinformation'], seed=5), progress=False)
    assert res.complete and t.format == mode and res.synthesis == synthesis, (t.format, res.synthesis, res.reasons)
    metas, st = jsonl(tmp_path / META_FILE), fake_stats(fake)
    assert {m['response_format'] for m in metas} == {mode if synthesis == 'json' else 'none'}     # turns: plain-text requests
    assert {m['synthesis'] for m in metas} == {synthesis}
    assert st['rf_json_schema'] == 1, st                               # only the probe ever sent json_schema
    assert not res.reasons['teacher_error'], res.reasons
    run = jsonl(tmp_path / RUNS_FILE)[-1]
    assert run['status'] == 'complete' and run['capabilities']['best_format'] == mode and run['capabilities']['json_schema'].startswith('rejected')


def test_forced_format_downgrades_once(fake, tmp_path):
    reset(fake)
    t = teacher(fake, 'fake-teacher+llamacpp', concurrency=4, response_format='json_schema')
    res = generate_safety_data(t, tmp_path, GenConfig(per_category=3, categories=['privacy'], seed=6, synthesis='json'), progress=False)
    assert res.complete and t.format == 'json_object_schema' and res.stats['fallback_json_schema'] == 1, res.stats
    st = fake_stats(fake)
    assert 1 <= st['500_response_format'] <= 1 + 4, st                 # the probe, plus at most the requests already in flight


def test_turns_mode(fake, tmp_path):
    reset(fake)
    res = generate_safety_data(teacher(fake, concurrency=8), tmp_path,
                               GenConfig(n=48, seed=4, multi_turn_share=0.5, synthesis='turns'), progress=False)
    assert res.complete and res.synthesis == 'turns', res.summary
    convs, metas = jsonl(tmp_path / CONV_FILE), jsonl(tmp_path / META_FILE)
    assert len(convs) == 48 and all(check_structure(c) is None for c in convs)
    assert sum(len(c) > 2 for c in convs) > 10 and all(len(c) == 2 * m['user_turns'] for c, m in zip(convs, metas))
    assert all(not c[0]['content'].startswith(('User:', '"')) for c in convs)       # labels and quotes cleaned
    for r in ('leaked_prompt', 'teacher_refused'): assert res.reasons[r] > 0, res.reasons
    for c, m in zip(convs, metas):
        assts = [x['content'] for x in c[1::2]]
        if m['kind'] == 'benign': assert not any(map(is_refusal, assts))
        elif m['category'] != 'self_harm': assert all(map(is_refusal, assts))


def test_api_key_never_leaks(fake, tmp_path):
    env_file = tmp_path / 'teacher.env'
    env_file.write_text(f'FAKE_TEACHER_KEY={KEY}\n')
    out = tmp_path / 'out'
    env = {k: v for k, v in os.environ.items() if k != 'FAKE_TEACHER_KEY'}
    r = subprocess.run(_gen_cmd(fake, out, '--env-file', str(env_file), '--per-category', '3', '--categories',
                                'privacy,self_harm', '--log-level', 'debug', '--judge', '--seed', '9'),
                       env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr[-3000:]
    assert 'HTTP Request' in r.stderr or 'Request options' in r.stderr      # debug logging really was on
    assert KEY not in r.stdout + r.stderr
    files = [p for p in out.iterdir() if p.is_file()]
    assert len(jsonl(out / CONV_FILE)) == 6 and all(KEY not in p.read_text() for p in files)


def test_fatal_errors_are_clear(fake, tmp_path, monkeypatch, capsys):
    "A wrong key or a wrong base URL stops the run at once with a hint, and never echoes a key"
    monkeypatch.setenv('FAKE_TEACHER_KEY', 'sk-wrong-0123456789')
    args = ['--model', 'fake-teacher', '--api-key-env', 'FAKE_TEACHER_KEY', '--per-category', '1', '--no-progress', '--timeout', '2']
    assert safety_gen_cli(['--base-url', fake, '--out-dir', str(tmp_path / 'bad'), *args]) == 2     # refused at the probe
    err = capsys.readouterr().err
    assert '--api-key-env' in err and 'sk-wrong' not in err, err
    assert not (tmp_path / 'bad').exists()
    monkeypatch.setenv('FAKE_TEACHER_KEY', KEY)
    assert safety_gen_cli(['--base-url', fake.removesuffix('/v1'), '--out-dir', str(tmp_path / 'nf'), *args]) == 2   # 404
    err = capsys.readouterr().err
    assert '--base-url' in err and KEY not in err, err
    assert not jsonl(tmp_path / 'nf' / META_FILE) and not jsonl(tmp_path / 'nf' / REJ_FILE)


def test_unreachable_teacher_is_one_line(tmp_path):
    "No teacher at the URL: one request, one line, exit 2, nothing written (was: 280 requests over 90 s, then advice about gates)"
    port = free_port()
    t0 = time.monotonic()
    r = subprocess.run(_gen_cmd(f'http://127.0.0.1:{port}/v1', tmp_path / 'out', '--n', '16', '--timeout', '10'), env=_env(),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stderr
    lines = [l for l in r.stderr.splitlines() if 'error' in l]
    assert lines == [f'nanochat safety-gen: error: cannot reach teacher at http://127.0.0.1:{port}/v1: connection refused: start it, or check --base-url'], r.stderr
    assert 'Traceback' not in r.stderr and time.monotonic() - t0 < 30 and not (tmp_path / 'out').exists()


def test_teacher_lost_mid_run_stops_cleanly_and_resumes(tmp_path):
    port = free_port()
    args = [PY, str(ROOT / 'tests' / 'fake_teacher.py'), '--port', str(port), '--api-key', KEY, '--delay', '0.05']
    base = f'http://127.0.0.1:{port}/v1'
    out = tmp_path / 'out'
    cmd = _gen_cmd(base, out, '--n', '200', '--seed', '2', '--concurrency', '4', '--max-retries', '2', '--timeout', '5')
    fk = server(args)
    try:
        wait_http(base + '/models', fk, 30, {'Authorization': f'Bearer {KEY}'})
        gen = server(cmd, env=_env())
        t = time.monotonic()
        while _lines(out / META_FILE) < 20:
            assert gen.poll() is None, stderr_of(gen)
            assert time.monotonic() - t < 120
            time.sleep(0.05)
    finally:
        fk.terminate(); fk.wait(10)                                # the teacher goes away mid-run
    gen.wait(120)
    err = stderr_of(gen)
    assert gen.returncode == 1, err
    assert f'cannot reach teacher at {base}: connection refused' in err and 'rerun the same command to resume' in err, err
    assert 'Traceback' not in err and 'SHORTFALL' not in err
    n_before = len(jsonl(out / META_FILE))
    assert 20 <= n_before < 200 and (out / CARD_FILE).exists()
    assert jsonl(out / RUNS_FILE)[-1]['status'].startswith('stopped: cannot reach teacher')
    assert not [r for r in jsonl(out / REJ_FILE) if 'connect' in r.get('detail', '').lower()]   # outage is not blamed on items
    fk = server(args)
    try:
        wait_http(base + '/models', fk, 30, {'Authorization': f'Bearer {KEY}'})
        done = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    finally:
        fk.terminate(); fk.wait(10)
    assert done.returncode == 0, done.stderr[-2000:]
    metas = jsonl(out / META_FILE)
    assert len(metas) == 200 and len({m['id'] for m in metas}) == 200


@pytest.mark.parametrize('sig,code', [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupt_writes_card_and_one_line(fake, tmp_path, sig, code):
    reset(fake)
    out = tmp_path / 'out'
    # a shell's background job (nohup, `&` in a script: how CI may run us) inherits SIGINT ignored, and Python then
    # keeps ignoring it, as it should; the generator is started with the default disposition, as from a terminal
    proc = server(_gen_cmd(fake, out, '--n', '400', '--seed', '8', '--concurrency', '4'), env=_env(),
                  preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    t = time.monotonic()
    while _lines(out / META_FILE) < 5:
        assert proc.poll() is None, stderr_of(proc)
        assert time.monotonic() - t < 60
        time.sleep(0.02)
    proc.send_signal(sig); proc.wait(60)
    err = stderr_of(proc)
    assert proc.returncode == code, err
    assert 'Traceback' not in err and f'interrupted by {sig.name}' in err and 'rerun the same command to resume' in err, err
    card = (out / CARD_FILE).read_text()
    n = len(jsonl(out / META_FILE))
    assert f'| Conversations | {n} (' in card and jsonl(out / RUNS_FILE)[-1]['status'] == 'interrupted'


def test_rate_limit(fake, tmp_path):
    t = teacher(fake, max_rps=20)                         # 20 requests/s, bursts of 20
    t0 = time.monotonic()
    res = generate_safety_data(t, tmp_path, GenConfig(n=48, seed=11), progress=False)
    elapsed = time.monotonic() - t0
    assert res.complete and elapsed >= (res.stats['requests'] - 20) / 20 * 0.95, (elapsed, res.stats)


def test_mix_with_generated(reference, tmp_path, capsys):
    ref_out, _, _ = reference
    other = tmp_path / 'other.jsonl'
    with open(other, 'w') as f:
        for i in range(9700):
            conv = [{'role': 'user', 'content': f'question {i}'}, {'role': 'assistant', 'content': f'answer {i}'}]
            f.write(json.dumps({'messages': conv} if i % 2 else conv) + '\n')
    out = tmp_path / 'mix.jsonl'
    assert mix_cli(['--safety', str(ref_out / CONV_FILE), '--other', str(other), '--out', str(out), '--share', '0.03', '--seed', '1']) == 0
    assert 'wrote 10000 conversations' in capsys.readouterr().out
    mix = jsonl(out)
    safety = {json.dumps(c) for c in jsonl(ref_out / CONV_FILE)}
    assert len(mix) == 10000 and sum(json.dumps(c) in safety for c in mix) == 300
    assert all(check_structure(c) is None for c in mix) and json.dumps(mix[0]) not in safety | {json.dumps(jsonl(other)[0])}


def test_against_nanochat_serve(tmp_path):
    """The wire protocol against this project's own server (`nanochat serve`, here with a tiny upstream fixture
    checkpoint and the compact prompt, which fits its 512-token context): requests succeed, the response_format
    fallback works, replies are parsed, records or rejections are written. Content quality is not judged."""
    if importlib.util.find_spec('nanochat.server') is None: pytest.skip('nanochat.server not available yet')
    ckpt = ROOT / 'tests' / 'fixtures' / 'upstream' / 'E4-2026-07' / 'gqa-window'
    port = free_port()
    proc = server([PY, '-c', 'import sys; from nanochat.cli import main; sys.exit(main(sys.argv[1:]))', 'serve',
                   '--host', '127.0.0.1', '--port', str(port), '--model', str(ckpt), '--log-level', 'warning'], cwd=ROOT)
    base = f'http://127.0.0.1:{port}/v1'
    try:
        t0 = time.monotonic()
        r = wait_http(base + '/models', proc, 120)
        print(f'server up in {time.monotonic() - t0:.1f}s')
        model = next((m['id'] for m in r.json().get('data', [])), 'nanochat')
        t = Teacher(base, model, timeout=120, max_concurrency=3, max_tokens=32, max_retries=2)
        res = generate_safety_data(t, tmp_path, GenConfig(per_category=1, categories=['self_harm'], max_attempts_factor=1.0,
                                                          prompt_style='compact'), progress=False)   # 1 slot: 3 items at most
        # our server enforces OpenAI's json_schema while decoding (nanochat.structured), but the full synthesis prompt
        # does not fit this checkpoint's 512-token context, so `auto` synthesizes turn by turn
        assert t.capabilities.context_length == 512 and t.format == 'json_schema' and res.synthesis == 'turns'
        metas, rejs = jsonl(tmp_path / META_FILE), jsonl(tmp_path / REJ_FILE)
        print(res.summary, t.stats, Counter(r['reason'] for r in rejs))
        assert res.stats['requests'] >= 3 and 1 <= len(metas) + len(rejs) <= 3
        assert not [r for r in rejs if r['reason'] in ('teacher_error', 'content_filter')], rejs
        assert any(r['usage']['completion_tokens'] > 0 for r in metas + rejs), 'the server reported no token usage'
        assert (tmp_path / CARD_FILE).exists()
    finally:
        proc.terminate()
        try: proc.wait(10)
        except subprocess.TimeoutExpired: proc.kill()
