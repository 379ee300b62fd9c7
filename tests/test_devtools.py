"""The developer tools `make test` relies on: the notebook/library sync check, jupytext editing, skip reporting."""
import json, os, shutil, subprocess, sys, textwrap
from pathlib import Path
import pytest
from conftest import ROOT

def copy_tree(dest):
    "A copy of what the sync check reads: settings.ini, nbs/, nanochat/*.py (not a git repository)"
    shutil.copy(ROOT / 'settings.ini', dest / 'settings.ini')
    shutil.copytree(ROOT / 'nbs', dest / 'nbs', ignore=shutil.ignore_patterns('.ipynb_checkpoints'))
    shutil.copytree(ROOT / 'nanochat', dest / 'nanochat', ignore=shutil.ignore_patterns('__pycache__', 'assets', 'ui'))
    return dest

def check_sync(root):
    p = subprocess.run([sys.executable, str(ROOT / 'tools' / 'check_sync.py'), '--root', str(root)], capture_output=True, text=True, timeout=600)
    return p.returncode, p.stdout + p.stderr

def test_sync_check_reports_hand_edits_without_overwriting(tmp_path):
    root = copy_tree(tmp_path)
    subprocess.run([sys.executable, '-c', 'from nbdev.doclinks import nbdev_export; nbdev_export()'], cwd=root, check=True, timeout=600)
    rc, out = check_sync(root)                          # consistent, never committed (not even a git repo): passes
    assert rc == 0 and 'in sync' in out, out
    cli = root / 'nanochat' / 'cli.py'
    edited = cli.read_text().replace('def main(argv=None):', 'def main(argv=None):\n    print("hand edit")', 1)
    cli.write_text(edited)
    (root / 'nanochat' / 'stray.py').write_text('x = 1\n')
    before = sorted((p.name, p.read_bytes()) for p in (root / 'nanochat').glob('*.py'))
    rc, out = check_sync(root)
    assert rc == 1, out
    assert 'nanochat/cli.py: differs from what nbs/09_cli.ipynb exports' in out and '+    print("hand edit")' in out, out
    assert 'nanochat/stray.py: no notebook exports it' in out, out
    assert sorted((p.name, p.read_bytes()) for p in (root / 'nanochat').glob('*.py')) == before   # nothing overwritten or removed
    assert 'nanochat/model.py' not in out

def test_makefile_test_uses_the_copy_check():
    "make test's sync step is tools/check_sync.py and does not run nbdev_export on the working tree"
    p = subprocess.run(['make', '-n', '-W', 'setup.py', 'check-sync', 'test'], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert 'tools/check_sync.py' in p.stdout and 'nbdev_export' not in p.stdout and 'git status' not in p.stdout, p.stdout

def run_pytest(tmp_path, *flags, ci=False):
    "pytest on a one-test file that needs a binary no machine has, with this repo's conftest"
    shutil.copy(ROOT / 'tests' / 'conftest.py', tmp_path / 'conftest.py')
    (tmp_path / 'test_needs.py').write_text(textwrap.dedent('''
        from conftest import need_binary
        def test_needs_it(): need_binary('nanochat-no-such-binary', 'apt-get install nanochat-no-such-package')
        def test_other(): pass
    '''))
    env = {k: v for k, v in os.environ.items() if k != 'CI'}
    if ci: env['CI'] = 'true'
    p = subprocess.run([sys.executable, '-m', 'pytest', '-p', 'no:cacheprovider', *flags, str(tmp_path)], cwd=tmp_path,
                       capture_output=True, text=True, env=env, timeout=300)
    return p.returncode, p.stdout + p.stderr

@pytest.mark.parametrize('flags', [['-q'], ['-x', '-rfE'], []], ids=['q', 'x-rfE', 'none'])
def test_missing_system_package_skips_with_a_clear_line(tmp_path, flags):
    rc, out = run_pytest(tmp_path, *flags)
    assert rc == 0, out
    assert 'system package nanochat-no-such-binary is not installed: apt-get install nanochat-no-such-package' in out, out
    assert 'SKIPPED for missing system packages: nanochat-no-such-binary (1 test): install them with `make system-deps`' in out, out
    assert '1 passed, 1 skipped' in out, out

def test_missing_system_package_fails_under_ci(tmp_path):
    rc, out = run_pytest(tmp_path, '-q', ci=True)
    assert rc == 1 and 'nanochat-no-such-binary is missing in CI' in out and '1 failed, 1 passed' in out, out

def test_ci_script_runs_strict():
    "`.ci/run` installs the system packages, then runs `make test` with CI set, so a missing package fails"
    cmds = [l.strip() for l in (ROOT / '.ci' / 'run').read_text().splitlines() if l.strip() and not l.startswith('#')]
    assert 'export CI="${CI:-true}"' in cmds and cmds.index('make system-deps') < cmds.index('make test'), cmds

def test_jupytext_round_trip_keeps_notebooks_byte_identical(tmp_path):
    "The editing loop of tools/HELPERS.md (jupytext to percent text and back with --update, then nbdev_clean) changes nothing"
    assert not (ROOT / 'tools' / 'nbpct.py').exists()      # replaced by jupytext
    bin_ = Path(sys.executable).parent
    nbs = sorted((ROOT / 'nbs').glob('*.ipynb'))
    for nb in nbs: shutil.copy(nb, tmp_path / nb.name)
    copies = [str(tmp_path / nb.name) for nb in nbs]
    run = lambda *a: subprocess.run([str(bin_ / a[0]), *a[1:]], check=True, capture_output=True, text=True, timeout=600)
    run('jupytext', '--to', 'py:percent', '--opt', 'notebook_metadata_filter=-all', '--opt', 'cell_metadata_filter=-all', *copies)
    text = (tmp_path / '02_checkpoint.py').read_text()
    assert text.startswith('# %% [markdown]\n# # Checkpoints') and '# %%\n#| default_exp checkpoint' in text
    run('jupytext', '--to', 'ipynb', '--update', *[c[:-len('.ipynb')] + '.py' for c in copies])
    run('nbdev_clean', '--fname', str(tmp_path))
    changed = [nb.name for nb in nbs if (tmp_path / nb.name).read_bytes() != nb.read_bytes()]
    assert not changed, changed
