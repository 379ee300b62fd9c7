"""Install the pinned torch into this Python, the CPU build unless told otherwise (run by `make venv`).

    python tools/install_torch.py [--version 2.13.0] [--index auto|pypi|URL] [--dry-run]

Stock PyPI's Linux torch wheel bundles CUDA (several GB), which a CPU-only machine does not need. So:
  auto (default)  a torch==VERSION wheel that pip finds locally (its find-links, as on our build machines) is
                  installed as it is; otherwise the CPU build from the PyTorch CPU index (CPU_INDEX below).
  pypi            plain `pip install torch==VERSION` (the CUDA build on Linux)
  URL             that index, e.g. https://download.pytorch.org/whl/cu128 for a CUDA build
A torch already importable is kept whatever it is: delete .venv (or `pip uninstall torch`) to change it.
"""
import argparse, json, os, subprocess, sys, tempfile

CPU_INDEX = 'https://download.pytorch.org/whl/cpu'

def local_candidate(version):
    "(version, url) of the torch==version wheel pip finds without any index (find-links only), or None"
    with tempfile.TemporaryDirectory() as tmp:
        report = os.path.join(tmp, 'report.json')
        p = subprocess.run([sys.executable, '-m', 'pip', 'install', '--dry-run', '--no-deps', '--no-index', '--ignore-installed',
                            '--quiet', '--report', report, f'torch=={version}'], capture_output=True, text=True)
        if p.returncode or not os.path.exists(report): return None
        items = json.load(open(report)).get('install', [])
    return next(((i['metadata']['version'], i['download_info']['url']) for i in items if i['metadata']['name'] == 'torch'), None)

def plan(version, index, local=None):
    "(pip arguments, one-line reason) for installing torch==version given `index` and the local candidate"
    if index == 'pypi': return ['install', f'torch=={version}'], f'torch=={version} as pip resolves it (on Linux the CUDA build)'
    if index != 'auto': return ['install', f'torch=={version}', '--index-url', index], f'torch=={version} from {index}'
    if local: return ['install', f'torch=={local[0]}'], f'torch {local[0]} from the local wheel {local[1]}'
    return (['install', f'torch=={version}', '--index-url', CPU_INDEX],
            f'the CPU build of torch=={version} from {CPU_INDEX} (TORCH_INDEX=pypi or a CUDA index URL for a GPU build)')

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--version', default='2.13.0')
    ap.add_argument('--index', default='auto', help='auto, pypi or an index URL')
    ap.add_argument('--dry-run', action='store_true', help='print the plan, install nothing')
    a = ap.parse_args(argv)
    try:
        import torch
        print(f'torch {torch.__version__} is already installed: keeping it'); return 0
    except ImportError: pass
    args, why = plan(a.version, a.index or 'auto', local_candidate(a.version) if (a.index or 'auto') == 'auto' else None)
    print(f'installing {why}', flush=True)
    cmd = [sys.executable, '-m', 'pip', *args]
    if a.dry_run: print(' '.join(cmd)); return 0
    rc = subprocess.call(cmd)
    if rc and '--index-url' in args:
        print(f'torch install from {args[-1]} failed: if that index cannot be reached from here, put a torch wheel in a '
              'pip find-links folder, or run `make venv TORCH_INDEX=pypi` (the CUDA build, several GB)', file=sys.stderr)
    return rc

if __name__ == '__main__': sys.exit(main())
