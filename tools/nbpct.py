"""Author notebooks as plain text: convert between `# %%` percent scripts and .ipynb.

    python tools/nbpct.py to-nb  draft.py nbs/03_sampler.ipynb
    python tools/nbpct.py to-pct nbs/03_sampler.ipynb draft.py

Cells start with `# %%` (code) or `# %% [markdown]` (markdown; every line prefixed by `# `).
The .ipynb stays the source of truth; this is only an editing aid.
"""
import json, sys
from pathlib import Path

def _cell(kind, lines):
    while lines and not lines[-1].strip(): lines.pop()
    while lines and not lines[0].strip(): lines.pop(0)
    if kind == 'markdown':
        lines = [l[2:] if l.startswith('# ') else (l[1:] if l.startswith('#') else l) for l in lines]
    src = [l + '\n' for l in lines]
    if src: src[-1] = src[-1][:-1]
    c = {'cell_type': kind, 'metadata': {}, 'source': src}
    if kind == 'code': c.update(execution_count=None, outputs=[])
    return c

def pct_to_nb(text):
    "Parse a percent script into a notebook dict"
    cells, kind, buf = [], None, []
    for line in text.splitlines():
        if line.startswith('# %%'):
            if kind is not None: cells.append(_cell(kind, buf))
            kind, buf = ('markdown' if '[markdown]' in line else 'code'), []
        else: buf.append(line)
    if kind is not None: cells.append(_cell(kind, buf))
    return {'cells': cells, 'metadata': {'kernelspec': {'display_name': 'python3', 'language': 'python', 'name': 'python3'}},
            'nbformat': 4, 'nbformat_minor': 5}

def nb_to_pct(nb):
    "Render a notebook dict as a percent script"
    out = []
    for c in nb['cells']:
        src = ''.join(c['source'])
        if c['cell_type'] == 'markdown':
            out.append('# %% [markdown]\n' + '\n'.join(('# ' + l).rstrip() for l in src.splitlines()))
        else: out.append('# %%\n' + src)
    return '\n\n'.join(out) + '\n'

if __name__ == '__main__':
    cmd, src, dst = sys.argv[1:4]
    if cmd == 'to-nb': Path(dst).write_text(json.dumps(pct_to_nb(Path(src).read_text()), indent=1, ensure_ascii=False) + '\n')
    elif cmd == 'to-pct': Path(dst).write_text(nb_to_pct(json.loads(Path(src).read_text())))
    else: sys.exit(f'unknown command {cmd!r}: use to-nb or to-pct')
