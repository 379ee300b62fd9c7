"""Every `nanochat` command answers a missing path or bad input with one line and a non-zero exit, never a traceback."""
import json, os, shutil, subprocess, sys
from pathlib import Path
import pytest
from conftest import ROOT, UPSTREAM

NANOCHAT = Path(sys.executable).parent / 'nanochat'   # the console script `pip install` made

def run(*args, timeout=300, **extra_env):
    "Run `nanochat ARGS` as a user would; (exit status, stdout, stderr)"
    env = {**os.environ, 'PYTHONWARNINGS': 'ignore'}
    for k in ('NANOCHAT_TEACHER_BASE_URL', 'NANOCHAT_DEBUG'): env.pop(k, None)
    env.update(extra_env)
    p = subprocess.run([str(NANOCHAT), *args], capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)
    return p.returncode, p.stdout, p.stderr

def one_line(out, prefix):
    "The output is exactly one line, starting with `prefix`"
    lines = out.splitlines()
    assert len(lines) == 1 and lines[0].startswith(prefix) and 'Traceback' not in out, out
    return lines[0]

@pytest.fixture
def poisoned(tmp_path):
    "A copy of the E4 fixture whose meta asks for sequence_len 1e12"
    d = tmp_path / 'run'; shutil.copytree(UPSTREAM / 'E4-2026-07' / 'small', d)
    m = d / 'chatsft_checkpoints' / 'd2' / 'meta_000001.json'
    meta = json.loads(m.read_text()); meta['model_config']['sequence_len'] = 1e12; m.write_text(json.dumps(meta))
    return d

def test_generate_missing_model():
    rc, out, err = run('generate', 'hi', '--model', '/does-not-exist')
    assert rc == 2 and out == ''
    one_line(err, 'nanochat generate: error: /does-not-exist: no such file or folder')

def test_debug_shows_the_traceback():
    rc, out, err = run('generate', 'hi', '--model', '/does-not-exist', NANOCHAT_DEBUG='1')
    assert rc != 0 and 'Traceback' in err and 'CheckpointError: /does-not-exist: no such file or folder' in err

def test_generate_poisoned_model(poisoned):
    rc, out, err = run('generate', 'hi', '--model', str(poisoned))
    assert rc == 2 and out == ''
    assert 'meta_000001.json: model_config.sequence_len=1e+12 is out of range' in one_line(err, 'nanochat generate: error: ')

def test_serve_missing_model():
    rc, out, err = run('serve', '--model', '/does-not-exist', '--port', '0', timeout=120)
    assert rc == 2
    one_line(out + err, 'nanochat serve: error: /does-not-exist: no such file or folder')

def test_serve_poisoned_model(poisoned):
    rc, out, err = run('serve', '--model', str(poisoned), '--port', '0', timeout=120)
    assert rc == 2
    assert 'sequence_len=1e+12 is out of range' in one_line(out + err, 'nanochat serve: error: ')

def test_safety_gen_missing_env_file():
    rc, out, err = run('safety-gen', '--env-file', '/does-not-exist', '--no-progress')
    assert rc == 2 and out == ''
    assert '/does-not-exist' in one_line(err, 'nanochat safety-gen: error: ')

def test_mix_sft_missing_input(tmp_path):
    rc, out, err = run('mix-sft', '--safety', '/does-not-exist', '--other', '/does-not-exist', '--out', str(tmp_path / 'mix.jsonl'))
    assert rc == 2 and out == ''
    assert '/does-not-exist' in one_line(err, 'nanochat mix-sft: error: ')

def test_train_demo_bad_device(tmp_path):
    rc, out, err = run('train-demo', '--tiny', '--device', 'nonsense', '--out-dir', str(tmp_path / 'demo'))
    assert rc != 0
    one_line(err, 'nanochat train-demo: error: ')

def test_unknown_command():
    rc, out, err = run('frobnicate')
    assert rc == 2 and "unknown command 'frobnicate'" in err and 'Traceback' not in err

def test_generate_into_a_closed_pipe_stops_quietly():
    "`nanochat generate ... | head -c 5`: when the reader leaves, generate stops without a traceback or an error line"
    p = subprocess.Popen([str(NANOCHAT), 'generate', 'Speak of love', '--max-tokens', '200', '--temperature', '0'],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    assert len(p.stdout.read(5)) == 5
    p.stdout.close()
    err = p.stderr.read().decode(); p.wait(timeout=300)
    assert p.returncode == 141 and 'Traceback' not in err and 'error' not in err, (p.returncode, err)
