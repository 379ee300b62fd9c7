"""Packaging: the license, the metadata setup.py writes, the extras, a core that loads and generates, the torch install."""
import importlib.metadata as md, json, os, re, subprocess, sys, textwrap
from configparser import ConfigParser
from pathlib import Path
import pytest
from conftest import ROOT, SLOW

def settings():
    c = ConfigParser(delimiters=['=']); c.read(ROOT / 'settings.ini', encoding='utf-8')
    return c['DEFAULT']

@pytest.fixture(scope='module')
def egg(tmp_path_factory):
    "The metadata setup.py writes (egg_info into a temporary folder): (PKG-INFO text, {extra: [requirements]})"
    out = tmp_path_factory.mktemp('egg')
    subprocess.run([sys.executable, 'setup.py', '-q', 'egg_info', '--egg-base', str(out)], cwd=ROOT, check=True,
                   capture_output=True, timeout=300)
    info = out / 'nanochat.egg-info'
    reqs, section = {}, ''
    for line in (info / 'requires.txt').read_text().splitlines():
        if m := re.fullmatch(r'\[(.*)\]', line): section = m.group(1)
        elif line.strip(): reqs.setdefault(section, []).append(line.strip())
    return (info / 'PKG-INFO').read_text(), reqs

def test_license_file_is_the_declared_mit(egg):
    text = (ROOT / 'LICENSE').read_text()
    assert settings()['license'] == 'mit' and text.startswith('MIT License\n')
    assert f"Copyright (c) {settings()['copyright']}" in text and 'WITHOUT WARRANTY OF ANY KIND' in text
    assert 'License: MIT' in egg[0] and 'License-File: LICENSE' in egg[0]

def test_status_gives_its_own_classifier(egg):
    names = {1: 'Planning', 2: 'Pre-Alpha', 3: 'Alpha', 4: 'Beta', 5: 'Production/Stable'}
    n = int(settings()['status'])
    assert f'Classifier: Development Status :: {n} - {names[n]}' in egg[0], egg[0]
    assert egg[0].count('Development Status') == 1

def test_no_placeholder_urls_or_email(egg):
    for text in (egg[0], (ROOT / 'settings.ini').read_text(), (ROOT / 'setup.py').read_text()):
        assert '.invalid' not in text and 'nanochat.github.io' not in text and 'github.com/nanochat/' not in text
    assert 'Home-page' not in egg[0] and 'Author-email' not in egg[0]

EXTRAS = ('serve', 'notebook', 'safety', 'train', 'dev', 'all')

def test_extras(egg):
    reqs = egg[1]
    assert set(EXTRAS) <= set(reqs), sorted(reqs)
    core = {re.split(r'[<>=\[ ]', r)[0] for r in reqs['']}
    assert core == {'torch', 'tiktoken', 'fastcore'}, core
    assert 'fastapi>=0.110' in reqs['serve'] and 'ipywidgets>=8.1' in reqs['notebook'] and 'rustbpe>=0.1' in reqs['train']
    everything = {r for name, rs in reqs.items() if name not in ('', 'dev', 'all') for r in rs}
    assert set(reqs['all']) == everything
    assert not (everything & set(reqs['dev'])) - {'openai>=1.40', 'httpx>=0.27'}   # the tests' own clients
    make = (ROOT / 'Makefile').read_text()
    assert 'EXTRAS ?= all,dev' in make and 'install -e ".[$(EXTRAS)]"' in make

def extra_modules():
    "Top-level modules of every distribution an extra names (and the core does not), as installed here"
    cfg = settings()
    name = lambda r: re.split(r'[<>=\[ ;]', r)[0].lower().replace('_', '-')
    core = {name(r) for r in cfg['requirements'].split()}
    dists = {name(r) for k in cfg if k.endswith('_requirements') for r in cfg[k].split()} - core
    mods = {m for m, ds in md.packages_distributions().items() if {d.lower().replace('_', '-') for d in ds} & dists}
    return sorted(m for m in mods if not m.startswith('_') and m.isidentifier())

def test_core_imports_nothing_from_the_extras(tmp_path):
    "With every extra's modules made unimportable, the core loads the demo model and generates (API and CLI)"
    blocked = extra_modules()
    assert {'fastapi', 'ipywidgets', 'openai', 'rustbpe', 'tqdm', 'jupytext'} <= set(blocked), blocked
    code = textwrap.dedent(f'''
        import sys
        for m in {blocked!r}: sys.modules[m] = None        # `import m` now raises ImportError
        from nanochat.checkpoint import load_model
        from nanochat.engine import Engine
        from nanochat.sampler import SamplingParams
        from nanochat.cli import main
        model, tok, meta = load_model(device='cpu')
        ids = tok.render_for_completion({{'messages': [{{'role': 'user', 'content': 'Hi'}}, {{'role': 'assistant', 'content': ''}}]}}, max_tokens=None)
        evs = list(Engine(model, tok).stream(ids, max_tokens=4, params=SamplingParams(temperature=0)))
        assert evs and evs[-1].finish_reason, evs
        assert main(['generate', 'Speak', '--max-tokens', '3', '--temperature', '0']) == 0
        try: import nanochat.server
        except ImportError as e: print('server needs the serve extra:', e)
        else: raise AssertionError('nanochat.server imported with fastapi blocked')
        print('core ok')
    ''')
    p = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert p.returncode == 0 and 'core ok' in p.stdout and 'server needs the serve extra' in p.stdout, p.stdout + p.stderr

@pytest.mark.slow
def test_core_only_install_in_a_fresh_venv(tmp_path):
    "pip install the package with no extras into a new venv: `nanochat generate` works, the server says what is missing"
    venv = tmp_path / 'venv'
    subprocess.run([sys.executable, '-m', 'venv', str(venv)], check=True, timeout=300)
    py = venv / 'bin' / 'python'
    subprocess.run([str(py), str(ROOT / 'tools' / 'install_torch.py')], check=True, timeout=1800)
    subprocess.run([str(py), '-m', 'pip', 'install', '-q', str(ROOT)], check=True, timeout=1800)
    installed = {d.metadata['Name'].lower() for d in md.distributions(path=[str(p) for p in venv.glob('lib/python*/site-packages')])}
    assert not installed & {'fastapi', 'ipywidgets', 'openai', 'matplotlib', 'datasketch', 'rustbpe'}, installed
    p = subprocess.run([str(venv / 'bin' / 'nanochat'), 'generate', 'Speak', '--max-tokens', '3', '--temperature', '0'],
                       capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert p.returncode == 0 and 'finish_reason=' in p.stderr, p.stdout + p.stderr

# --- torch install (tools/install_torch.py)

sys.path.insert(0, str(ROOT / 'tools'))
import install_torch

def test_torch_plan_prefers_a_local_wheel_else_the_cpu_index():
    local = ('2.13.0+cpu', 'file:///opt/wheels/torch-2.13.0%2Bcpu-cp311-cp311-manylinux_2_28_x86_64.whl')
    args, why = install_torch.plan('2.13.0', 'auto', local)
    assert args == ['install', 'torch==2.13.0+cpu'] and 'local wheel' in why
    args, why = install_torch.plan('2.13.0', 'auto', None)        # a stock machine: nothing local
    assert args == ['install', 'torch==2.13.0', '--index-url', 'https://download.pytorch.org/whl/cpu'] and 'CPU build' in why
    assert install_torch.plan('2.13.0', 'pypi')[0] == ['install', 'torch==2.13.0']
    assert install_torch.plan('2.13.0', 'https://example.org/whl/cu128')[0][-2:] == ['--index-url', 'https://example.org/whl/cu128']

def test_torch_local_candidate_reads_pip_config(tmp_path):
    "Without any pip config (a stock machine) no local wheel is found; with a find-links folder holding one, it is"
    env = {**os.environ, 'PIP_CONFIG_FILE': os.devnull, 'PIP_FIND_LINKS': '', 'PIP_NO_INDEX': '1'}
    code = 'import sys; sys.path.insert(0, "tools"); import install_torch; print(install_torch.local_candidate("2.13.0"))'
    out = lambda e: subprocess.run([sys.executable, '-c', code], cwd=ROOT, env=e, capture_output=True, text=True, timeout=300).stdout.strip()
    assert out(env) == 'None'
    wheel = tmp_path / 'torch-2.13.0+cpu-py3-none-any.whl'        # a tiny stand-in wheel: only its name and metadata are read
    import zipfile
    with zipfile.ZipFile(wheel, 'w') as z:
        z.writestr('torch-2.13.0+cpu.dist-info/METADATA', 'Metadata-Version: 2.1\nName: torch\nVersion: 2.13.0+cpu\n')
        z.writestr('torch-2.13.0+cpu.dist-info/WHEEL', 'Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n')
        z.writestr('torch-2.13.0+cpu.dist-info/RECORD', '')
    got = out({**env, 'PIP_FIND_LINKS': str(tmp_path)})
    assert got.startswith("('2.13.0+cpu', 'file://") and 'torch-2.13.0%2Bcpu-py3-none-any.whl' in got, got

def test_makefile_installs_torch_through_the_plan():
    p = subprocess.run(['make', '-n', '-W', 'setup.py', 'venv', 'TORCH_INDEX=pypi'], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert 'tools/install_torch.py --version 2.13.0 --index pypi' in p.stdout, p.stdout
    assert 'pip install torch' not in p.stdout
