"""Check that nanochat/*.py is exactly what nbs/*.ipynb export, without touching the working tree.

    python tools/check_sync.py            # exit 0 when in sync, 1 (naming each file) when not

The notebooks are exported into a temporary copy of the tree and the result is compared with the working tree's
nanochat/. Nothing needs to be committed, and a hand edit of nanochat/*.py is reported, never overwritten.
`make export` (nbdev_export) is what rewrites nanochat/ from the notebooks.
"""
import argparse, difflib, re, shutil, subprocess, sys, tempfile
from configparser import ConfigParser
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

def _cfg(root):
    c = ConfigParser(delimiters=['=']); c.read(root / 'settings.ini', encoding='utf-8')
    return c['DEFAULT']

def export_copy(root, dest):
    "Export `root`'s notebooks into a copy of its settings.ini, nbs/ and package __init__ under `dest`; the exported package folder"
    cfg = _cfg(root)
    lib, nbs = cfg.get('lib_path', 'nanochat'), cfg.get('nbs_path', 'nbs')
    shutil.copy(root / 'settings.ini', dest / 'settings.ini')
    shutil.copytree(root / nbs, dest / nbs, ignore=shutil.ignore_patterns('.ipynb_checkpoints', '__pycache__'))
    (dest / lib).mkdir(parents=True)
    if (root / lib / '__init__.py').exists(): shutil.copy(root / lib / '__init__.py', dest / lib / '__init__.py')
    p = subprocess.run([sys.executable, '-c', 'from nbdev.doclinks import nbdev_export; nbdev_export()'],
                       cwd=dest, capture_output=True, text=True)
    if p.returncode: sys.exit(f'nbdev_export failed on a copy of the notebooks:\n{p.stdout}{p.stderr}')
    return dest / lib

def _source_nb(text):
    m = re.search(r'File to edit: (\S+?\.ipynb)', text[:500])
    return m.group(1).removeprefix('../') if m else None

def compare(root, exported, lib='nanochat'):
    "Problems (one line each, then a short diff) between `exported` and `root/lib`; [] when in sync"
    have = {p.relative_to(root / lib) for p in (root / lib).rglob('*.py') if '__pycache__' not in p.parts}
    want = {p.relative_to(exported) for p in exported.rglob('*.py') if '__pycache__' not in p.parts}
    problems = []
    for rel in sorted(want | have):
        name = f'{lib}/{rel}'
        if rel not in have: problems.append(f'{name}: missing; the notebooks export it (run `make export`)'); continue
        if rel not in want:
            problems.append(f'{name}: no notebook exports it (hand-written, or left over from a renamed notebook): '
                            'move its code into a notebook or delete it'); continue
        a, b = (root / lib / rel).read_text(), (exported / rel).read_text()
        if a == b: continue
        nb = _source_nb(b)
        src = f'what {nb} exports' if nb else 'what the notebooks export'
        diff = list(difflib.unified_diff(b.splitlines(True), a.splitlines(True), f'{name} (exported)', f'{name} (working tree)', n=1))
        problems.append(f'{name}: differs from {src}: edit {nb or "the notebook"}, not {name}, then `make export`\n'
                        + ''.join('    ' + l for l in diff[:24]).rstrip('\n'))
    return problems

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--root', type=Path, default=ROOT, help='the project tree to check (default: this one)')
    a = ap.parse_args(argv)
    root = a.root.resolve()
    lib = _cfg(root).get('lib_path', 'nanochat')
    with tempfile.TemporaryDirectory(prefix='nanochat-sync-') as tmp:
        problems = compare(root, export_copy(root, Path(tmp)), lib)
    if problems:
        print(f'{lib}/ is not what nbs/ exports ({len(problems)} file(s)); nothing was changed:')
        for p in problems: print('  ' + p)
        return 1
    print(f'notebooks and {lib}/ are in sync')
    return 0

if __name__ == '__main__': sys.exit(main())
