"""Shared pytest set-up: the `slow` marker, fixture paths, and binaries the CI must have."""
import os, shutil
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / 'tests' / 'fixtures'
UPSTREAM = FIXTURES / 'upstream'
SLOW = bool(os.environ.get('NANOCHAT_SLOW'))
IN_CI = bool(os.environ.get('CI'))

def pytest_configure(config):
    config.addinivalue_line('markers', 'slow: long checks, run with `make test SLOW=1`')

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
    pytest.skip(f'{name} not installed: {hint}')
