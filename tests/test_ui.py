"""Browser tests of the chat page in `nanochat/ui/`: headless Chromium (Debian's) driven by Playwright.

Most tests run against a small stand-in server defined here (FastAPI on loopback) that serves `nanochat/ui/` under
the strict CSP the real server sends (no inline script), streams canned replies (with logprobs) the way an OpenAI
server does, records every request body, and can be told to answer 429/401/400 or to drop the connection. The last
tests run the real server with the tiny fixture model and with the bundled demo model.

Every wait is on a state (an element, a request, a counter) with a generous deadline: CI runs on a busy 2-core box."""
import asyncio, contextlib, json, math, os, re, socket, subprocess, sys, threading, time, urllib.request
from pathlib import Path

import pytest
from conftest import ROOT, UPSTREAM, need_binary

pytest.importorskip('playwright', reason='pip install playwright (the browser itself comes from apt: chromium)')
from playwright.sync_api import sync_playwright, expect
from nanochat.sampler import DEFAULTS

UI = ROOT / 'nanochat' / 'ui'
OUT = ROOT / 'outputs'
# Screenshots land in outputs/ (what README shows) only when asked: NANOCHAT_SCREENSHOTS=1 make test
SHOTS = OUT if os.environ.get('NANOCHAT_SCREENSHOTS') else Path(__import__('tempfile').mkdtemp(prefix='nanochat-ui-'))
DEMO_DIR = ROOT / 'nanochat' / 'assets' / 'demo'
MODEL_DIR = UPSTREAM / 'E4-2026-07' / 'gqa-window'
CHROME_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
               '--disable-component-update', '--disable-sync', '--no-first-run']
WAIT_MS = 60_000          # every Playwright wait: long enough for a loaded CI box, short enough to fail a hang
expect.set_options(timeout=WAIT_MS)
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "frame-ancestors 'none'; base-uri 'none'; object-src 'none'")
MODEL_ID = 'nanochat-demo'
XSS = '<script>window.__xss=1</script><img src=x onerror="window.__xss=2">'
XSS_MD = ['[click me](javascript:window.__xss=4)', '\n\n<a href="javascript:window.__xss=5">raw link</a>',
          '\n\n![pic](x" onerror="window.__xss=6)', '\n\n<img src=x onerror="window.__xss=7">',
          '\n\n<svg onload="window.__xss=8"></svg><iframe src="javascript:window.__xss=9"></iframe>',
          '\n\n[data](data:text/html,<script>window.__xss=10</script>) and <details open ontoggle="window.__xss=11">x</details>']
MD = ['# Title\n\nSome **bold** and `code`.\n\n', '- one\n- two\n\n', '```python\nprint("hi")\n```\n\n', 'done.']
NORMAL = ['Hello', ' from', ' the', ' stand-in', '.']
PROBS = [0.9, 0.5, 0.05, 0.7, 0.99]          # the stand-in's probability for each NORMAL piece
CTX = 512

def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0)); return s.getsockname()[1]

def get_json(url, timeout=10):
    with urllib.request.urlopen(url, timeout=timeout) as r: return json.loads(r.read())

def wait_for(cond, what, timeout=60):
    "Poll `cond()` until true; fail naming `what` after `timeout` seconds"
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if cond(): return
        time.sleep(0.05)
    pytest.fail(f'timed out after {timeout}s waiting for {what}')

def real_server_available():
    return (ROOT / 'nanochat' / 'server.py').exists() and MODEL_DIR.exists()

# ---------------------------------------------------------------- the stand-in server
class StandIn:
    "Fake OpenAI-style server: `mode` picks the next answers; `bodies`/`headers` record what the page sent"
    def __init__(self):
        self.mode, self.bodies, self.headers, self.busy, self.key = 'normal', [], [], 0, 'sekrit'
        self.defaults = dict(DEFAULTS)
        self.app = self._make_app()

    def reset(self, mode='normal'):
        self.mode, self.bodies, self.headers, self.defaults = mode, [], [], dict(DEFAULTS)

    def _make_app(self):
        from fastapi import FastAPI, Request
        from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
        app, me = FastAPI(), self

        def err(status, message, typ, headers=None):
            return JSONResponse({'error': {'message': message, 'type': typ, 'param': None, 'code': None}},
                                status_code=status, headers=headers)

        @app.middleware('http')
        async def csp(request, call_next):
            r = await call_next(request)
            r.headers['Content-Security-Policy'] = CSP; r.headers['X-Content-Type-Options'] = 'nosniff'
            return r

        @app.get('/')
        def index(): return FileResponse(UI / 'index.html')

        @app.get('/favicon.ico')
        def favicon(): return FileResponse(UI / 'favicon.ico', media_type='image/x-icon')

        @app.get('/ui/{name:path}')
        def asset(name: str):
            p = (UI / name).resolve()
            return FileResponse(p) if p.is_file() and UI.resolve() in p.parents else err(404, 'no such file', 'not_found')

        @app.get('/health')
        def health(): return {'status': 'ok'}

        def authorized(request):
            return me.mode != '401' or request.headers.get('authorization') == f'Bearer {me.key}'

        @app.get('/v1/models')
        def models(request: Request):
            if not authorized(request): return err(401, 'Missing or invalid API key.', 'authentication_error')
            return {'object': 'list', 'data': [{'id': MODEL_ID, 'object': 'model', 'max_model_len': CTX}]}

        @app.get('/v1/defaults')
        def defaults(request: Request):
            if not authorized(request): return err(401, 'Missing or invalid API key.', 'authentication_error')
            return me.defaults

        @app.get('/stats')
        def stats(): return {'slots_busy': me.busy, 'slots_free': 1 - me.busy, 'queue_depth': 0}

        @app.post('/v1/chat/completions')
        async def chat(request: Request):
            body = await request.json()
            me.bodies.append(body); me.headers.append(dict(request.headers))
            mode = me.mode
            if mode == '429': return err(429, 'All 1 slots are busy and the queue is full.', 'rate_limit_error', {'Retry-After': '7'})
            if mode == '400': return err(400, 'max_tokens must be at most 512 for this model', 'invalid_request_error')
            if not authorized(request): return err(401, 'Missing or invalid API key.', 'authentication_error')
            pieces = {'xss': [XSS[:20], XSS[20:45], XSS[45:]], 'long': ['word '] * 3000, 'md': MD, 'xss_md': XSS_MD}.get(mode, NORMAL)

            def chunk(**kw): return 'data: ' + json.dumps(kw) + '\n\n'
            def logprobs(i, p):
                if not body.get('logprobs'): return None
                q = PROBS[i % len(PROBS)]
                top = [(p, q)] + [(f'alt{j}', (1 - q) / (j + 2)) for j in range(body.get('top_logprobs') or 0)]
                top = sorted(top, key=lambda x: -x[1])[:body.get('top_logprobs') or 0]
                return {'content': [{'token': p, 'logprob': math.log(q), 'bytes': list(p.encode()),
                                     'top_logprobs': [{'token': t, 'logprob': math.log(x), 'bytes': list(t.encode())} for t, x in top]}]}
            async def gen():
                me.busy += 1
                try:
                    yield chunk(choices=[{'index': 0, 'delta': {'role': 'assistant', 'content': ''}, 'logprobs': None, 'finish_reason': None}])
                    for i, p in enumerate(pieces):
                        if mode == 'drop' and i == 2: raise ConnectionAbortedError('stand-in drops the connection')
                        if mode == 'stream_error' and i == 2:
                            yield chunk(error={'message': 'engine failed: out of KV cache', 'type': 'server_error', 'param': None, 'code': None})
                            return
                        if await request.is_disconnected(): return
                        yield chunk(choices=[{'index': 0, 'delta': {'content': p}, 'logprobs': logprobs(i, p), 'finish_reason': None}])
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
    wait_for(lambda: server.started, 'the stand-in server to start')
    s.url = f'http://127.0.0.1:{port}'
    yield s
    server.should_exit = True; t.join(30)

@pytest.fixture(scope='module')
def browser():
    exe = need_binary('chromium', 'make system-deps installs it')
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, args=CHROME_ARGS)
        yield b
        b.close()

CSP_WATCH = "window.__csp = []; document.addEventListener('securitypolicyviolation', e => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));"

def open_page(browser, url, **ctx_kw):
    "A fresh context (empty localStorage) and page at `url`, watching for JS errors and CSP violations"
    ctx = browser.new_context(**{'viewport': {'width': 1280, 'height': 800}, **ctx_kw})
    pg = ctx.new_page(); pg.set_default_timeout(WAIT_MS)
    pg.errors = []
    pg.on('pageerror', lambda e: pg.errors.append(str(e)))
    pg.add_init_script(CSP_WATCH)
    pg.goto(url)
    return ctx, pg

def check_clean(pg):
    assert not pg.errors, f'JavaScript errors on the page: {pg.errors}'
    assert pg.evaluate('window.__csp') == [], f'CSP violations: {pg.evaluate("window.__csp")}'

@pytest.fixture
def page(browser, standin):
    "A fresh page (empty localStorage) on the stand-in, mode reset to normal"
    standin.reset()
    ctx, pg = open_page(browser, standin.url + '/')
    expect(pg.locator('#model')).to_have_value(MODEL_ID)
    yield pg
    check_clean(pg)
    ctx.close()

def send(pg, text):
    pg.fill('#input', text); pg.press('#input', 'Enter')

def last_reply(pg): return pg.locator('.msg.assistant').last

def wait_done(pg):
    expect(pg.locator('#send')).to_be_enabled(); expect(pg.locator('#stop')).to_be_disabled()

# ---------------------------------------------------------------- the page itself
def test_no_inline_script_or_handlers():
    "The server's CSP has no 'unsafe-inline': the page must not need it"
    html = (UI / 'index.html').read_text()
    assert not re.search(r'<script(?![^>]*\bsrc=)[^>]*>', html), 'inline <script> in index.html'
    assert not re.search(r'\son[a-z]+\s*=', html, re.I), 'inline event handler in index.html'
    assert not re.search(r'\sstyle\s*=|<style', html, re.I), 'inline style in index.html'
    urls = re.findall(r'\s(?:src|href)="([^"]*)"', html)
    assert urls and all(u.startswith(('/', '#')) and not u.startswith('//') for u in urls), urls   # nothing from another origin
    for f in ('vendor/marked.umd.js', 'vendor/purify.min.js', 'vendor/VERSIONS.md', 'vendor/LICENSE.marked',
              'vendor/LICENSE.dompurify', 'app.js', 'app.css', 'favicon.ico', 'favicon.svg'):
        assert (UI / f).is_file(), f
    versions = (UI / 'vendor' / 'VERSIONS.md').read_text()
    assert re.search(r'\| marked \| \d+\.\d+\.\d+ \|', versions) and re.search(r'\| dompurify \| \d+\.\d+\.\d+ \|', versions)
    assert 'marked v' + re.search(r'\| marked \| ([\d.]+) \|', versions)[1] in (UI / 'vendor' / 'marked.umd.js').read_text()[:200]

# ---------------------------------------------------------------- tests against the stand-in
def test_streamed_reply_and_request_shape(page, standin):
    expect(page.locator('#max_tokens')).to_have_attribute('max', str(CTX))   # from /v1/models max_model_len
    assert page.evaluate('window.nanochatUI.markdown') is True                # marked + DOMPurify loaded under the CSP
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
    assert b['stream'] is True and b['stream_options'] == {'include_usage': True} and b['logprobs'] is True and b['top_logprobs'] == 5
    assert b['model'] == MODEL_ID and b['messages'] == [{'role': 'user', 'content': 'line one\nline two'}]
    for k in ('temperature', 'top_k', 'top_p', 'min_p', 'repetition_penalty', 'presence_penalty', 'frequency_penalty'):
        assert b[k] == DEFAULTS[k], (k, b[k])                    # every knob, at the shared defaults
    assert 'max_tokens' not in b                                  # unset: the server's default, clipped to fit the context
    assert 'seed' not in b and 'stop' not in b and 'authorization' not in standin.headers[0]
    # the whole conversation goes back with the next turn
    send(page, 'again'); wait_done(page)
    assert [m['role'] for m in standin.bodies[1]['messages']] == ['user', 'assistant', 'user']
    assert standin.bodies[1]['messages'][1]['content'] == 'Hello from the stand-in.'
    page.click('#new-chat')
    expect(page.locator('.msg')).to_have_count(0)

def test_defaults_come_from_the_server(browser, standin):
    standin.reset(); standin.defaults.update(temperature=0.35, top_k=7, max_tokens=100)
    ctx, pg = open_page(browser, standin.url + '/')
    pg.click('#gear')
    expect(pg.locator('#temperature-val')).to_have_text('0.35')
    expect(pg.locator('#top_k')).to_have_value('7'); expect(pg.locator('#max_tokens-val')).to_have_text('100 (default)')
    send(pg, 'hi'); wait_done(pg)
    assert standin.bodies[-1]['temperature'] == 0.35 and standin.bodies[-1]['top_k'] == 7
    check_clean(pg); ctx.close()

def test_settings_apply_to_next_request_and_persist(page, standin):
    gear = page.locator('#gear')
    expect(gear).to_have_attribute('aria-expanded', 'false'); expect(page.locator('#settings')).to_be_hidden()
    gear.click()
    expect(gear).to_have_attribute('aria-expanded', 'true'); expect(page.locator('#settings')).to_be_visible()
    expect(page.locator('#temperature')).to_be_focused()
    t0 = DEFAULTS['temperature']
    for _ in range(5): page.keyboard.press('ArrowRight')      # move the slider by keyboard: +5 steps of 0.05
    expect(page.locator('#temperature-val')).to_have_text(f'{t0 + 0.25:g}')
    for sel in ['#temperature', '#top_p', '#max_tokens']: expect(page.locator(sel)).to_be_visible()       # basic
    expect(page.locator('#top_k')).to_be_hidden()                                                       # advanced: folded
    page.click('#advanced summary')
    for name in ['top_p', 'max_tokens', 'top_k', 'min_p', 'repetition_penalty', 'presence_penalty', 'frequency_penalty', 'seed', 'system']:
        hint = page.locator(f'#{name}').get_attribute('aria-describedby')
        assert hint and page.locator(f'#{hint}').inner_text().strip(), f'{name} has no hint'
    page.fill('#top_k', '0'); expect(page.locator('#top_k-val')).to_have_text('off')
    page.fill('#top_p', '0.9'); expect(page.locator('#top_p-val')).to_have_text('0.9')
    page.fill('#max_tokens', '100'); expect(page.locator('#max_tokens-val')).to_have_text('100')
    page.fill('#min_p', '0.05'); page.fill('#repetition_penalty', '1.2')
    page.fill('#presence_penalty', '0.5'); page.fill('#frequency_penalty', '-0.3')
    page.fill('#stop-strings', 'END\n\nUser:')
    page.fill('#seed', '42'); page.fill('#system', 'Be brief.')
    send(page, 'hi'); wait_done(page)
    b = standin.bodies[-1]
    assert b['temperature'] == round(t0 + 0.25, 2) and b['top_k'] == 0 and b['top_p'] == 0.9 and b['max_tokens'] == 100 and b['seed'] == 42
    assert b['min_p'] == 0.05 and b['repetition_penalty'] == 1.2 and b['presence_penalty'] == 0.5 and b['frequency_penalty'] == -0.3
    assert b['stop'] == ['END', 'User:'] and b['messages'][0] == {'role': 'system', 'content': 'Be brief.'}
    page.reload()                                               # persisted in localStorage, panel still open
    expect(page.locator('#settings')).to_be_visible()
    expect(page.locator('#temperature-val')).to_have_text(f'{t0 + 0.25:g}')
    expect(page.locator('#top_k-val')).to_have_text('off'); expect(page.locator('#max_tokens')).to_have_value('100')
    expect(page.locator('#seed')).to_have_value('42'); expect(page.locator('#system')).to_have_value('Be brief.')
    expect(page.locator('#stop-strings')).to_have_value('END\n\nUser:'); expect(page.locator('#min_p')).to_have_value('0.05')
    page.locator('#temperature').fill('0.2'); page.fill('#seed', '')
    send(page, 'hi'); wait_done(page)
    b = standin.bodies[-1]
    assert b['temperature'] == 0.2 and 'seed' not in b
    page.click('#reset-settings')                               # back to the server's defaults
    expect(page.locator('#temperature-val')).to_have_text(f'{t0:g}'); expect(page.locator('#stop-strings')).to_have_value('')
    send(page, 'hi'); wait_done(page)
    b = standin.bodies[-1]
    assert b['temperature'] == t0 and b['top_k'] == DEFAULTS['top_k'] and 'max_tokens' not in b and 'stop' not in b
    page.focus('#system'); page.keyboard.press('Escape')      # Escape closes, focus back on gear
    expect(page.locator('#settings')).to_be_hidden(); expect(gear).to_be_focused()
    page.click('#gear'); page.fill('#stop-strings', 'a\nb\nc\nd\ne'); send(page, 'hi')
    expect(page.locator('#error')).to_contain_text('At most 4 stop strings')

def test_saved_conversations_survive_reload(page, standin):
    page.on('dialog', lambda d: d.accept())
    expect(page.locator('#sidebar')).to_be_visible()               # desktop: the chat list sits beside the chat
    send(page, 'first chat'); wait_done(page)
    expect(page.locator('.chat-item')).to_have_count(1); expect(page.locator('.chat-item.current .open')).to_have_text('first chat')
    page.click('#new-chat'); expect(page.locator('.msg')).to_have_count(0)
    send(page, 'second chat'); wait_done(page)
    expect(page.locator('.chat-item')).to_have_count(2)
    page.reload()
    expect(page.locator('.chat-item')).to_have_count(2)
    expect(page.locator('.msg.user .bubble')).to_have_text('second chat')                  # the current chat is back
    expect(last_reply(page).locator('.bubble')).to_have_text('Hello from the stand-in.')
    page.locator('.chat-item .open', has_text='first chat').click()
    expect(page.locator('.msg.user .bubble')).to_have_text('first chat')
    send(page, 'follow-up'); wait_done(page)
    assert [m['content'] for m in standin.bodies[-1]['messages']] == ['first chat', 'Hello from the stand-in.', 'follow-up']
    # rename: inline, Enter saves, survives reload
    page.locator('.chat-item', has_text='first chat').get_by_role('button', name=re.compile('^Rename')).click()
    box = page.locator('.chat-item input'); expect(box).to_be_focused()
    box.fill('Renamed chat'); box.press('Enter')
    expect(page.locator('.chat-item.current .open')).to_have_text('Renamed chat')
    page.reload()
    expect(page.locator('.chat-item.current .open')).to_have_text('Renamed chat')
    expect(page.locator('.msg')).to_have_count(4)
    # export: the SFT format
    with page.expect_download() as dl: page.click('#export')
    exported = json.loads(Path(dl.value.path()).read_text())
    assert exported == [{'role': 'user', 'content': 'first chat'}, {'role': 'assistant', 'content': 'Hello from the stand-in.'},
                        {'role': 'user', 'content': 'follow-up'}, {'role': 'assistant', 'content': 'Hello from the stand-in.'}]
    with page.expect_download() as dl: page.click('#export-all')
    lines = Path(dl.value.path()).read_text().splitlines()
    assert len(lines) == 2 and exported in [json.loads(l) for l in lines]
    # delete (after a confirm): gone, also after reload
    other = page.locator('.chat-item', has_text='second chat')
    expect(other.get_by_role('button', name=re.compile('^Delete'))).not_to_be_in_viewport()   # only the open chat shows its actions...
    other.hover()                                                                            # ... others on hover (or focus)
    other.get_by_role('button', name=re.compile('^Delete')).click()
    expect(page.locator('.chat-item')).to_have_count(1)
    page.reload(); expect(page.locator('.chat-item')).to_have_count(1)
    # import: a list of conversations becomes that many chats; the last one opens
    convs = [[{'role': 'user', 'content': 'imported one'}, {'role': 'assistant', 'content': 'reply **one**'}],
             [{'role': 'system', 'content': 'sys'}, {'role': 'user', 'content': 'imported two'}]]
    page.set_input_files('#import-file', files=[{'name': 'chats.json', 'mimeType': 'application/json', 'buffer': json.dumps(convs).encode()}])
    expect(page.locator('.chat-item')).to_have_count(3)
    expect(page.locator('.chat-item.current .open')).to_have_text('imported two')
    page.locator('.chat-item .open', has_text='imported one').click()
    expect(last_reply(page).locator('.bubble strong')).to_have_text('one')
    page.set_input_files('#import-file', files=[{'name': 'bad.json', 'mimeType': 'application/json', 'buffer': b'[{"role": "robot", "content": 1}]'}])
    expect(page.locator('#error')).to_contain_text('Could not import bad.json'); expect(page.locator('#error')).to_contain_text('role')
    expect(page.locator('.chat-item')).to_have_count(3)

def test_storage_full_is_reported(page, standin):
    "localStorage full: the reply still shows, and the page says the chat could not be saved and what to do"
    page.evaluate("""() => { let i = 0; for (const size of [1 << 20, 1 << 14, 256]) {
        const s = 'x'.repeat(size); try { for (;;) localStorage.setItem('junk' + i++, s); } catch (e) {} } }""")
    send(page, 'hi'); wait_done(page)
    expect(last_reply(page).locator('.bubble')).to_have_text('Hello from the stand-in.')
    expect(page.locator('#error')).to_contain_text('Could not save the chats'); expect(page.locator('#error')).to_contain_text('export')

def test_markdown_code_blocks_and_copy(browser, standin):
    standin.reset('md')
    ctx, pg = open_page(browser, standin.url + '/')
    ctx.grant_permissions(['clipboard-read', 'clipboard-write'], origin=standin.url)
    send(pg, 'show me markdown'); wait_done(pg)
    reply = last_reply(pg).locator('.bubble')
    expect(reply.locator('h1')).to_have_text('Title'); expect(reply.locator('strong')).to_have_text('bold')
    expect(reply.locator('li')).to_have_count(2); expect(reply.locator('p code')).to_have_text('code')
    expect(reply.locator('.code-wrap pre code')).to_have_text('print("hi")')
    expect(reply.locator('.code-wrap .code-head')).to_contain_text('python')
    reply.get_by_role('button', name='Copy code').click()
    expect(reply.get_by_role('button', name='Copy code')).to_have_text('Copied')
    assert pg.evaluate('navigator.clipboard.readText()') == 'print("hi")\n'
    last_reply(pg).get_by_role('button', name='Copy this reply').click()
    expect(last_reply(pg).get_by_role('button', name='Copy this reply')).to_have_text('Copied')
    assert pg.evaluate('navigator.clipboard.readText()') == ''.join(MD)       # the markdown source, as the model wrote it
    check_clean(pg); ctx.close()

def test_model_output_is_text_not_html(page, standin):
    standin.reset('xss')
    send(page, '<b>bold?</b><img src=y onerror="window.__xss=3">')
    expect(last_reply(page).locator('.bubble')).to_have_text(XSS); wait_done(page)      # raw HTML shows as text
    expect(page.locator('.msg.user .bubble')).to_have_text('<b>bold?</b><img src=y onerror="window.__xss=3">')
    page.click('#probs-toggle'); expect(last_reply(page).locator('.tok')).to_have_count(3)   # and in the token view
    page.click('#probs-toggle')
    page.reload(); expect(last_reply(page).locator('.bubble')).to_have_text(XSS)            # and after a reload
    assert page.evaluate('window.__xss') is None
    assert page.locator('#log img, #log script, #log b').count() == 0

def test_markdown_xss_is_inert(page, standin):
    standin.reset('xss_md')
    send(page, 'attack'); wait_done(page)
    reply = last_reply(page).locator('.bubble')
    expect(reply).to_contain_text('click me'); expect(reply).to_contain_text('<img src=x onerror=')     # raw HTML: text
    page.reload(); expect(last_reply(page).locator('.bubble')).to_contain_text('click me')
    links = last_reply(page).locator('a').all()
    for a in links:
        href = (a.get_attribute('href') or '').strip().lower()
        assert not href.startswith(('javascript:', 'data:', 'vbscript:')), href
    if links: links[0].click()                                  # a sanitized link does nothing when clicked
    page.wait_for_function('document.readyState === "complete"')
    assert page.evaluate('window.__xss') is None
    assert page.locator('#log script, #log iframe, #log svg, #log [onerror], #log [onload], #log [ontoggle], #log img[src="x"]').count() == 0

def test_token_probabilities(page, standin):
    send(page, 'hi'); wait_done(page)
    expect(page.locator('.tok')).to_have_count(0)
    toggle = page.locator('#probs-toggle')
    toggle.click(); expect(toggle).to_have_attribute('aria-pressed', 'true')
    toks = last_reply(page).locator('.tok')
    expect(toks).to_have_count(len(NORMAL))
    assert toks.all_inner_texts() == NORMAL
    assert [float(t.get_attribute('data-p')) for t in toks.all()] == pytest.approx(PROBS, abs=1e-4)
    colours = [t.evaluate('e => getComputedStyle(e).backgroundColor') for t in toks.all()]
    assert colours[2] != colours[4], 'an unlikely and a likely token get the same colour'
    toks.nth(2).hover()                                            # 5%: the popover lists the top-5 alternatives
    pop = page.locator('#tok-pop')
    expect(pop).to_be_visible(); expect(pop).to_contain_text('5.0%'); expect(pop.locator('tr')).to_have_count(5)
    expect(pop.locator('tr.chosen')).to_have_count(0)              # the stand-in's chosen token at 5% is not in its top 5
    toks.nth(4).hover(); expect(pop).to_contain_text('99%'); expect(pop.locator('tr.chosen')).to_have_count(1)
    ppl = math.exp(-sum(math.log(p) for p in PROBS) / len(PROBS))
    expect(last_reply(page).locator('.meta .stats')).to_contain_text(f'perplexity {ppl:.1f}')
    page.mouse.move(5, 5); expect(pop).to_be_hidden()
    page.reload()                                                  # the toggle and the logprobs are saved
    expect(page.locator('#probs-toggle')).to_have_attribute('aria-pressed', 'true')
    expect(last_reply(page).locator('.tok')).to_have_count(len(NORMAL))
    page.click('#probs-toggle'); expect(page.locator('.tok')).to_have_count(0)
    expect(last_reply(page).locator('.bubble')).to_have_text('Hello from the stand-in.')

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
    page.reload(); expect(page.locator('.msg')).to_have_count(2)   # ... also in the saved chat

def test_reload_mid_reply_keeps_partial_text(page, standin):
    standin.reset('long')
    send(page, 'go on forever')
    wait_for(lambda: page.evaluate('(JSON.parse(localStorage.getItem("nanochat.chats")) || [{messages: []}])[0].messages.length') == 2,
             'the partial reply to be saved')
    page.reload()
    expect(last_reply(page).locator('.bubble')).to_contain_text('word word')
    expect(page.locator('#send')).to_be_enabled(); expect(page.locator('.streaming')).to_have_count(0)
    wait_for(lambda: get_json(standin.url + '/stats')['slots_busy'] == 0, 'the stand-in to see the reload as a disconnect')

def test_stop_aborts_and_frees_slot(page, standin):
    standin.reset('long')
    send(page, 'go on forever')
    expect(last_reply(page).locator('.bubble')).to_contain_text('word word word')
    wait_for(lambda: get_json(standin.url + '/stats')['slots_busy'] == 1, 'the stand-in to count the stream as busy')
    expect(page.locator('#send')).to_be_disabled()
    page.click('#stop')
    wait_done(page)
    wait_for(lambda: get_json(standin.url + '/stats')['slots_busy'] == 0, 'the stand-in to free the slot after Stop')
    expect(last_reply(page).locator('.meta .stats')).to_contain_text('stopped')
    n = len(last_reply(page).locator('.bubble').text_content())
    time.sleep(0.3)
    assert len(last_reply(page).locator('.bubble').text_content()) == n        # nothing more arrives
    expect(page.locator('#error')).to_be_hidden()

def test_errors_are_readable(page, standin):
    err = page.locator('#error')
    standin.reset('429'); send(page, 'hi')
    expect(err).to_be_visible(); expect(err).to_have_attribute('role', 'alert')
    expect(err).to_contain_text('429'); expect(err).to_contain_text('All 1 slots are busy'); expect(err).to_contain_text('Retry in 7 seconds (at ')
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

    standin.reset(); page.route('**/v1/chat/completions', lambda r: r.abort('connectionrefused'))
    page.click('#new-chat'); send(page, 'anyone there?')
    expect(err).to_contain_text('Cannot reach the server'); wait_done(page)
    page.unroute('**/v1/chat/completions')

    standin.reset('401'); page.click('#new-chat'); send(page, 'hi')
    expect(err).to_contain_text('401'); expect(err).to_contain_text('API key')
    expect(page.locator('#settings')).to_be_visible(); expect(page.locator('#api-key')).to_be_focused()
    page.fill('#api-key', standin.key)
    page.get_by_role('button', name='Get reply').click(); wait_done(page)
    expect(last_reply(page).locator('.bubble')).to_have_text('Hello from the stand-in.'); expect(err).to_be_hidden()
    assert standin.headers[-1]['authorization'] == f'Bearer {standin.key}'
    page.reload()                                                                # the key is kept in localStorage
    expect(page.locator('#api-key')).to_have_value(standin.key)

def test_unreachable_server_at_load(browser, standin):
    "The model list cannot be fetched: a visible error, and the page recovers by itself once the server answers"
    standin.reset()
    ctx = browser.new_context(); pg = ctx.new_page(); pg.set_default_timeout(WAIT_MS)
    blocked = {'on': True}
    pg.route('**/v1/models', lambda r: r.abort('connectionrefused') if blocked['on'] else r.continue_())
    pg.goto(standin.url + '/')
    expect(pg.locator('#error')).to_contain_text('Cannot reach the server')
    expect(pg.locator('#model')).to_have_value('')
    blocked['on'] = False                                                        # retried every 5 s
    expect(pg.locator('#model')).to_have_value(MODEL_ID); expect(pg.locator('#error')).to_be_hidden()
    ctx.close()

def test_api_key_asked_at_load(browser, standin):
    "A server with keys answers /v1/models with 401: the page says so, opens the key field, and retries with the key"
    standin.reset('401')
    ctx = browser.new_context(); pg = ctx.new_page(); pg.set_default_timeout(WAIT_MS)
    pg.goto(standin.url + '/')
    expect(pg.locator('#error')).to_contain_text('401'); expect(pg.locator('#settings')).to_be_visible()
    pg.fill('#api-key', 'wrong'); pg.press('#api-key', 'Enter'); pg.keyboard.press('Tab')
    expect(pg.locator('#error')).to_contain_text('401')
    pg.fill('#api-key', standin.key); pg.keyboard.press('Tab')       # change event: the model list is fetched again
    expect(pg.locator('#model')).to_have_value(MODEL_ID); expect(pg.locator('#error')).to_be_hidden()
    send(pg, 'hi'); expect(last_reply(pg).locator('.bubble')).to_have_text('Hello from the stand-in.')
    ctx.close()

def test_keyboard_only(page, standin):
    page.focus('a.skip')                                  # first stop in the tab order: the skip link
    seen = []
    for _ in range(14):
        page.keyboard.press('Tab')
        seen.append(page.evaluate('document.activeElement.id || document.activeElement.className'))
    order = ['chats-toggle', 'model', 'new-chat', 'probs-toggle', 'gear', 'import', 'log', 'input', 'send']
    assert all(i in seen for i in order), seen
    assert [seen.index(i) for i in order] == sorted(seen.index(i) for i in order), seen
    page.focus('#gear'); page.keyboard.press('Enter')
    expect(page.locator('#settings')).to_be_visible()
    outline = page.evaluate('getComputedStyle(document.activeElement).outlineStyle')
    assert outline not in ('none', ''), 'focused control has no visible focus ring'
    page.click('#advanced summary')
    for sel in ['#temperature', '#top_k', '#top_p', '#min_p', '#max_tokens', '#repetition_penalty', '#presence_penalty',
                '#frequency_penalty', '#stop-strings', '#seed', '#system', '#api-key', '#model', '#input']:
        label = page.evaluate(f'(() => {{ const e = document.querySelector("{sel}"); return (e.labels && e.labels[0] ? e.labels[0].textContent : "") + (e.getAttribute("aria-label") || ""); }})()')
        assert label.strip(), f'{sel} has no label'
    page.focus('#input'); page.keyboard.type('hello'); page.keyboard.press('Enter'); wait_done(page)
    expect(page.get_by_role('button', name='Regenerate')).to_be_visible()
    page.click('#probs-toggle')
    toks = last_reply(page).locator('.tok')
    assert [t.get_attribute('tabindex') for t in toks.all()] == ['0'] + ['-1'] * (len(NORMAL) - 1)   # one tab stop per reply
    toks.first.focus()                                                               # tokens are reachable by keyboard
    expect(page.locator('#tok-pop')).to_be_visible(); expect(page.locator('#tok-pop')).to_contain_text('90%')
    page.keyboard.press('ArrowRight'); expect(toks.nth(1)).to_be_focused(); expect(page.locator('#tok-pop')).to_contain_text('50%')
    page.keyboard.press('End'); expect(toks.nth(len(NORMAL) - 1)).to_be_focused(); expect(page.locator('#tok-pop')).to_contain_text('99%')
    page.keyboard.press('Escape'); expect(page.locator('#tok-pop')).to_be_hidden()

def header_fits(pg, width):
    "The header is one line, nothing overflows the viewport, and the model menu shows the whole model id"
    assert pg.evaluate('document.documentElement.scrollWidth') <= width
    tops = pg.evaluate("[...document.querySelectorAll('header > *')].filter(e => e.offsetParent && e.getBoundingClientRect().width > 2).map(e => Math.round(e.getBoundingClientRect().top))")
    assert max(tops) - min(tops) < 12, f'the header wraps: element tops {tops}'
    assert pg.locator('header').bounding_box()['height'] < 60
    fit = pg.evaluate("""(() => { const s = document.getElementById('model'), c = document.createElement('canvas').getContext('2d');
        const st = getComputedStyle(s); c.font = `${st.fontWeight} ${st.fontSize} ${st.fontFamily}`;
        return [c.measureText(s.value).width, s.clientWidth]; })()""")
    assert fit[0] + 24 <= fit[1], f'model id {fit[0]:.0f}px wide does not fit its {fit[1]}px menu (with the arrow)'
    box = pg.locator('#model').bounding_box()
    assert box['x'] >= 0 and box['x'] + box['width'] <= width

def test_phone_layout(browser, standin):
    standin.reset()
    ctx, pg = open_page(browser, standin.url + '/', viewport={'width': 375, 'height': 740}, is_mobile=True, has_touch=True)
    expect(pg.locator('#model')).to_have_value(MODEL_ID)
    def check():
        header_fits(pg, 375)
        for sel in ['#input', '#send']:
            expect(pg.locator(sel)).to_be_in_viewport(ratio=1)
    check()
    expect(pg.locator('#sidebar')).to_be_hidden()                       # phone: the chat list is a drawer, closed
    send(pg, 'a' * 300 + ' ' + 'x ' * 200); wait_done(pg)                   # long unbroken words wrap
    check()
    pg.click('#new-chat'); send(pg, 'second'); wait_done(pg)
    pg.tap('#probs-toggle'); pg.locator('.tok').nth(2).tap()             # tap a token: its alternatives
    expect(pg.locator('#tok-pop')).to_be_visible(); expect(pg.locator('#tok-pop')).to_contain_text('5.0%')
    box = pg.locator('#tok-pop').bounding_box(); assert box['x'] >= 0 and box['x'] + box['width'] <= 375
    pg.screenshot(path=str(SHOTS / 'ui_phone_tokens.png'))
    pg.locator('.tok').nth(2).tap(); expect(pg.locator('#tok-pop')).to_be_hidden()
    pg.tap('#probs-toggle')
    pg.screenshot(path=str(SHOTS / 'ui_phone.png'))
    pg.tap('#chats-toggle')
    drawer = pg.locator('#sidebar')
    expect(drawer).to_be_visible(); expect(drawer).to_be_in_viewport()
    assert pg.evaluate('document.documentElement.scrollWidth') <= 375
    expect(pg.locator('.chat-item')).to_have_count(2)
    pg.screenshot(path=str(SHOTS / 'ui_phone_chats.png'))
    pg.locator('.chat-item .open', has_text='aaaa').tap()               # switching closes the drawer
    expect(drawer).to_be_hidden(); expect(pg.locator('.msg.user .bubble')).to_contain_text('aaaa')
    pg.click('#gear'); expect(pg.locator('#settings')).to_be_visible()
    assert pg.evaluate('document.documentElement.scrollWidth') <= 375
    expect(pg.locator('#temperature')).to_be_in_viewport()
    pg.screenshot(path=str(SHOTS / 'ui_phone_settings.png'))
    pg.click('#settings-close'); check()
    check_clean(pg); ctx.close()

def test_favicon(standin):
    with urllib.request.urlopen(standin.url + '/favicon.ico', timeout=10) as r:
        assert r.headers['content-type'] == 'image/x-icon' and r.read(4) == b'\x00\x00\x01\x00'

def test_screenshot_standin(page, standin):
    "Desktop screenshots on the stand-in: markdown reply, then the token view"
    standin.reset('md')
    page.click('#gear')
    send(page, 'Show me some markdown.'); wait_done(page)
    page.screenshot(path=str(SHOTS / 'ui_chat_standin.png'))
    standin.reset()
    send(page, 'And now the probabilities?'); wait_done(page)
    page.click('#gear'); page.click('#probs-toggle')
    last_reply(page).locator('.tok').nth(2).hover(); expect(page.locator('#tok-pop')).to_be_visible()
    page.screenshot(path=str(SHOTS / 'ui_tokens_standin.png'))

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
        t0 = time.monotonic()
        while True:   # loading a model on a busy 2-core box can take a while: a generous deadline, checked often
            if proc.poll() is not None: pytest.fail(f'nanochat server exited early:\n{proc.stdout.read()[-3000:]}')
            try:
                get_json(url + '/health', timeout=5); break
            except Exception: time.sleep(0.1)
            if time.monotonic() - t0 > 180: pytest.fail('nanochat server did not answer /health within 180 s')
        yield url
    finally:
        proc.terminate()
        try: proc.wait(30)
        except subprocess.TimeoutExpired: proc.kill()

@pytest.fixture(scope='module')
def real_server():
    if not real_server_available(): pytest.skip('nanochat/server.py does not exist yet')
    with nanochat_server('--model', str(MODEL_DIR), '--no-rate-limit') as url: yield url

def test_bundled_demo_model_chat(browser):
    "`nanochat serve` with no --model serves the bundled demo model: replies end their turn, markdown and token view work, phone header fits"
    if not DEMO_DIR.exists(): pytest.fail(f'{DEMO_DIR} is missing: run `make demo-model`')
    with nanochat_server('--no-rate-limit') as url:
        assert get_json(url + '/v1/defaults') == DEFAULTS                   # the server's defaults are the shared ones
        with urllib.request.urlopen(url + '/favicon.ico', timeout=10) as r: assert r.status == 200 and r.read(4) == b'\x00\x00\x01\x00'
        ctx, pg = open_page(browser, url + '/')
        expect(pg.locator('#model')).to_have_value('nanochat-demo')
        pg.click('#gear')
        expect(pg.locator('#temperature-val')).to_have_text(f"{DEFAULTS['temperature']:g}")
        pg.click('#advanced summary'); pg.fill('#seed', '1')
        for prompt in ['Give me a speech by Juliet.', 'Who are you?']:
            send(pg, prompt); wait_done(pg)
            expect(last_reply(pg).locator('.bubble')).not_to_have_text('')
            expect(last_reply(pg).locator('.meta .stats')).to_contain_text('finish: stop')
        expect(pg.locator('#error')).to_be_hidden()
        pg.evaluate('document.getElementById("settings").scrollTop = 0')
        pg.screenshot(path=str(SHOTS / 'ui_chat.png'))                        # settings open, advanced unfolded
        pg.click('#gear')
        # the token view from the real server's logprobs: one span per token, each with its probability and alternatives
        n = int(re.search(r'(\d+) tokens?', last_reply(pg).locator('.meta .stats').inner_text())[1])
        pg.click('#probs-toggle')
        toks = last_reply(pg).locator('.tok')
        assert 0 < toks.count() <= n
        ps = [float(t.get_attribute('data-p')) for t in toks.all()]
        assert all(0 < p <= 1 for p in ps) and len(set(ps)) > 1
        toks.filter(has_text=re.compile(r'[A-Za-z]')).first.hover()      # a word (a newline token has no box to hover)
        expect(pg.locator('#tok-pop')).to_be_visible(); expect(pg.locator('#tok-pop tr')).to_have_count(5)
        pg.screenshot(path=str(SHOTS / 'ui_tokens.png'))
        check_clean(pg); ctx.close()
        ctx, pg = open_page(browser, url + '/', viewport={'width': 375, 'height': 740}, is_mobile=True, has_touch=True)
        expect(pg.locator('#model')).to_have_value('nanochat-demo')
        header_fits(pg, 375)                                                   # the whole "nanochat-demo", on one line
        send(pg, 'Who are you?'); wait_done(pg)
        header_fits(pg, 375)
        check_clean(pg); ctx.close()

def test_real_server_chat_settings_stop(browser, real_server):
    ctx, pg = open_page(browser, 'about:blank')
    bodies = []
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
    pg.fill('#max_tokens', '48'); pg.fill('#temperature', '0.9')
    pg.click('#advanced summary'); pg.fill('#seed', '7'); pg.fill('#min_p', '0.02'); pg.fill('#repetition_penalty', '1.1')
    send(pg, 'Hello there!')
    expect(last_reply(pg).locator('.bubble')).not_to_have_text('')
    wait_done(pg)
    expect(last_reply(pg).locator('.meta .stats')).to_contain_text('tok/s')
    expect(last_reply(pg).locator('.meta .stats')).to_contain_text('48 tokens')
    expect(last_reply(pg).locator('.meta .stats')).to_contain_text('finish: length')
    expect(pg.locator('#error')).to_be_hidden()
    b = bodies[-1]
    assert b['temperature'] == 0.9 and b['max_tokens'] == 48 and b['seed'] == 7 and b['min_p'] == 0.02 and b['repetition_penalty'] == 1.1
    pg.click('#probs-toggle'); expect(last_reply(pg).locator('.tok')).to_have_count(48)   # one logprob per generated token
    pg.click('#probs-toggle')
    pg.screenshot(path=str(SHOTS / 'ui_chat_fixture.png'))
    # stop a long reply: the server frees the slot
    pg.click('#new-chat')
    pg.fill('#max_tokens', str(int(pg.get_attribute('#max_tokens', 'max')) - 64))
    send(pg, 'Tell me a long story.')
    expect(last_reply(pg).locator('.bubble')).not_to_have_text('')
    expect(pg.locator('#stop')).to_be_enabled()
    wait_for(lambda: get_json(real_server + '/stats').get('slots_busy', 0) >= 1, 'the server to count the stream as busy')
    pg.click('#stop'); wait_done(pg)
    expect(last_reply(pg).locator('.meta .stats')).to_contain_text('stopped')
    wait_for(lambda: get_json(real_server + '/stats').get('slots_busy') == 0, 'the server to free the slot after Stop')
    assert bodies[-1]['max_tokens'] >= 400
    check_clean(pg); ctx.close()
