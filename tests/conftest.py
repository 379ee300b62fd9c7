"""Shared pytest set-up: the `slow` marker, fixture paths, and binaries the CI must have."""
import os, shutil
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
