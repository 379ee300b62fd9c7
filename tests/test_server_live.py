"""`nanochat serve` as a real process (serve_cli in a subprocess, fixture model, free loopback port), driven by
examples/openai_client.py."""
import os, socket, subprocess, sys, time
import httpx, pytest
from conftest import ROOT, UPSTREAM

FIX = UPSTREAM / 'E4-2026-07' / 'gqa-window'

def free_port():
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); return s.getsockname()[1]

@pytest.fixture(scope='module')
def server():
    port = free_port()
    env = {**os.environ, 'NANOCHAT_API_KEYS': 'sk-one,sk-two'}
    code = 'import sys; from nanochat.server import serve_cli; sys.exit(serve_cli(sys.argv[1:]))'
    p = subprocess.Popen([sys.executable, '-c', code, '--model', str(FIX), '--port', str(port), '--device', 'cpu',
                          '--slots', '2', '--log-level', 'warning'], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f'http://127.0.0.1:{port}'
    try:
        for _ in range(600):
            if p.poll() is not None: pytest.fail(f'server exited: {p.stdout.read().decode()[-2000:]}')
            try:
                if httpx.get(url + '/health', timeout=1).status_code == 200: break
            except httpx.HTTPError: pass
            time.sleep(0.1)
        else: pytest.fail('server not healthy in 60 s')
        yield url
    finally:
        p.terminate()
        try: p.wait(10)
        except subprocess.TimeoutExpired: p.kill(); p.wait()

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
