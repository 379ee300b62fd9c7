"""Render the playground in a real JupyterLab (loopback, headless Debian Chromium driven by Playwright), click a
token of a sample and save outputs/playground.png and outputs/playground_tokens.png, the screenshots the README
shows. Needs jupyterlab + playwright (pip) and /usr/bin/chromium; never runs `playwright install`. Every wait is on a
state (a kernel status, a widget, a text) with a generous deadline: CI runs on a busy 2-core box."""
import json, os, socket, subprocess, sys, time, urllib.request
from pathlib import Path
import pytest
from conftest import ROOT, UPSTREAM, need_binary

# outputs/playground.png (what README shows) is written only when asked: NANOCHAT_SCREENSHOTS=1
OUT = (ROOT / 'outputs' if os.environ.get('NANOCHAT_SCREENSHOTS') else Path(__import__('tempfile').mkdtemp(prefix='nanochat-pg-'))) / 'playground.png'
OUT_TOKENS = OUT.with_name('playground_tokens.png')
WAIT_MS = 180_000   # kernel start, model load and generation on a loaded 2-core box
BIN = Path(sys.executable).parent
CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
                 '--disable-component-update', '--disable-sync', '--no-first-run']

SETUP = f"""\
import torch; torch.set_num_threads(1)
from nanochat.checkpoint import DEMO_DIR
from nanochat.playground import Playground
model = DEMO_DIR if DEMO_DIR is not None and DEMO_DIR.exists() else {str(UPSTREAM / 'E4-2026-07' / 'gqa-window')!r}
pg = Playground(model, prompt='To be, or not to be, that is', device='cpu')
s = pg.sliders
s['temperature'].value, s['top_p'].value, s['max_tokens'].value, s['n'].value = 0.9, 0.8, 40, 3
pg.generate(wait=True)
s['n'].value = 1
pg.compare({{'greedy': dict(temperature=0), 'sliders': dict(), 'hot': dict(temperature=1.5, top_k=0)}}, wait=True)"""

def _notebook(path):
    cell = lambda src: dict(cell_type='code', execution_count=None, metadata={}, outputs=[], source=src)
    nb = dict(nbformat=4, nbformat_minor=5, cells=[cell(SETUP), cell('pg.widget')],
              metadata=dict(kernelspec=dict(name='python3', display_name='Python 3 (ipykernel)', language='python')))
    path.write_text(json.dumps(nb))

def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0)); return s.getsockname()[1]

def _wait_http(url, proc, timeout=180):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f'jupyter lab exited with code {proc.returncode}:\n{proc.stdout.read().decode()[-3000:]}')
        try:
            with urllib.request.urlopen(url, timeout=2): return
        except OSError: time.sleep(0.5)
    raise TimeoutError(f'jupyter lab did not answer on {url} within {timeout}s')

@pytest.mark.slow
def test_playground_screenshot(tmp_path):
    chromium = need_binary('chromium', 'make system-deps installs it')
    pytest.importorskip('jupyterlab', reason='pip install jupyterlab')
    sync_api = pytest.importorskip('playwright.sync_api', reason='pip install playwright')
    nbdir, cfg = tmp_path / 'nb', tmp_path / 'cfg'
    nbdir.mkdir(); (cfg / 'settings' / '@jupyterlab' / 'apputils-extension').mkdir(parents=True)
    (cfg / 'settings' / '@jupyterlab' / 'apputils-extension' / 'notification.jupyterlab-settings').write_text(
        json.dumps({'fetchNews': 'false', 'checkForUpdates': False}))
    _notebook(nbdir / 'playground.ipynb')
    port = _free_port()
    env = {**os.environ, 'PYTHONPATH': str(ROOT), 'JUPYTERLAB_SETTINGS_DIR': str(cfg / 'settings'),
           'JUPYTERLAB_WORKSPACES_DIR': str(cfg / 'workspaces'), 'JUPYTER_RUNTIME_DIR': str(cfg / 'runtime'),
           'PATH': f"{BIN}:{os.environ.get('PATH', '')}"}
    # jupyter from the venv: its python3 kernel ('python' in kernel.json) runs with this venv's interpreter
    proc = subprocess.Popen([str(BIN / 'jupyter'), 'lab', '--no-browser', '--ip', '127.0.0.1', '--port', str(port),
                             '--IdentityProvider.token=', '--ServerApp.password=', '--ServerApp.root_dir', str(nbdir),
                             '--LabApp.news_url=', '--LabApp.extension_manager=readonly', '--allow-root'],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=nbdir)
    try:
        _wait_http(f'http://127.0.0.1:{port}/api/status', proc)
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={'width': 1500, 'height': 1250})
            page.goto(f'http://127.0.0.1:{port}/lab/tree/playground.ipynb?reset', wait_until='domcontentloaded')
            page.set_default_timeout(WAIT_MS)
            page.wait_for_selector('.jp-Notebook .jp-Cell', timeout=WAIT_MS)
            select = page.locator('.jp-Dialog button:has-text("Select")')   # JupyterLab may ask which kernel
            try: select.click(timeout=20_000)
            except sync_api.TimeoutError: pass
            page.wait_for_selector('.jp-Notebook-ExecutionIndicator[data-status="idle"]', timeout=WAIT_MS, state='attached')
            page.click('.lm-MenuBar-itemLabel:text-is("Run")')
            page.click('.lm-Menu-itemLabel:text-is("Run All Cells")')
            button = page.locator('.jupyter-widgets button:has-text("Generate")').first
            try: button.wait_for(state='visible', timeout=WAIT_MS)
            except Exception:
                page.screenshot(path=str(tmp_path / 'failed.png')); print('screenshot of the failure:', tmp_path / 'failed.png')
                print(page.locator('.jp-OutputArea').all_inner_texts()); raise
            page.locator('.jupyter-widgets img').first.wait_for(state='visible', timeout=WAIT_MS)
            page.keyboard.press('Escape')
            page.keyboard.press('Control+b')   # hide the file browser: more room for the widget
            tokens = page.locator('.jupyter-widgets button[title^="step "]')
            tokens.first.wait_for(state='visible', timeout=WAIT_MS)          # the token views are drawn
            page.locator('.jupyter-widgets').first.scroll_into_view_if_needed()
            page.wait_for_function('document.fonts.status === "loaded"')
            OUT.parent.mkdir(exist_ok=True)
            page.screenshot(path=str(OUT))
            assert button.is_visible()
            labels = page.locator('.jupyter-widgets .widget-label').all_inner_texts()
            for want in ('temperature', 'top-k (0=off)', 'top-p', 'min-p', 'rep. penalty', 'presence pen.', 'frequency pen.', 'seed', 'samples'):
                assert want in labels, labels
            assert page.locator('.jupyter-widgets pre').count() >= 6   # 3 samples + 3 setting sets
            assert page.locator('.jupyter-widgets').get_by_text('distinct-2').count() == 3
            # click a token of sample 1: the inspector and the chart show that step
            chart = page.locator('.jupyter-widgets img').first
            before = chart.get_attribute('src')
            tok = page.locator('.jupyter-widgets button[title^="step 5:"]').first      # the first sample long enough
            tok.scroll_into_view_if_needed(); tok.click()
            page.locator('.jupyter-widgets').get_by_text('nats raw').wait_for(state='visible', timeout=WAIT_MS)
            page.wait_for_function('([el, src]) => el.getAttribute("src") !== src', arg=[chart.element_handle(), before], timeout=WAIT_MS)
            page.locator('.jupyter-widgets').get_by_text('nats raw').scroll_into_view_if_needed()
            page.mouse.wheel(0, -120)
            page.screenshot(path=str(OUT_TOKENS))
            browser.close()
        assert OUT.stat().st_size > 20_000 and OUT_TOKENS.stat().st_size > 20_000
    finally:
        proc.terminate()
        try: proc.wait(15)
        except subprocess.TimeoutExpired: proc.kill()
