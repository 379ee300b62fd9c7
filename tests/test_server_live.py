"""`nanochat serve` as a real process (serve_cli in a subprocess, fixture model, free loopback port), driven by
examples/openai_client.py."""
import os, subprocess, sys
import httpx, pytest
from conftest import ROOT, UPSTREAM, live_server

FIX = UPSTREAM / 'E4-2026-07' / 'gqa-window'

@pytest.fixture(scope='module')
def server():
    with live_server('--model', FIX, '--slots', '2', env={**os.environ, 'NANOCHAT_API_KEYS': 'sk-one,sk-two'}) as url: yield url

def test_example_client(server):
    r = subprocess.run([sys.executable, str(ROOT / 'examples' / 'openai_client.py'), '--base-url', server + '/v1', '--api-key', 'sk-two',
                        '--max-tokens', '12'], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "models: ['gqa-window'] (context 512 tokens)" in out
    assert 'answer: ' in out and 'stream matches: True' in out
    assert 'error: 400 param=temperature' in out

def test_keys_from_env(server):
    assert httpx.get(server + '/v1/models').status_code == 401
    assert httpx.get(server + '/v1/models', headers={'Authorization': 'Bearer sk-one'}).status_code == 200
    r = httpx.get(server + '/', timeout=5)
    assert r.status_code == 200 and r.headers['content-type'].startswith('text/html')
