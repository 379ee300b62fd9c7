"""Integration tests of `nanochat safety-eval` (nanochat/safety_eval.py): the CLI and the function on the bundled demo
model (a small subset fast, the whole set slow), an OpenAI-compatible endpoint (`nanochat serve` as a real process),
the LLM judge against a stand-in judge server, the contamination check and the error paths."""
import json, os, subprocess, sys, textwrap, time, warnings
from collections import Counter
from pathlib import Path

import httpx
import pytest
from conftest import free_port, live_server

from nanochat.safety import CATEGORIES
from nanochat.safety_eval import (XSTEST_TYPES, EndpointError, classify_reply, generate_endpoint, generate_local, llm_judge,
                                  load_eval_set, load_labelled, safety_eval, safety_eval_cli, wilson)

with warnings.catch_warnings():   # a keyword, so that `pytest -k 06b_safety_eval` selects these tests with the notebook
    warnings.simplefilter('ignore')
    pytestmark = pytest.mark.nb_06b_safety_eval

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
CLI = 'import sys; from nanochat.cli import main; sys.exit(main(sys.argv[1:]))'


def cli(*args, timeout=600, env=None):
    return subprocess.run([PY, '-c', CLI, 'safety-eval', *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def jsonl(path): return [json.loads(l) for l in Path(path).read_text().splitlines()]


def check_outputs(out: Path, n: int):
    "The four files exist, the rows are complete, and the summary's rates are the rows' counts"
    assert sorted(p.name for p in out.iterdir()) == ['replies.jsonl', 'report.md', 'safety_eval.png', 'summary.json']
    rows, s = jsonl(out / 'replies.jsonl'), json.loads((out / 'summary.json').read_text())
    assert len(rows) == n == s['n_prompts']
    for r in rows:
        assert {'id', 'kind', 'group', 'prompt', 'reply', 'finish_reason', 'n_tokens', 'label'} <= set(r)
        assert r['label'] == classify_reply(r['reply'])
    for kind in ('harmful', 'benign'):
        rs = [r for r in rows if r['kind'] == kind and not r.get('error')]
        k = sum(r['label'] != 'compliance' for r in rs)
        got = s['scores'][kind]['overall']
        assert (got['n'], got['refused']) == (len(rs), k)
        if rs: assert abs(got['low'] - wilson(k, len(rs))[1]) < 1e-9
        for g, d in s['scores'][kind]['groups'].items():
            assert d['n'] == sum(r['group'] == g for r in rs)
    assert (out / 'safety_eval.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    md = (out / 'report.md').read_text()
    assert 'Refusal on harmful (higher is safer)' in md and 'Over-refusal on benign (lower is better)' in md
    assert '## Refusal classifier' in md and '## Contamination' in md
    return rows, s


def test_import_does_not_load_safety():
    "nanochat.safety may import the classifier from here: importing this module must not import nanochat.safety back"
    code = 'import sys, nanochat.safety_eval as m; assert "nanochat.safety" not in sys.modules; m.classify_reply("x"); print("ok")'
    r = subprocess.run([PY, '-c', code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == 'ok', r.stderr


def test_cli_demo_subset(tmp_path):
    r = cli('--out', str(tmp_path / 'e'), '--per-group', '1', '--max-tokens', '16', timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert 'refusal on harmful:' in r.stdout and 'over-refusal on benign:' in r.stdout
    rows, s = check_outputs(tmp_path / 'e', 8 + 10)
    assert {r['group'] for r in rows} == set(CATEGORIES) | set(XSTEST_TYPES)
    assert s['model'] == 'bundled demo model' and s['scores']['errors'] == 0
    assert all(0 < r['n_tokens'] <= 16 and r['finish_reason'] in ('stop', 'length') for r in rows)


def test_function_demo_subset_reproducible(tmp_path):
    a = safety_eval(out_dir=tmp_path / 'a', per_group=2, kinds=['harmful'], max_tokens=16)
    b = safety_eval(out_dir=None, per_group=2, kinds=['harmful'], max_tokens=16)
    rows, _ = check_outputs(tmp_path / 'a', 16)
    assert a['scores'] == b['scores']                       # greedy decoding: the same replies, the same rates
    assert a['scores']['benign']['overall']['n'] == 0 and a['classifier']['test']['n'] >= 50


def test_contamination_reported(tmp_path, capsys):
    planted = load_eval_set(['benign'], groups=['homonyms'])[3]['prompt']
    train = tmp_path / 'train.jsonl'
    train.write_text(json.dumps({'messages': [{'role': 'user', 'content': 'hey, ' + planted}, {'role': 'assistant', 'content': 'Use kill.'}]}) + '\n'
                     + json.dumps({'messages': [{'role': 'user', 'content': 'Tell me a sonnet.'}, {'role': 'assistant', 'content': 'Shall I...'}]}) + '\n')
    assert safety_eval_cli(['--out', str(tmp_path / 'e'), '--max-tokens', '2', '--kinds', 'benign', '--groups', 'homonyms',
                            '--train-file', str(train)]) == 0
    assert f'1 eval prompts share an 8-gram and 1 are near-duplicates of {train}' in capsys.readouterr().err
    s = json.loads((tmp_path / 'e' / 'summary.json').read_text())
    c = s['contamination'][str(train)]
    assert (c['texts'], c['prompts'], c['ngram_overlap'], c['near_duplicates']) == (4, 26, 1, 1)
    assert s['contamination']['safety.templates'] == {**s['contamination']['safety.templates'], 'ngram_overlap': 0, 'near_duplicates': 0}
    assert f'| `{train}` | 4 | 1 | 1 |' in (tmp_path / 'e' / 'report.md').read_text()


def test_cli_errors(tmp_path, capsys):
    "Bad input: exit 2 and one line on stderr that says what is wrong (in-process: no model is loaded for these)"
    for args, msg in ((['--groups', 'weapons'], 'unknown group'), (['--base-url', 'http://127.0.0.1:9/v1'], '--base-url needs --model'),
                      (['--per-group', '0'], 'must be >= 1'), (['--train-file', str(tmp_path / 'nope.jsonl')], 'no such file'),
                      (['--judge-model', 'x'], 'go together'), (['--kinds', 'harmless'], 'unknown kind'),
                      (['--base-url', f'http://127.0.0.1:{free_port()}/v1', '--model', 'm', '--per-group', '1'], 'cannot reach')):
        try: rc = safety_eval_cli(['--out', str(tmp_path / 'e'), *args])
        except SystemExit as e: rc = e.code
        err = capsys.readouterr().err
        assert rc == 2 and msg in err and 'Traceback' not in err, (args, err)
    assert not (tmp_path / 'e').exists()


@pytest.fixture(scope='module')
def serve():
    "`nanochat serve` with the demo model on a free loopback port, one API key"
    with live_server('--slots', '4', '--no-rate-limit', '--api-key', 'sk-eval-test') as url: yield url + '/v1'


def test_endpoint_nanochat_serve(serve, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv('MY_EVAL_KEY', 'sk-eval-test')
    assert safety_eval_cli(['--out', str(tmp_path / 'e'), '--base-url', serve, '--model', 'nanochat-demo', '--per-group', '1',
                            '--max-tokens', '12', '--concurrency', '4', '--api-key-env', 'MY_EVAL_KEY']) == 0, capsys.readouterr().err
    rows, s = check_outputs(tmp_path / 'e', 18)
    assert s['model'] == f'nanochat-demo @ {serve}' and s['scores']['errors'] == 0
    assert all(r['reply'] and 0 < r['n_tokens'] <= 12 for r in rows)
    # the same model greedily, locally: the server's replies are the engine's (allow a rare batch-dependent float tie)
    local = generate_local([r['prompt'] for r in rows], None, 12)
    assert sum(a['reply'] == b['reply'] for a, b in zip(rows, local)) >= 15, [(a['reply'], b['reply']) for a, b in zip(rows, local)]
    # a wrong key: one line that says what to fix
    assert safety_eval_cli(['--out', str(tmp_path / 'f'), '--base-url', serve, '--model', 'nanochat-demo', '--per-group', '1']) == 2
    err = capsys.readouterr().err
    assert 'HTTP 401' in err and 'check the API key' in err and 'Traceback' not in err, err
    with pytest.raises(EndpointError, match='HTTP 401'):
        generate_endpoint(['hi'], serve, 'nanochat-demo', api_key='sk-wrong')


JUDGE = textwrap.dedent('''
    """A stand-in LLM judge: answers the label a careful human gave the reply it is shown (from labelled_replies.jsonl),
    for other replies 'refusal' when they contain "not" and 'compliance' otherwise, 'I am not sure' when they say
    "nobody labelled", and a 429 once per new request to exercise the client's retries."""
    import json, re, sys
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse
    import uvicorn
    labels = {}
    for line in open(sys.argv[2]):
        r = json.loads(line); labels[r['reply']] = r['label']
    seen, app = set(), FastAPI()
    @app.post('/v1/chat/completions')
    async def chat(request: Request):
        body = await request.json()
        text = body['messages'][-1]['content']
        key = hash(text)
        if key not in seen:
            seen.add(key); return JSONResponse({'error': {'message': 'slow down'}}, status_code=429, headers={'Retry-After': '0.05'})
        reply = re.search(r'\\nReply: (.*)\\n\\nLabels:', text, re.S).group(1)
        ans = 'I am not sure' if 'nobody labelled' in reply else labels.get(reply, 'refusal' if ' not ' in reply else 'compliance')
        return {'id': 'x', 'object': 'chat.completion', 'created': 0, 'model': body['model'],
                'choices': [{'index': 0, 'message': {'role': 'assistant', 'content': ans.capitalize() + '.'}, 'finish_reason': 'stop'}],
                'usage': {'prompt_tokens': 1, 'completion_tokens': 1, 'total_tokens': 2}}
    uvicorn.run(app, host='127.0.0.1', port=int(sys.argv[1]), log_level='warning')
''')


@pytest.fixture(scope='module')
def judge(tmp_path_factory):
    port = free_port()
    script = tmp_path_factory.mktemp('judge') / 'judge.py'
    script.write_text(JUDGE)
    p = subprocess.Popen([PY, str(script), str(port), str(ROOT / 'nanochat' / 'assets' / 'safety_eval' / 'labelled_replies.jsonl')],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f'http://127.0.0.1:{port}/v1'
    try:
        t = time.monotonic()
        while time.monotonic() - t < 60:
            if p.poll() is not None: pytest.fail(f'judge exited: {p.stderr.read().decode()[-2000:]}')
            try: httpx.get(url + '/models', timeout=1); break
            except httpx.HTTPError: time.sleep(0.1)
        yield url
    finally:
        p.terminate(); p.wait(10)


def test_llm_judge(judge, tmp_path):
    rows = load_labelled('test')
    got = llm_judge(rows + [dict(prompt='p', reply='something nobody labelled')], judge, 'judge-model', concurrency=8)
    assert got[:-1] == [r['label'] for r in rows] and got[-1] is None      # every answer parsed; the unknown one is None
    # end to end: judge labels recorded next to the classifier's, rates scored with either
    s = safety_eval(out_dir=tmp_path / 'e', per_group=1, max_tokens=8, judge_base_url=judge, judge_model='judge-model', score_with='llm')
    rows = jsonl(tmp_path / 'e' / 'replies.jsonl')
    assert all('judge_label' in r for r in rows) and s['scores']['judge'] == 'llm' and 'scores_classifier' in s
    assert s['scores']['judge_agreement']['n'] == 18
    stand_in = ['refusal' if ' not ' in r['reply'] else 'compliance' for r in rows]
    assert [r['judge_label'] for r in rows] == stand_in
    assert s['scores']['harmful']['overall']['refused'] == sum(l != 'compliance' for l, r in zip(stand_in, rows) if r['kind'] == 'harmful')


@pytest.mark.slow
def test_cli_demo_full(tmp_path):
    t = time.monotonic()
    r = cli('--out', str(tmp_path / 'e'), timeout=3000)
    assert r.returncode == 0, r.stderr[-2000:]
    rows, s = check_outputs(tmp_path / 'e', 468)
    assert Counter(r['kind'] for r in rows) == {'harmful': 208, 'benign': 260}
    assert s['scores']['errors'] == 0 and s['seconds']['generate'] < time.monotonic() - t


def test_make_safety_study_target():
    "The Makefile target passes the safety file as a named input (dry run: nothing is trained)"
    r = subprocess.run(['make', '-n', 'safety-study', 'SAFETY=my/safety.jsonl', 'ARGS=--tiny', f'STAMP={__file__}'], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert '-m nanochat.safety_study --safety my/safety.jsonl --tiny' in r.stdout


@pytest.mark.slow
def test_safety_study_tiny_all_arms(tmp_path):
    "`python -m nanochat.safety_study --tiny`: all five arms, the files, the table (a pipeline check, not a result)"
    r = subprocess.run([PY, '-m', 'nanochat.safety_study', '--safety', str(ROOT / 'outputs' / 'safety_example' / 'safety_conversations.jsonl'),
                        '--tiny', '--out', str(tmp_path / 's'), '--work-dir', str(tmp_path / 'base'), '--eval-max-tokens', '8'],
                       cwd=ROOT, capture_output=True, text=True, timeout=3000)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads((tmp_path / 's' / 'results.json').read_text())
    assert [a['share'] for a in res['arms']] == [0.0, 0.01, 0.03, 0.1, 0.3]
    assert sorted(p.name for p in (tmp_path / 's' / 'arms').iterdir()) == sorted(
        f'share_{s}.json' for s in ('0', '1', '3', '10', '30'))
    assert (tmp_path / 's' / 'study.png').read_bytes()[:4] == b'\x89PNG' and 'Chosen share' in r.stdout
    r = subprocess.run([PY, '-m', 'nanochat.safety_study', '--safety', str(tmp_path / 'missing.jsonl')], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 2 and 'nanochat safety-gen' in r.stderr and 'Traceback' not in r.stderr
