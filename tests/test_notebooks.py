"""Run every notebook's cells as tests (nbdev's `test_nb`), one pytest test per notebook.
Cells flagged with a `tst_flags` flag (e.g. `#| slow`) run only with `make test SLOW=1`."""
import os
from pathlib import Path
import pytest
from nbdev.config import get_config
import nbdev.test as nbdev_test   # not `from ... import test_nb`: pytest would collect it as a test

ROOT = Path(__file__).resolve().parent.parent
NBS = sorted(p for p in (ROOT/'nbs').glob('*.ipynb') if not p.name.startswith('_'))

@pytest.mark.parametrize('nb', NBS, ids=[p.stem for p in NBS])
def test_notebook(nb):
    flags = get_config(path=ROOT).tst_flags.split()
    force = flags if os.environ.get('NANOCHAT_SLOW') else []
    ok, secs = nbdev_test.test_nb(nb, skip_flags=flags, force_flags=force, basepath=ROOT)
    assert ok, f'{nb.name} failed (traceback above)'
