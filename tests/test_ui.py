"""Browser tests of the chat page in `nanochat/ui/`: headless Chromium (Debian's) driven by Playwright.

Most tests run against a small stand-in server defined here (FastAPI on loopback) that serves `nanochat/ui/`,
streams canned replies the way an OpenAI server does, records every request body, and can be told to answer
429/401/400 or to drop the connection. When `nanochat/server.py` exists the last tests also run against the
real server with the tiny fixture model (gibberish, but it streams)."""
import asyncio, contextlib, json, os, re, socket, subprocess, sys, threading, time, urllib.request
from pathlib import Path

import pytest
from conftest import ROOT, UPSTREAM, need_binary

pytest.importorskip('playwright', reason='pip install playwright (the browser itself comes from apt: chromium)')
from playwright.sync_api import sync_playwright, expect

UI = ROOT / 'nanochat' / 'ui'
OUT = ROOT / 'outputs'
# Screenshots land in outputs/ (what README shows) only when asked: NANOCHAT_SCREENSHOTS=1 make test
SHOTS = OUT if os.environ.get('NANOCHAT_SCREENSHOTS') else Path(__import__('tempfile').mkdtemp(prefix='nanochat-ui-'))
DEMO_DIR = ROOT / 'nanochat' / 'assets' / 'demo'
MODEL_DIR = UPSTREAM / 'E4-2026-07' / 'gqa-window'
CHROME_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
               '--disable-component-update', '--disable-sync', '--no-first-run']
XSS = '<script>window.__xss=1</script><img src=x onerror="window.__xss=2">'
NORMAL = ['Hello', ' from', ' the', ' stand-in', '.']
CTX = 512

def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0)); return s.getsockname()[1]

def get_json(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as r: return json.loads(r.read())

def real_server_available():
    return (ROOT / 'nanochat' / 'server.py').exists() and MODEL_DIR.exists()

# ---------------------------------------------------------------- the stand-in server
class StandIn:
    "Fake OpenAI-style server: `mode` picks the next answers; `bodies`/`headers` record what the page sent"
    def __init__(self):
        self.mode, self.bodies, self.headers, self.busy, self.key = 'normal', [], [], 0, 'sekrit'
        self.app = self._make_app()

    def reset(self, mode='normal'):
        self.mode, self.bodies, self.headers = mode, [], []

    def _make_app(self):
        from fastapi import FastAPI, Request
        from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
        app, me = FastAPI(), self

        def err(status, message, typ, headers=None):
            return JSONResponse({'error': {'message': message, 'type': typ, 'param': None, 'code': None}},
                                status_code=status, headers=headers)

        @app.get('/')
        def index(): return FileResponse(UI / 'index.html')

        @app.get('/ui/{name}')
        def asset(name: str):
            p = UI / name
            return FileResponse(p) if p.is_file() and p.parent == UI else err(404, 'no such file', 'not_found')

        @app.get('/health')
        def health(): return {'status': 'ok'}

        @app.get('/v1/models')
        def models(request: Request):
            if me.mode == '401' and request.headers.get('authorization') != f'Bearer {me.key}':
                return err(401, 'Missing or invalid API key.', 'authentication_error')
            return {'object': 'list', 'data': [{'id': 'stand-in', 'object': 'model', 'max_model_len': CTX}]}

        @app.get('/stats')
        def stats(): return {'slots_busy': me.busy, 'slots_free': 1 - me.busy, 'queue_depth': 0}

        @app.post('/v1/chat/completions')
        async def chat(request: Request):
            body = await request.json()
            me.bodies.append(body); me.headers.append(dict(request.headers))
            mode = me.mode
            if mode == '429': return err(429, 'All 1 slots are busy and the queue is full.', 'rate_limit_error', {'Retry-After': '7'})
            if mode == '400': return err(400, 'max_tokens must be at most 512 for this model', 'invalid_request_error')
            if mode == '401' and request.headers.get('authorization') != f'Bearer {me.key}':
                return err(401, 'Missing or invalid API key.', 'authentication_error')
            pieces = {'xss': [XSS[:20], XSS[20:45], XSS[45:]], 'long': ['word '] * 3000}.get(mode, NORMAL)

            def chunk(**kw): return 'data: ' + json.dumps(kw) + '\n\n'
            async def gen():
                me.busy += 1
                try:
                    for i, p in enumerate(pieces):
                        if mode == 'drop' and i == 2: raise ConnectionAbortedError('stand-in drops the connection')
                        if mode == 'stream_error' and i == 2:
                            yield chunk(error={'message': 'engine failed: out of KV cache', 'type': 'server_error', 'param': None, 'code': None})
                            return
                        if await request.is_disconnected(): return
                        yield chunk(choices=[{'index': 0, 'delta': {'content': p}, 'finish_reason': None}])
                        await asyncio.sleep(0.02 if mode != 'long' else 0.03)
                    yield chunk(choices=[{'index': 0, 'delta': {}, 'finish_reason': 'stop'}])
                    yield chunk(choices=[], usage={'prompt_tokens': 3, 'completion_tokens': len(pieces), 'total_tokens': 3 + len(pieces)})
                    yield 'data: [DONE]\n\n'
                finally: me.busy -= 1
            return StreamingResponse(gen(), media_type='text/event-stream')
        return app

@pytest.fixture(scope='module')
def standin():
    import uvicorn
    s = StandIn()
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(s.app, host='127.0.0.1', port=port, log_level='critical'))
    t = threading.Thread(target=server.run, daemon=True); t.start()
    for _ in range(200):
        if server.started: break
        time.sleep(0.05)
    s.url = f'http://127.0.0.1:{port}'
    yield s
    server.should_exit = True; t.join(5)

@pytest.fixture(scope='module')
def browser():
    exe = need_binary('chromium', 'make system-deps installs it')
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, args=CHROME_ARGS)
        yield b
        b.close()

@pytest.fixture
def page(browser, standin):
    "A fresh page (empty localStorage) on the stand-in, mode reset to normal"
    standin.reset()
    ctx = browser.new_context(viewport={'width': 1280, 'height': 800})
    pg = ctx.new_page(); pg.set_default_timeout(10_000)
    errors = []
    pg.on('pageerror', lambda e: errors.append(str(e)))
    pg.goto(standin.url + '/')
    expect(pg.locator('#model')).to_have_value('stand-in')
    yield pg
    ctx.close()
    assert not errors, f'JavaScript errors on the page: {errors}'

def send(pg, text):
    pg.fill('#input', text); pg.press('#input', 'Enter')

def last_reply(pg): return pg.locator('.msg.assistant').last

def wait_done(pg):
    expect(pg.locator('#send')).to_be_enabled(); expect(pg.locator('#stop')).to_be_disabled()

# ---------------------------------------------------------------- tests against the stand-in
def test_streamed_reply_and_request_shape(page, standin):
    expect(page.locator('#max_tokens')).to_have_attribute('max', str(CTX))   # from /v1/models max_model_len
    page.fill('#input', 'line one'); page.press('#input', 'Shift+Enter'); page.keyboard.type('line two')
    assert page.input_value('#input') == 'line one\nline two' and standin.bodies == []   # Shift+Enter: newline only
    page.press('#input', 'Enter')
    expect(page.locator('.msg.user .bubble')).to_have_text('line one\nline two')
    expect(last_reply(page).locator('.bubble')).to_have_text('Hello from the stand-in.')
    wait_done(page)
    meta = last_reply(page).locator('.meta .stats')
    expect(meta).to_contain_text('tok/s'); expect(meta).to_contain_text('finish: stop'); expect(meta).to_contain_text('5 tokens')
    assert page.input_value('#input') == ''
    (b,) = standin.bodies
    assert b['stream'] is True and b['stream_options'] == {'include_usage': True}
    assert b['model'] == 'stand-in' and b['messages'] == [{'role': 'user', 'content': 'line one\nline two'}]
    assert b['temperature'] == 0.6 and b['top_k'] == 50 and b['top_p'] == 1 and b['max_tokens'] == CTX // 2   # automatic: half the context
    assert 'seed' not in b and 'authorization' not in standin.headers[0]
    # the whole conversation goes back with the next turn
    send(page, 'again'); wait_done(page)
    assert [m['role'] for m in standin.bodies[1]['messages']] == ['user', 'assistant', 'user']
    assert standin.bodies[1]['messages'][1]['content'] == 'Hello from the stand-in.'
    page.click('#new-chat')
    expect(page.locator('.msg')).to_have_count(0)

def test_settings_apply_to_next_request_and_persist(page, standin):
    gear = page.locator('#gear')
    expect(gear).to_have_attribute('aria-expanded', 'false'); expect(page.locator('#settings')).to_be_hidden()
    gear.click()
    expect(gear).to_have_attribute('aria-expanded', 'true'); expect(page.locator('#settings')).to_be_visible()
    expect(page.locator('#temperature')).to_be_focused()
    for _ in range(15): page.keyboard.press('ArrowRight')     # move the slider by keyboard: 0.6 + 15*0.05
    expect(page.locator('#temperature-val')).to_have_text('1.35')
    page.fill('#top_k', '0'); expect(page.locator('#top_k-val')).to_have_text('off')
    page.fill('#top_p', '0.9'); expect(page.locator('#top_p-val')).to_have_text('0.9')
    page.fill('#max_tokens', '100'); expect(page.locator('#max_tokens-val')).to_have_text('100')
    page.fill('#seed', '42'); page.fill('#system', 'Be brief.')
    send(page, 'hi'); wait_done(page)
    b = standin.bodies[-1]
    assert b['temperature'] == 1.35 and 'top_k' not in b and b['top_p'] == 0.9 and b['max_tokens'] == 100 and b['seed'] == 42
    assert b['messages'][0] == {'role': 'system', 'content': 'Be brief.'}
    page.reload()                                               # persisted in localStorage, panel still open
    expect(page.locator('#settings')).to_be_visible()
    expect(page.locator('#temperature')).to_have_value('1.35'); expect(page.locator('#temperature-val')).to_have_text('1.35')
    expect(page.locator('#top_k-val')).to_have_text('off'); expect(page.locator('#max_tokens')).to_have_value('100')
    expect(page.locator('#seed')).to_have_value('42'); expect(page.locator('#system')).to_have_value('Be brief.')
    page.locator('#temperature').fill('0.2'); page.fill('#seed', '')
    send(page, 'hi'); wait_done(page)
    b = standin.bodies[-1]
    assert b['temperature'] == 0.2 and 'seed' not in b
    page.keyboard.press('Tab'); page.focus('#system'); page.keyboard.press('Escape')      # Escape closes, focus back on gear
    expect(page.locator('#settings')).to_be_hidden(); expect(gear).to_be_focused()

def test_edit_resend_and_regenerate(page, standin):
    send(page, 'first'); wait_done(page)
    send(page, 'second'); wait_done(page)
    expect(page.locator('.msg')).to_have_count(4)
    page.get_by_role('button', name='Regenerate').click(); wait_done(page)
    assert standin.bodies[-1]['messages'] == standin.bodies[1]['messages']     # same history, new reply
    expect(page.locator('.msg')).to_have_count(4)
    page.locator('.msg.user').first.get_by_role('button', name='Edit').click()
    edit = page.locator('#edit-input')
    expect(edit).to_be_focused(); expect(edit).to_have_value('first')
    edit.fill('changed'); edit.press('Enter'); wait_done(page)
    assert standin.bodies[-1]['messages'] == [{'role': 'user', 'content': 'changed'}]
    expect(page.locator('.msg')).to_have_count(2)                  # everything after the edited message is gone
    expect(page.locator('.msg.user .bubble')).to_have_text('changed')

def test_stop_aborts_and_frees_slot(page, standin):
    standin.reset('long')
    send(page, 'go on forever')
    expect(last_reply(page).locator('.bubble')).to_contain_text('word word word')
    assert get_json(standin.url + '/stats')['slots_busy'] == 1
    expect(page.locator('#send')).to_be_disabled()
    page.click('#stop')
    wait_done(page)
    for _ in range(100):
        if get_json(standin.url + '/stats')['slots_busy'] == 0: break
        time.sleep(0.05)
    assert get_json(standin.url + '/stats')['slots_busy'] == 0
    expect(last_reply(page).locator('.meta .stats')).to_contain_text('stopped')
    n = len(last_reply(page).locator('.bubble').text_content())
    time.sleep(0.3)
    assert len(last_reply(page).locator('.bubble').text_content()) == n        # nothing more arrives
    expect(page.locator('#error')).to_be_hidden()

def test_model_output_is_text_not_html(page, standin):
    standin.reset('xss')
    send(page, '<b>bold?</b><img src=y onerror="window.__xss=3">')
    expect(last_reply(page).locator('.bubble')).to_have_text(XSS); wait_done(page)
    expect(page.locator('.msg.user .bubble')).to_have_text('<b>bold?</b><img src=y onerror="window.__xss=3">')
    page.wait_for_timeout(200)
    assert page.evaluate('window.__xss') is None
    assert page.locator('#log img, #log script, #log b').count() == 0

def test_errors_are_readable(page, standin):
    err = page.locator('#error')
    standin.reset('429'); send(page, 'hi')
    expect(err).to_be_visible(); expect(err).to_have_attribute('role', 'alert')
    expect(err).to_contain_text('429'); expect(err).to_contain_text('Retry in 7 seconds')
    expect(page.locator('.msg.assistant')).to_have_count(0); wait_done(page)

    standin.reset('400'); page.get_by_role('button', name='Get reply').click()
    expect(err).to_contain_text('400'); expect(err).to_contain_text('max_tokens must be at most 512 for this model')

    standin.reset('drop'); page.get_by_role('button', name='Get reply').click()
    expect(err).to_contain_text('Connection lost'); wait_done(page)
    expect(last_reply(page).locator('.bubble')).to_have_text(re.compile(r'^Hello'))   # the partial reply is kept
    expect(last_reply(page).locator('.meta .stats')).to_contain_text('connection lost')

    standin.reset('stream_error'); page.get_by_role('button', name='Regenerate').click()
    expect(err).to_contain_text('engine failed: out of KV cache'); wait_done(page)
    expect(last_reply(page).locator('.meta .stats')).to_contain_text('finish: error')

    standin.reset('401'); page.click('#new-chat'); send(page, 'hi')
    expect(err).to_contain_text('401'); expect(err).to_contain_text('API key')
    expect(page.locator('#settings')).to_be_visible(); expect(page.locator('#api-key')).to_be_focused()
    page.fill('#api-key', standin.key)
    page.get_by_role('button', name='Get reply').click(); wait_done(page)
    expect(last_reply(page).locator('.bubble')).to_have_text('Hello from the stand-in.'); expect(err).to_be_hidden()
    assert standin.headers[-1]['authorization'] == f'Bearer {standin.key}'
    page.reload()                                                                # the key is kept in localStorage
    expect(page.locator('#api-key')).to_have_value(standin.key)

def test_api_key_asked_at_load(browser, standin):
    "A server with keys answers /v1/models with 401: the page says so, opens the key field, and retries with the key"
    standin.reset('401')
    ctx = browser.new_context(); pg = ctx.new_page(); pg.set_default_timeout(10_000)
    pg.goto(standin.url + '/')
    expect(pg.locator('#error')).to_contain_text('401'); expect(pg.locator('#settings')).to_be_visible()
    pg.fill('#api-key', 'wrong'); pg.press('#api-key', 'Enter'); pg.keyboard.press('Tab')
    expect(pg.locator('#error')).to_contain_text('401')
    pg.fill('#api-key', standin.key); pg.keyboard.press('Tab')       # change event: the model list is fetched again
    expect(pg.locator('#model')).to_have_value('stand-in'); expect(pg.locator('#error')).to_be_hidden()
    send(pg, 'hi'); expect(last_reply(pg).locator('.bubble')).to_have_text('Hello from the stand-in.')
    ctx.close()

def test_keyboard_only(page, standin):
    page.focus('a.skip')                                  # first stop in the tab order: the skip link
    seen = []
    for _ in range(8):
        page.keyboard.press('Tab')
        seen.append(page.evaluate('document.activeElement.id || document.activeElement.className'))
    assert all(i in seen for i in ['model', 'new-chat', 'gear', 'log', 'input', 'send']), seen
    assert seen.index('model') < seen.index('new-chat') < seen.index('gear') < seen.index('log') < seen.index('input') < seen.index('send')
    page.focus('#gear'); page.keyboard.press('Enter')
    expect(page.locator('#settings')).to_be_visible()
    outline = page.evaluate('getComputedStyle(document.activeElement).outlineStyle')
    assert outline not in ('none', ''), 'focused control has no visible focus ring'
    for sel in ['#temperature', '#top_k', '#top_p', '#max_tokens', '#seed', '#system', '#api-key', '#model', '#input']:
        label = page.evaluate(f'(() => {{ const e = document.querySelector("{sel}"); return (e.labels && e.labels[0] ? e.labels[0].textContent : "") + (e.getAttribute("aria-label") || ""); }})()')
        assert label.strip(), f'{sel} has no label'
    page.focus('#input'); page.keyboard.type('hello'); page.keyboard.press('Enter'); wait_done(page)
    expect(page.get_by_role('button', name='Regenerate')).to_be_visible()

def test_phone_layout(browser, standin):
    standin.reset()
    ctx = browser.new_context(viewport={'width': 375, 'height': 740}, is_mobile=True, has_touch=True)
    pg = ctx.new_page(); pg.set_default_timeout(10_000)
    pg.goto(standin.url + '/'); expect(pg.locator('#model')).to_have_value('stand-in')
    def check():
        assert pg.evaluate('document.documentElement.scrollWidth') <= 375
        for sel in ['#input', '#send']:
            expect(pg.locator(sel)).to_be_in_viewport(ratio=1)
    check()
    send(pg, 'a' * 300 + ' ' + 'x ' * 200); wait_done(pg)                   # long unbroken words wrap
    check()
    assert pg.locator('header').bounding_box()['height'] < 60, 'the header should fit on one line'
    pg.screenshot(path=str(SHOTS / 'ui_phone.png'))
    pg.click('#gear'); expect(pg.locator('#settings')).to_be_visible()
    assert pg.evaluate('document.documentElement.scrollWidth') <= 375
    expect(pg.locator('#temperature')).to_be_in_viewport()
    pg.screenshot(path=str(SHOTS / 'ui_phone_settings.png'))
    pg.click('#settings-close'); check()
    ctx.close()

def test_screenshot_standin(page, standin):
    "Desktop screenshot on the stand-in"
    page.click('#gear')
    send(page, 'What is the capital of France?'); wait_done(page)
    page.screenshot(path=str(SHOTS / 'ui_chat_standin.png'))

# ---------------------------------------------------------------- tests against the real server
@contextlib.contextmanager
def nanochat_server(*args):
    "`nanochat serve` in a subprocess on a free loopback port; yields its URL once /health answers 200"
    port = free_port()
    code = 'import sys; from nanochat.server import serve_cli; sys.exit(serve_cli(sys.argv[1:]))'
    proc = subprocess.Popen([sys.executable, '-c', code, *args, '--host', '127.0.0.1', '--port', str(port)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f'http://127.0.0.1:{port}'
    try:
        for _ in range(300):
            if proc.poll() is not None: pytest.fail(f'nanochat server exited early:\n{proc.stdout.read()[-3000:]}')
            try:
                get_json(url + '/health', timeout=1); break
            except Exception: time.sleep(0.1)
        else: pytest.fail('nanochat server did not answer /health within 30 s')
        yield url
    finally:
        proc.terminate()
        try: proc.wait(10)
        except subprocess.TimeoutExpired: proc.kill()

@pytest.fixture(scope='module')
def real_server():
    if not real_server_available(): pytest.skip('nanochat/server.py does not exist yet')
    with nanochat_server('--model', str(MODEL_DIR)) as url: yield url

def test_bundled_demo_model_chat(browser):
    "`nanochat serve` with no --model serves the bundled demo model; a Shakespeare request gets a reply that ends its turn"
    if not DEMO_DIR.exists(): pytest.fail(f'{DEMO_DIR} is missing: run `make demo-model`')
    with nanochat_server() as url:
        ctx = browser.new_context(viewport={'width': 1280, 'height': 800})
        pg = ctx.new_page(); pg.set_default_timeout(20_000)
        pg.goto(url + '/')
        expect(pg.locator('#model')).to_have_value('nanochat-demo')
        pg.click('#gear')
        pg.fill('#temperature', '0.8'); pg.fill('#seed', '1'); pg.fill('#max_tokens', '120')
        for prompt in ['Give me a speech by Juliet.', 'Who are you?']:
            send(pg, prompt); wait_done(pg)
            expect(last_reply(pg).locator('.bubble')).not_to_have_text('')
            expect(last_reply(pg).locator('.meta .stats')).to_contain_text('finish: stop')
        expect(pg.locator('#error')).to_be_hidden()
        pg.screenshot(path=str(SHOTS / 'ui_chat.png'))
        ctx.close()

def test_real_server_chat_settings_stop(browser, real_server):
    ctx = browser.new_context(viewport={'width': 1280, 'height': 800})
    pg = ctx.new_page(); pg.set_default_timeout(20_000)
    errors, bodies = [], []
    pg.on('pageerror', lambda e: errors.append(str(e)))
    pg.on('request', lambda r: bodies.append(r.post_data_json) if r.url.endswith('/v1/chat/completions') else None)
    # The random model may end a reply at any step, so the test (not the page) adds a logit_bias banning the
    # special tokens (503..511 in the fixture's vocab): replies then run to max_tokens.
    def long_reply(route):
        body = route.request.post_data_json
        body['logit_bias'] = {str(t): -100 for t in range(503, 512)}
        route.continue_(post_data=json.dumps(body))
    pg.route('**/v1/chat/completions', long_reply)
    pg.goto(real_server + '/')
    model = get_json(real_server + '/v1/models')['data'][0]
    expect(pg.locator('#model')).to_have_value(model['id'])
    if model.get('max_model_len'): expect(pg.locator('#max_tokens')).to_have_attribute('max', str(model['max_model_len']))
    pg.click('#gear')
    pg.fill('#max_tokens', '48'); pg.fill('#temperature', '0.9'); pg.fill('#seed', '7')
    send(pg, 'Hello there!')
    expect(last_reply(pg).locator('.bubble')).not_to_have_text('')
    wait_done(pg)
    expect(last_reply(pg).locator('.meta .stats')).to_contain_text('tok/s')
    expect(last_reply(pg).locator('.meta .stats')).to_contain_text('48 tokens')
    expect(last_reply(pg).locator('.meta .stats')).to_contain_text('finish: length')
    expect(pg.locator('#error')).to_be_hidden()
    assert bodies[-1]['temperature'] == 0.9 and bodies[-1]['max_tokens'] == 48 and bodies[-1]['seed'] == 7
    pg.screenshot(path=str(SHOTS / 'ui_chat_fixture.png'))
    # stop a long reply: the server frees the slot
    pg.click('#new-chat')
    pg.fill('#max_tokens', str(int(pg.get_attribute('#max_tokens', 'max')) - 64))
    send(pg, 'Tell me a long story.')
    expect(last_reply(pg).locator('.bubble')).not_to_have_text('')
    expect(pg.locator('#stop')).to_be_enabled()
    for _ in range(200):
        if get_json(real_server + '/stats').get('slots_busy', 0) >= 1: break
        time.sleep(0.02)
    assert get_json(real_server + '/stats')['slots_busy'] == 1
    pg.click('#stop'); wait_done(pg)
    expect(last_reply(pg).locator('.meta .stats')).to_contain_text('stopped')
    for _ in range(100):
        if get_json(real_server + '/stats').get('slots_busy') == 0: break
        time.sleep(0.05)
    assert get_json(real_server + '/stats').get('slots_busy') == 0
    assert bodies[-1]['max_tokens'] >= 400
    ctx.close()
    assert not errors, errors
