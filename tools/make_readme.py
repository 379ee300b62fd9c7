"""Build README.md from nbs/index.ipynb without Quarto: run the notebook, then write its markdown,
its visible code and the code's text output. `--check` fails when README.md is stale."""
import argparse, difflib, sys
from pathlib import Path
from execnb.nbio import read_nb
from execnb.shell import CaptureShell

ROOT = Path(__file__).resolve().parent.parent
HEADER = '<!-- generated from nbs/index.ipynb by tools/make_readme.py: edit the notebook, then `make readme` -->\n\n'

def _hidden(src):
    return any(l.strip().replace(' ', '') in ('#|hide', '#|exporthide', '#|hide_input') for l in src.splitlines()[:5])

def _strip_directives(src):
    return '\n'.join(l for l in src.splitlines() if not l.lstrip().startswith('#|')).strip('\n')

def _text_outputs(cell):
    out = []
    for o in cell.get('outputs', []):
        if o.get('output_type') == 'stream': out.append(''.join(o.get('text', '')))
        elif o.get('output_type') in ('execute_result', 'display_data'):
            data = o.get('data', {})
            if 'text/markdown' in data: out.append('\n' + ''.join(data['text/markdown']) + '\n')
            elif 'text/plain' in data: out.append(''.join(data['text/plain']) + '\n')
        elif o.get('output_type') == 'error':
            raise RuntimeError(f"index.ipynb cell failed: {o.get('ename')}: {o.get('evalue')}")
    return ''.join(out)

def render(nb_path=ROOT/'nbs'/'index.ipynb'):
    nb = read_nb(nb_path)
    skip = lambda c: c.cell_type != 'code' or '#| eval: false' in ''.join(c.source)    # nbdev's own meaning
    CaptureShell(nb_path).run_all(nb, exc_stop=True, preproc=skip)
    parts = []
    for c in nb.cells:
        src = ''.join(c.source)
        if c.cell_type == 'markdown': parts.append(src.strip('\n'))
        elif c.cell_type == 'code':
            out = _text_outputs(c)
            if _hidden(src): continue
            code = '' if '#| echo: false' in src else _strip_directives(src)
            if code: parts.append(f'```python\n{code}\n```')
            if out.strip(): parts.append(out.strip('\n') if out.startswith('\n') else f'```\n{out.rstrip()}\n```')
    return HEADER + '\n\n'.join(p for p in parts if p) + '\n'

if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument('--check', action='store_true', help='fail if README.md differs from what the notebook gives')
    args = ap.parse_args()
    import os; os.chdir(ROOT/'nbs')
    text, readme = render(), ROOT/'README.md'
    if args.check:
        old = readme.read_text() if readme.exists() else ''
        if old != text:
            sys.stdout.writelines(list(difflib.unified_diff(old.splitlines(True), text.splitlines(True), 'README.md', 'from nbs/index.ipynb'))[:60])
            sys.exit('README.md is stale: run `make readme` and commit it')
        print('README.md is up to date')
    else:
        readme.write_text(text); print(f'wrote {readme}')
