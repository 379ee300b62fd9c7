"""Issue 14's server defects, one test (or more) each: poison stays with its own request, text that cannot be
encoded, failed-auth limits, forwarded headers, access log, flags, methods and headers, strict types.
(Redis outages: test_redis_outage.py; schemathesis: test_schemathesis.py.)"""
import asyncio, json, logging, os, re, socket, subprocess, sys, threading, time
import httpx, openai, pytest, uvicorn

from conftest import ROOT, UPSTREAM
from nanochat.checkpoint import load_model
from nanochat.engine import BatchEngine, StreamEvent
from nanochat.server import create_app, serve_cli

FIX = UPSTREAM / 'E4-2026-07' / 'gqa-window'
HI = [{'role': 'user', 'content': 'Hi there'}]

@pytest.fixture(scope='module')
def engine():
    model, tok, _ = load_model(FIX, device='cpu')
    be = BatchEngine(model, tok, n_slots=8, max_queue=16).start()
    yield be
    be.stop()

def aclient(app, ip='127.0.0.1'):
    return httpx.AsyncClient(transport=httpx.ASGITransport(app, client=(ip, 1234)), base_url='http://test')

def run(coro): return asyncio.run(coro)

def free_port():
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); return s.getsockname()[1]

def ban_end(tok):
    return {str(tok.encode_special('<|assistant_end|>')): -100, str(tok.get_bos_token_id()): -100}

class Live:
    "Our uvicorn config (serve's) on a free loopback port, in a thread"
    def __init__(self, app, **kw):
        from nanochat.server import uvicorn_config
        self.port = free_port(); self.url = f'http://127.0.0.1:{self.port}'
        self.server = uvicorn.Server(uvicorn_config(app, '127.0.0.1', self.port, 'warning', **kw))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
    def __enter__(self):
        self.thread.start()
        t0 = time.monotonic()
        while not self.server.started:
            if time.monotonic() - t0 > 60: raise RuntimeError('uvicorn did not start in 60 s')
            time.sleep(0.02)
        return self
    def __exit__(self, *a):
        self.server.should_exit = True; self.thread.join(30)

# ---------------------------------------------------------------- 1. one request never fails another

POISON = [{'top_p': 5e-324}, {'repetition_penalty': 1e-300}, {'repetition_penalty': 1e-300, 'temperature': 0},
          {'top_p': 5e-324, 'temperature': 0.7, 'min_p': 0.5}]

@pytest.mark.parametrize('route', ['/v1/chat/completions', '/v1/completions'])
def test_poisoned_request_among_four_healthy(engine, route):
    "Four healthy requests decode while poisoned ones arrive: the four finish normally; the poison gets a 400 or a normal answer"
    tok = engine.tokenizer
    app = create_app(engine=engine, model_name='tiny', rate_limit=None)
    base = {'messages': HI} if route.endswith('chat/completions') else {'prompt': 'Once upon a time'}
    healthy = {**base, 'max_tokens': 40, 'temperature': 0.8, 'seed': 3, 'logit_bias': ban_end(tok)}
    async def go():
        async with aclient(app) as c:
            async def poison():
                await asyncio.sleep(0.05)                      # land while the others decode
                return [await c.post(route, json={**base, 'max_tokens': 4, **p}) for p in POISON]
            *good, bad = await asyncio.gather(*[c.post(route, json=healthy) for _ in range(4)], poison())
        for r in good:
            assert r.status_code == 200, r.text
            assert [ch['finish_reason'] for ch in r.json()['choices']] == ['length'] and r.json()['usage']['completion_tokens'] == 40
        for p, r in zip(POISON, bad):
            if 'repetition_penalty' in p:                      # outside [0.01, 100]: refused at the door, naming it
                assert (r.status_code, r.json()['error']['param']) == (400, 'repetition_penalty'), r.text
            else:                                              # top_p that small acts as 1e-6: a normal answer
                assert r.status_code == 200 and r.json()['choices'][0]['finish_reason'] in ('stop', 'length'), r.text
    run(go())

def test_engine_error_ends_one_request_alone(engine):
    "A request the engine fails gets finish_reason 'error' (JSON body, and the last chunk of a stream); the others finish"
    tok = engine.tokenizer
    app = create_app(engine=engine, model_name='tiny', rate_limit=None)
    real = engine.submit
    def submit(prompt, max_tokens=None, stop=None, params=None, n=1):
        req = real(prompt, max_tokens=max_tokens, stop=stop, params=params, n=n)
        if stop == ['POISON']:     # this one fails in the engine, as a row whose sampling fails would
            # the error first, then free the slot: a cancel first could finish the request as 'cancelled' before the error
            req._push(StreamEvent(None, index=0, finish_reason='error', error='ValueError: row has no finite maximum')); req.cancel()
        return req
    healthy = {'messages': HI, 'max_tokens': 30, 'logit_bias': ban_end(tok)}
    async def go():
        async with aclient(app) as c:
            async def poisoned_stream():
                async with c.stream('POST', '/v1/chat/completions', json={'messages': HI, 'stop': 'POISON', 'stream': True}) as r:
                    return r.status_code, (await r.aread()).decode()
            engine.submit = submit
            try:
                *good, bad, (st, raw), badc = await asyncio.gather(
                    *[c.post('/v1/chat/completions', json=healthy) for _ in range(4)],
                    c.post('/v1/chat/completions', json={'messages': HI, 'stop': 'POISON'}), poisoned_stream(),
                    c.post('/v1/completions', json={'prompt': 'x', 'stop': 'POISON'}))
            finally: engine.submit = real
        assert all(r.status_code == 200 and r.json()['choices'][0]['finish_reason'] == 'length' for r in good)
        assert bad.status_code == 200 and bad.json()['choices'][0]['finish_reason'] == 'error', bad.text
        assert badc.status_code == 200 and badc.json()['choices'][0]['finish_reason'] == 'error', badc.text
        events = [e[6:] for e in raw.split('\n\n') if e]
        assert st == 200 and events[-1] == '[DONE]'
        assert json.loads(events[-2])['choices'] == [{'index': 0, 'delta': {}, 'logprobs': None, 'finish_reason': 'error'}]
    run(go())

# ---------------------------------------------------------------- 2. lone surrogates

def test_lone_surrogates_never_500(engine):
    app = create_app(engine=engine, model_name='tiny', rate_limit=None)
    raw = lambda s: {'content': s.encode(), 'headers': {'content-type': 'application/json'}}
    cases = [('/v1/chat/completions', '{"model": "\\ud800", "messages": [{"role": "user", "content": "hi"}]}', 404, 'model'),
             ('/v1/completions', '{"model": "\\udfff", "prompt": "hi"}', 404, 'model'),
             ('/tokenize', '{"model": "\\ud800", "prompt": "hi"}', 404, 'model'),
             ('/detokenize', '{"model": "\\ud800", "tokens": [1]}', 404, 'model'),
             ('/tokenize', '{"prompt": "a\\ud800b"}', 400, 'prompt'),
             ('/v1/chat/completions', '{"messages": [{"role": "user", "content": "\\ud800"}]}', 400, 'messages.0.content'),
             ('/v1/chat/completions', '{"messages": [{"role": "user", "content": "hi"}], "stop": "\\ud800"}', 400, 'stop'),
             ('/v1/completions', '{"prompt": "\\ud800"}', 400, 'prompt')]
    async def go():
        async with aclient(app) as c:
            for path, body, status, param in cases:
                r = await c.post(path, **raw(body))
                assert r.status_code == status, (path, body, r.text)
                e = r.json()['error']
                assert e['param'] == param and e['message'], (body, e)
                if status == 404: assert '\\ud' in e['message'] and 'model' in e['message']
            r = await c.get('/v1/models/%ED%A0%80')                        # a path that is not UTF-8
            assert r.status_code == 404 and r.json()['error']['code'] == 'model_not_found'
    run(go())

# ---------------------------------------------------------------- 4. failed authentications are limited per IP

def test_failed_auth_limited_per_ip(engine):
    app = create_app(engine=engine, model_name='tiny', api_keys=['sk-right'], rate_limit='5/minute')
    async def go():
        async with aclient(app, '10.0.0.7') as c, aclient(app, '10.0.0.8') as other:
            codes = [(await c.get('/v1/models', headers={'Authorization': f'Bearer sk-guess-{i}'})).status_code for i in range(30)]
            assert codes == [401] * 5 + [429] * 25, codes
            r = await c.get('/v1/models', headers={'Authorization': 'Bearer sk-guess-x'})
            assert r.json()['error']['code'] == 'rate_limit_exceeded' and int(r.headers['retry-after']) >= 1
            # no oracle: the right key from the same address is refused too until the window moves on
            assert (await c.get('/v1/models', headers={'Authorization': 'Bearer sk-right'})).status_code == 429
            assert (await c.get('/stats')).status_code == 429                        # missing key counts as well
            # another address is not affected
            assert (await other.get('/v1/models', headers={'Authorization': 'Bearer sk-right'})).status_code == 200
            assert (await other.get('/v1/models', headers={'Authorization': 'Bearer nope'})).status_code == 401
    run(go())

# ---------------------------------------------------------------- 5. X-Forwarded-For only from trusted proxies

def test_forwarded_for_trusted_only_when_allowed(engine):
    app = create_app(engine=engine, model_name='tiny', rate_limit='2/minute')
    def spoof(url):
        return [httpx.get(url + '/v1/models', headers={'X-Forwarded-For': f'203.0.113.{i}'}, timeout=30).status_code for i in range(3)]
    with Live(app) as srv:                                  # default: trust none, the peer is 127.0.0.1 for all three
        assert spoof(srv.url) == [200, 200, 429]
    app = create_app(engine=engine, model_name='tiny', rate_limit='2/minute')
    with Live(app, forwarded_allow_ips='127.0.0.1') as srv: # behind a proxy on 127.0.0.1: its header names the client
        assert spoof(srv.url) == [200, 200, 200]

# ---------------------------------------------------------------- 6. the access log: once, and no key in it

def test_access_log_once_and_redacted():
    port = free_port()
    code = 'import sys; from nanochat.server import serve_cli; sys.exit(serve_cli(sys.argv[1:]))'
    p = subprocess.Popen([sys.executable, '-c', code, '--model', str(FIX), '--port', str(port), '--device', 'cpu', '--slots', '1',
                          '--api-key', 'sk-real-secret', '--log-level', 'info'], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f'http://127.0.0.1:{port}'
    try:
        t0 = time.monotonic()
        while True:
            if p.poll() is not None: pytest.fail(f'server exited: {p.stdout.read().decode()[-2000:]}')
            try:
                if httpx.get(url + '/health', timeout=2).status_code == 200: break
            except httpx.HTTPError: pass
            if time.monotonic() - t0 > 120: pytest.fail('server not healthy in 120 s')
            time.sleep(0.1)
        r1 = httpx.get(url + '/v1/models?api_key=sk-leaked-guess&x=1', timeout=30)
        r2 = httpx.get(url + '/v1/models?token=sk-real-secret', headers={'Authorization': 'Bearer sk-real-secret'}, timeout=30)
        assert (r1.status_code, r2.status_code) == (401, 200)
    finally:
        p.terminate()
        try: out = p.communicate(timeout=30)[0].decode()
        except subprocess.TimeoutExpired: p.kill(); out = p.communicate()[0].decode()
    assert 'sk-leaked-guess' not in out and 'sk-real-secret' not in out, out
    for r in (r1, r2):
        mine = [l for l in out.splitlines() if r.headers['x-request-id'] in l]
        assert len(mine) == 1, out                             # our line only: uvicorn's access log is off
    assert 'query=api_key=***&x=1' in out and ' 401 ' not in out.replace('status=401', '')

# ---------------------------------------------------------------- 7. every serve flag checked, one line

@pytest.mark.parametrize('flags, says', [
    (['--rate-limit-storage', 'foo://x'], '--rate-limit-storage'), (['--max-body-bytes', '-1'], '--max-body-bytes'),
    (['--max-message-chars', '0'], '--max-message-chars'), (['--max-messages', '0'], '--max-messages'),
    (['--slots', '0'], '--slots'), (['--max-queue', '-3'], '--max-queue'), (['--port', '99999'], '--port'),
    (['--rate-limit', 'often'], '--rate-limit'), (['--forwarded-allow-ips', 'my-proxy'], '--forwarded-allow-ips'),
    (['--cors-origin', 'example.com/app'], '--cors-origin'), (['--port', 'eighty'], '--port'), (['--source', 'nope'], '--source'),
    (['--log-level', 'loud'], '--log-level'), (['--model-name', ' '], '--model-name')])
def test_bad_flag_is_one_line(flags, says, capsys):
    try: rc = serve_cli(['--model', str(FIX), *flags])
    except SystemExit as e: rc = e.code
    out = capsys.readouterr()
    text = (out.out + out.err).strip()
    assert rc == 2 and len(text.splitlines()) == 1 and says in text and 'Traceback' not in text, text

def test_bad_storage_in_a_real_process():
    code = 'import sys; from nanochat.cli import main; sys.exit(main(sys.argv[1:]))'
    r = subprocess.run([sys.executable, '-c', code, 'serve', '--model', str(FIX), '--rate-limit-storage', 'foo://x'],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    text = (r.stdout + r.stderr).strip()
    assert r.returncode == 2 and len(text.splitlines()) == 1 and '--rate-limit-storage' in text, text

# ---------------------------------------------------------------- 8. methods and headers

def test_methods_allow_and_head(engine):
    app = create_app(engine=engine, model_name='tiny', rate_limit=None)
    async def go():
        async with aclient(app) as c:
            r = await c.get('/v1/chat/completions')
            assert r.status_code == 405 and r.headers['allow'] == 'POST' and r.json()['error']['code'] == 'method_not_allowed'
            r = await c.post('/health')
            assert r.status_code == 405 and set(r.headers['allow'].replace(' ', '').split(',')) == {'GET', 'HEAD'}
            for path in ('/', '/health', '/v1/models', '/metrics', '/openapi.json'):
                g, h = await c.get(path), await c.head(path)
                assert (h.status_code, h.content) == (200, b''), path
                assert h.headers['content-type'] == g.headers['content-type'], path
    run(go())

def test_security_headers_and_ui_files(engine, tmp_path):
    ui = tmp_path / 'ui'; (ui / 'vendor').mkdir(parents=True)
    (ui / 'index.html').write_text('<!doctype html><link rel=stylesheet href="style.css"><script src="app.js"></script><p>nanochat ui')
    (ui / 'app.js').write_text('console.log(1)'); (ui / 'style.css').write_text('p{}'); (ui / 'vendor' / 'lib.js').write_text('//lib')
    (ui / 'favicon.svg').write_text('<svg/>')
    app = create_app(engine=engine, model_name='tiny', ui_dir=ui, api_keys=['k'])
    async def go():
        async with aclient(app) as c:
            r = await c.get('/')
            csp = r.headers['content-security-policy']
            assert "frame-ancestors 'none'" in csp and 'unsafe-inline' not in csp.split('script-src')[1].split(';')[0], csp
            assert r.headers['x-content-type-options'] == 'nosniff' and r.headers['referrer-policy'] == 'no-referrer'
            for path, text in [('/app.js', 'console.log(1)'), ('/style.css', 'p{}'), ('/vendor/lib.js', '//lib'), ('/favicon.svg', '<svg/>'),
                               ('/ui/app.js', 'console.log(1)')]:
                f = await c.get(path)                                   # open: the page loads before any key is given
                assert (f.status_code, f.text) == (200, text), path
            assert (await c.get('/nothere.js')).status_code == 404
            assert (await c.get('/vendor/..%2F..%2Fetc%2Fpasswd')).status_code == 404
            api = await c.get('/v1/models', headers={'Authorization': 'Bearer k'})
            assert "frame-ancestors 'none'" in api.headers['content-security-policy'] and api.headers['x-content-type-options'] == 'nosniff'
    run(go())
    # a page that still has an inline script is allowed that script by its hash, never by 'unsafe-inline'
    from nanochat.server import page_csp
    html = b'<script>go()</script><script src="a.js"></script>'
    csp = page_csp(html)
    assert "'sha256-" in csp and 'unsafe-inline' not in csp.split('script-src')[1].split(';')[0]

def test_bundled_page_csp_matches_its_scripts(engine):
    "The real nanochat/ui page: its CSP header allows exactly its inline scripts (if any) and the server's own files"
    from nanochat.server import page_csp
    app = create_app(engine=engine, model_name='tiny')
    async def go():
        async with aclient(app) as c: return await c.get('/')
    r = run(go())
    html = (ROOT / 'nanochat' / 'ui' / 'index.html').read_bytes()
    assert r.status_code == 200 and r.headers['content-security-policy'] == page_csp(html)
    for src in re.findall(rb'<script[^>]*\bsrc="([^"]+)"', html):        # files the page loads are served
        async def get(): 
            async with aclient(app) as c: return await c.get('/' + src.decode().lstrip('./'))
        assert run(get()).status_code == 200, src

# ---------------------------------------------------------------- 9. strict validation

def test_strict_types(engine):
    app = create_app(engine=engine, model_name='tiny', rate_limit=None, max_message_chars=1000)
    chat = lambda **kw: ('/v1/chat/completions', {'messages': HI, 'max_tokens': 2, **kw})
    cases = [(chat(temperature='1'), 'temperature'), (chat(max_tokens=True), 'max_tokens'), (chat(top_logprobs=False, logprobs=True), 'top_logprobs'),
             (chat(logit_bias={' 1': 1}), 'logit_bias'), (chat(logit_bias={'٣': 1}), 'logit_bias'), (chat(seed=2**63), 'seed'),
             (chat(seed=-2**63 - 1), 'seed'), (chat(n=2.0), 'n'), (chat(stream='yes'), 'stream'), (chat(logprobs=1), 'logprobs'),
             (('/v1/completions', {'prompt': [True, False]}), 'prompt'), (('/v1/completions', {'prompt': [1.0, 2.0]}), 'prompt'),
             (('/detokenize', {'tokens': [False]}), 'tokens.0'), (('/detokenize', {'tokens': [-1]}), 'tokens.0'),
             (('/tokenize', {'prompt': 'x' * 1001}), 'prompt'), (('/tokenize', {'messages': [{'role': 'user', 'content': 'x' * 1001}]}), 'messages.0.content')]
    async def go():
        async with aclient(app) as c:
            for (path, body), param in cases:
                r = await c.post(path, json=body)
                assert r.status_code == 400 and r.json()['error']['param'] == param, (body, r.text)
            for ok in (chat(temperature=1, seed=2**63 - 1, logit_bias={'7': 1}), chat(seed=-2**63)):
                assert (await c.post(ok[0], json=ok[1])).status_code == 200
            # a system-only conversation is accepted: rendered as the first user turn
            sysonly = [{'role': 'system', 'content': 'You are terse.'}]
            r = await c.post('/v1/chat/completions', json={'messages': sysonly, 'max_tokens': 2})
            assert r.status_code == 200, r.text
            a = (await c.post('/tokenize', json={'messages': sysonly})).json()['tokens']
            b = (await c.post('/tokenize', json={'messages': [{'role': 'user', 'content': 'You are terse.'}]})).json()['tokens']
            assert a == b
    run(go())
