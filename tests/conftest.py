"""Shared pytest set-up: the `slow` marker, fixture paths, and binaries the CI must have."""
import contextlib, os, shutil
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / 'tests' / 'fixtures'
UPSTREAM = FIXTURES / 'upstream'
SLOW = bool(os.environ.get('NANOCHAT_SLOW'))
IN_CI = os.environ.get('CI', '').lower() not in ('', '0', 'false', 'no')

MISSING = {}   # system package -> how many tests skipped for want of it

def pytest_configure(config):
    config.addinivalue_line('markers', 'slow: long checks, run with `make test SLOW=1`')
    chars = config.option.reportchars or ''
    if 's' not in chars and 'a' not in chars.lower(): config.option.reportchars = chars + 's'   # skip reasons, whatever PYTEST_FLAGS say

def pytest_terminal_summary(terminalreporter):
    if MISSING:
        pkgs = ', '.join(f'{name} ({n} test{"s" * (n > 1)})' for name, n in MISSING.items())
        terminalreporter.write_line(f'SKIPPED for missing system packages: {pkgs}: install them with `make system-deps` '
                                    '(apt-get, needs root); under CI=true these tests fail instead', yellow=True, bold=True)

def pytest_collection_modifyitems(config, items):
    if SLOW: return
    skip = pytest.mark.skip(reason='slow: run with `make test SLOW=1`')
    for item in items:
        if 'slow' in item.keywords: item.add_marker(skip)

def need_binary(name, hint):
    "Path of `name`; skip locally when missing, but fail in CI, where `.ci/run` must have installed it"
    path = shutil.which(name) or (f'/usr/bin/{name}' if Path(f'/usr/bin/{name}').exists() else None)
    if path: return path
    if IN_CI: pytest.fail(f'{name} is missing in CI: {hint}')
    MISSING[name] = MISSING.get(name, 0) + 1
    pytest.skip(f'system package {name} is not installed: {hint}')

def free_port():
    "A free TCP port on 127.0.0.1"
    import socket
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); return s.getsockname()[1]

@contextlib.contextmanager
def live_server(*args, env=None, ready_s=180):
    "`nanochat serve *args` in a subprocess on a free loopback port, yielded as its base URL once /health is 200"
    import subprocess, sys, time, httpx
    port = free_port()
    code = 'import sys; from nanochat.server import serve_cli; sys.exit(serve_cli(sys.argv[1:]))'
    p = subprocess.Popen([sys.executable, '-c', code, '--port', str(port), '--device', 'cpu', '--log-level', 'warning', *map(str, args)],
                         cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f'http://127.0.0.1:{port}'
    try:
        deadline = time.monotonic() + ready_s
        while True:
            if p.poll() is not None: pytest.fail(f'server exited: {p.stdout.read().decode()[-2000:]}')
            try:
                if httpx.get(url + '/health', timeout=2).status_code == 200: break
            except httpx.HTTPError: pass
            if time.monotonic() > deadline: pytest.fail(f'server not healthy in {ready_s} s')
            time.sleep(0.2)
        yield url
    finally:
        p.terminate()
        try: p.wait(20)
        except subprocess.TimeoutExpired: p.kill(); p.wait()
