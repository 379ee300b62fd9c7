"""Integration tests of the OpenAI-compatible server (nanochat/server.py) against the tiny fixture model.

In-process apps go through httpx's ASGI transport; streaming and disconnect tests run a real uvicorn on loopback.
Every OpenAI client is built with `_strict_response_validation=True`, so a malformed response fails the test."""
import asyncio, json, logging, socket, threading, time
from pathlib import Path
import httpx, openai, pytest, uvicorn

from conftest import UPSTREAM
from nanochat.checkpoint import load_model
from nanochat.engine import BatchEngine
from nanochat.sampler import SamplingParams
from nanochat.server import create_app, render_chat, ChatMessage

FIX = UPSTREAM / 'E4-2026-07' / 'gqa-window'
HI = [{'role': 'user', 'content': 'Hi there'}]

@pytest.fixture(scope='module')
def mtok():
    model, tok, _ = load_model(FIX, device='cpu')
    return model, tok

@pytest.fixture(scope='module')
def engine(mtok):
    be = BatchEngine(*mtok, n_slots=8, max_queue=16).start()
    yield be
    be.stop()

def ban_end(tok):
    "logit_bias that keeps the model from ending: it runs to max_tokens / the context"
    return {str(tok.encode_special('<|assistant_end|>')): -100, str(tok.get_bos_token_id()): -100}

def aclient(app, **kw):
    return httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url='http://test', **kw)

def oai(app, key='none'):
    return openai.AsyncOpenAI(base_url='http://test/v1', api_key=key, max_retries=0, _strict_response_validation=True,
                              http_client=httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url='http://test'))

def run(coro): return asyncio.run(coro)

def free_port():
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); return s.getsockname()[1]

class Live:
    "A real uvicorn serving `app` on a free loopback port, in a thread"
    def __init__(self, app):
        self.port = free_port(); self.url = f'http://127.0.0.1:{self.port}'
        self.server = uvicorn.Server(uvicorn.Config(app, host='127.0.0.1', port=self.port, log_level='warning', lifespan='on'))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
    def __enter__(self):
        self.thread.start()
        for _ in range(200):
            if self.server.started: return self
            time.sleep(0.02)
        raise RuntimeError('uvicorn did not start')
    def __exit__(self, *a):
        self.server.should_exit = True; self.thread.join(10)

# ---------------------------------------------------------------- endpoints with the official client

def test_chat_nonstream_openai_client(engine, mtok):
    tok = mtok[1]
    app = create_app(engine=engine, model_name='tiny')
    async def go():
        c = oai(app)
        msgs = [{'role': 'system', 'content': 'Be brief.'}, {'role': 'user', 'content': [{'type': 'text', 'text': 'Hi '}, {'type': 'text', 'text': 'there'}]}]
        r = await c.chat.completions.create(model='tiny', messages=msgs, max_tokens=12, temperature=0, seed=1, user='u1')
        assert r.id.startswith('chatcmpl-') and r.object == 'chat.completion' and r.model == 'tiny' and r.system_fingerprint.startswith('fp_')
        assert r.choices[0].finish_reason in ('stop', 'length') and r.choices[0].message.role == 'assistant'
        want = render_chat(tok, [ChatMessage(role='user', content='Be brief.\n\nHi there')])   # system merged upstream-style
        assert r.usage.prompt_tokens == len(want)
        assert 1 <= r.usage.completion_tokens <= 12 and r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
        # max_completion_tokens wins over max_tokens and is honoured
        r = await c.chat.completions.create(model='tiny', messages=HI, max_completion_tokens=3, max_tokens=50,
                                            logit_bias={int(k): v for k, v in ban_end(tok).items()})
        assert r.choices[0].finish_reason == 'length' and r.usage.completion_tokens == 3
    run(go())

def test_stream_matches_nonstream_and_usage(engine, mtok):
    app = create_app(engine=engine, model_name='tiny')
    async def go():
        c = oai(app)
        kw = dict(model='tiny', messages=HI, max_tokens=20, temperature=0)
        full = await c.chat.completions.create(**kw)
        chunks = [ch async for ch in await c.chat.completions.create(**kw, stream=True, stream_options={'include_usage': True})]
        assert chunks[0].choices[0].delta.role == 'assistant' and chunks[0].choices[0].delta.content == ''
        assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == full.usage.completion_tokens
        assert chunks[-1].usage.prompt_tokens == full.usage.prompt_tokens
        fin = [ch for ch in chunks if ch.choices and ch.choices[0].finish_reason]
        assert len(fin) == 1 and fin[0].choices[0].finish_reason == full.choices[0].finish_reason
        text = ''.join(ch.choices[0].delta.content or '' for ch in chunks if ch.choices)
        assert text == full.choices[0].message.content
        assert all(ch.id == chunks[0].id for ch in chunks)
        # without include_usage: no usage chunk
        chunks = [ch async for ch in await c.chat.completions.create(**kw, stream=True)]
        assert chunks[-1].choices and chunks[-1].choices[0].finish_reason
    run(go())

def test_stream_raw_sse_shape(engine):
    app = create_app(engine=engine, model_name='tiny')
    async def go():
        async with aclient(app) as c:
            async with c.stream('POST', '/v1/chat/completions', json={'messages': HI, 'max_tokens': 5, 'stream': True,
                                                                      'stream_options': {'include_usage': True}}) as r:
                assert r.headers['content-type'].startswith('text/event-stream') and r.headers['x-request-id']
                raw = (await r.aread()).decode()
        events = [e for e in raw.split('\n\n') if e]
        assert all(e.startswith('data: ') for e in events) and events[-1] == 'data: [DONE]'
        objs = [json.loads(e[6:]) for e in events[:-1]]
        assert objs[-1]['choices'] == [] and objs[-1]['usage']['total_tokens'] > 0
        assert all(o['usage'] is None for o in objs[:-1])
        # one chunk per token (+ role chunk, finish chunk, usage chunk); max_tokens=5 tokens at most
        assert len(objs) <= 5 + 3
    run(go())

def test_n_seed_logprobs(engine, mtok):
    app = create_app(engine=engine, model_name='tiny')
    async def go():
        c = oai(app)
        kw = dict(model='tiny', messages=HI, max_tokens=6, temperature=1.0, seed=7, n=3, logprobs=True, top_logprobs=2)
        a = await c.chat.completions.create(**kw)
        b = await c.chat.completions.create(**kw)
        assert [ch.index for ch in a.choices] == [0, 1, 2]
        assert [ch.message.content for ch in a.choices] == [ch.message.content for ch in b.choices]   # seeded
        lp = a.choices[0].logprobs.content
        assert lp and all(x.logprob <= 0 and len(x.top_logprobs) == 2 for x in lp)
        assert bytes(sum((x.bytes for x in lp), [])).decode('utf-8', 'replace').startswith(a.choices[0].message.content[:1])
        # streamed n=2: every index gets its role chunk and its own finish
        chunks = [ch async for ch in await c.chat.completions.create(model='tiny', messages=HI, max_tokens=4, n=2, seed=3, stream=True,
                                                                      logprobs=True, top_logprobs=1)]
        assert any(ch.choices and ch.choices[0].logprobs and ch.choices[0].logprobs.content[0].top_logprobs for ch in chunks)
        fins = sorted(ch.choices[0].index for ch in chunks if ch.choices and ch.choices[0].finish_reason)
        assert fins == [0, 1]
    run(go())

def test_completions_text_and_ids(engine, mtok):
    tok = mtok[1]
    app = create_app(engine=engine, model_name='tiny')
    async def go():
        c = oai(app)
        r = await c.completions.create(model='tiny', prompt='The capital of France is', max_tokens=5, temperature=0)
        assert r.object == 'text_completion' and r.id.startswith('cmpl-')
        assert r.usage.prompt_tokens == 1 + len(tok.encode('The capital of France is'))
        ids = [tok.get_bos_token_id()] + tok.encode('The capital of France is')
        r2 = await c.completions.create(model='tiny', prompt=ids, max_tokens=5, temperature=0)
        assert r2.choices[0].text == r.choices[0].text
        # the SDK types every streamed text_completion chunk with a non-null finish_reason (OpenAI itself sends null
        # until the last chunk), so strict validation cannot read any real completions stream: read it leniently
        lenient = openai.AsyncOpenAI(base_url='http://test/v1', api_key='x', max_retries=0,
                                     http_client=httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url='http://test'))
        s = [ch async for ch in await lenient.completions.create(model='tiny', prompt=ids, max_tokens=5, temperature=0, stream=True,
                                                                  stream_options={'include_usage': True})]
        assert [ch.choices[0].finish_reason for ch in s if ch.choices][-1] in ('stop', 'length')
        assert ''.join(ch.choices[0].text for ch in s if ch.choices) == r.choices[0].text
        assert s[-1].usage.prompt_tokens == len(ids)
        r3 = await c.completions.create(model='tiny', prompt='Hi', max_tokens=3, logprobs=2)
        assert len(r3.choices[0].logprobs.token_logprobs) >= 1
        assert r3.choices[0].logprobs.top_logprobs[0] and len(r3.choices[0].logprobs.top_logprobs[0]) <= 2
    run(go())

def test_models_tokenize_stats_metrics_health(engine, mtok):
    tok = mtok[1]
    app = create_app(engine=engine, model_name='tiny')
    async def go():
        c = oai(app)
        ms = await c.models.list()
        assert [m.id for m in ms.data] == ['tiny'] and ms.data[0].model_extra['max_model_len'] == engine.max_len == 512
        assert (await c.models.retrieve('tiny')).id == 'tiny'
        with pytest.raises(openai.NotFoundError) as ei: await c.models.retrieve('gpt-4')
        assert ei.value.code == 'model_not_found'
        with pytest.raises(openai.NotFoundError): await c.chat.completions.create(model='gpt-4', messages=HI)
        await c.chat.completions.create(model='tiny', messages=HI, max_tokens=4)
        async with aclient(app) as h:
            assert (await h.get('/health')).json()['status'] == 'ok'
            t = (await h.post('/tokenize', json={'prompt': 'hello world'})).json()
            assert t['tokens'] == [tok.get_bos_token_id()] + tok.encode('hello world') and t['count'] == len(t['tokens']) and t['max_model_len'] == 512
            t2 = (await h.post('/tokenize', json={'messages': HI})).json()
            assert t2['tokens'] == render_chat(tok, [ChatMessage(**HI[0])])
            assert (await h.post('/detokenize', json={'tokens': tok.encode('hello world')})).json() == {'prompt': 'hello world'}
            assert (await h.post('/detokenize', json={'tokens': [99999]})).json()['error']['param'] == 'tokens'
            st = (await h.get('/stats')).json()
            assert {'slots_total', 'slots_busy', 'slots_free', 'queue_depth', 'requests_served', 'tokens_generated', 'uptime_s'} <= set(st)
            assert st['slots_total'] == 8 and st['requests_served'] >= 1
            m = (await h.get('/metrics')).text
            for name in ('nanochat:time_to_first_token_seconds_bucket', 'nanochat:inter_token_latency_seconds_bucket',
                         'nanochat:e2e_request_latency_seconds_count', 'nanochat:request_queue_time_seconds_count',
                         'nanochat:num_requests_running', 'nanochat:num_requests_waiting',
                         'nanochat:prompt_tokens_total', 'nanochat:generation_tokens_total'):
                assert name in m, name
            assert 'nanochat:e2e_request_latency_seconds_count{model_name="tiny"} 1.0' in m
            spec = (await h.get('/openapi.json')).json()
            for p in ('/v1/chat/completions', '/v1/completions', '/v1/models', '/v1/models/{model_id}', '/health', '/stats',
                      '/metrics', '/tokenize', '/detokenize'):
                assert p in spec['paths'], p
            assert 'ChatCompletionRequest' in spec['components']['schemas']
    run(go())

# ---------------------------------------------------------------- errors

def test_errors_are_openai_shaped(engine, mtok):
    tok = mtok[1]
    app = create_app(engine=engine, model_name='tiny', max_body_bytes=20_000, max_message_chars=1000, max_messages=10)
    def chat(**kw): return {'messages': HI, 'max_tokens': 2, **kw}
    cases = [  # (body, status, param, code)
        (chat(temperature=2.5), 400, 'temperature', None),
        (chat(top_logprobs=21, logprobs=True), 400, 'top_logprobs', None),
        (chat(n=9), 400, 'n', None),
        (chat(stop=['a', 'b', 'c', 'd', 'e']), 400, 'stop', None),
        (chat(logit_bias={'100000': 1}), 400, 'logit_bias', None),
        (chat(logit_bias={'abc': 1}), 400, 'logit_bias', None),
        (chat(tools=[{'type': 'function', 'function': {'name': 'f'}}]), 400, 'tools', 'unsupported_parameter'),
        (chat(response_format={'type': 'yaml'}), 400, 'response_format.type', 'invalid_value'),
        (chat(stream_options={'include_usage': True}), 400, 'stream_options', None),
        ({'messages': []}, 400, 'messages', None),
        ({'max_tokens': 2}, 400, 'messages', 'missing_required_parameter'),
        ({'messages': [{'role': 'robot', 'content': 'x'}]}, 400, None, None),
        ({'messages': [{'role': 'assistant', 'content': 'x'}]}, 400, 'messages', None),
        ({'messages': [{'role': 'user', 'content': 'a'}, {'role': 'user', 'content': 'b'}]}, 400, 'messages', None),
        ({'messages': HI * 11}, 400, 'messages', 'array_above_max_length'),
        ({'messages': [{'role': 'user', 'content': 'x' * 1500}]}, 400, 'messages.0.content', 'string_above_max_length'),
        ({'messages': [{'role': 'user', 'content': 'hi ' * 300}], 'max_tokens': 400}, 400, 'messages', 'context_length_exceeded'),
        (chat(model='nope'), 404, 'model', 'model_not_found'),
        ({'messages': [{'role': 'user', 'content': 'x' * 900}] * 30}, 413, None, 'request_too_large'),
    ]
    async def go():
        async with aclient(app) as c:
            for body, status, param, code in cases:
                r = await c.post('/v1/chat/completions', json=body)
                assert r.status_code == status, (body, r.text)
                e = r.json()['error']
                assert set(e) == {'message', 'type', 'param', 'code'} and e['message'], e
                assert e['type'] == 'invalid_request_error', e
                if param: assert e['param'] == param, (body, e)
                if code: assert e['code'] == code, (body, e)
                assert r.headers['x-request-id']
            for raw in (b'{not json', b'[1, 2]', b''):
                r = await c.post('/v1/chat/completions', content=raw, headers={'content-type': 'application/json'})
                assert r.status_code == 400 and r.json()['error']['type'] == 'invalid_request_error', r.text
            r = await c.post('/v1/completions', json={'prompt': [1, 2, 100000], 'max_tokens': 2})
            assert (r.status_code, r.json()['error']['param']) == (400, 'prompt')
            r = await c.post('/v1/completions', json={'prompt': [1] * 600})
            assert r.json()['error']['code'] == 'context_length_exceeded'
            r = await c.get('/v1/nothing-here')
            assert r.status_code == 404 and r.json()['error']['code'] == 'not_found'
        # the official client maps them to its exception classes
        c = oai(app)
        with pytest.raises(openai.BadRequestError) as ei:
            await c.chat.completions.create(model='tiny', messages=HI, temperature=3)
        assert ei.value.param == 'temperature'
        with pytest.raises(openai.BadRequestError) as ei:
            await c.chat.completions.create(model='tiny', messages=[{'role': 'user', 'content': 'hi ' * 300}], max_tokens=400)
        assert ei.value.code == 'context_length_exceeded'
    run(go())

def test_queue_full_is_503(mtok):
    tok = mtok[1]
    be = BatchEngine(*mtok, n_slots=1, max_queue=1).start()
    try:
        app = create_app(engine=be, model_name='tiny', rate_limit=None)
        async def go():
            bias = {int(k): v for k, v in ban_end(tok).items()}
            ids = render_chat(tok, [ChatMessage(**HI[0])])
            held = [be.submit(ids, max_tokens=450, params=SamplingParams(logit_bias=bias))]
            while be.stats()['slots_busy'] < 1: await asyncio.sleep(0.005)      # the first one runs ...
            held.append(be.submit(ids, max_tokens=450, params=SamplingParams(logit_bias=bias)))   # ... the second waits: queue full
            try:
                async with aclient(app) as c:
                    r = await c.post('/v1/chat/completions', json={'messages': HI, 'max_tokens': 2})
                assert r.status_code == 503 and r.json()['error']['type'] == 'server_error', r.text
            finally:
                for h in held: h.cancel()
        run(go())
    finally: be.stop()

def test_health_503_while_loading(monkeypatch):
    import nanochat.checkpoint as ck
    gate, real = threading.Event(), ck.load_model
    def slow_load(*a, **kw): gate.wait(10); return real(*a, **kw)
    monkeypatch.setattr(ck, 'load_model', slow_load)
    app = create_app(FIX, device='cpu', rate_limit=None)
    async def go():
        async with app.router.lifespan_context(app):
            async with aclient(app) as c:
                r = await c.get('/health')
                assert r.status_code == 503 and r.json()['status'] == 'loading'
                r = await c.post('/v1/chat/completions', json={'messages': HI})
                assert r.status_code == 503 and r.json()['error']['code'] == 'model_not_ready'
                gate.set()
                for _ in range(200):
                    if (await c.get('/health')).status_code == 200: break
                    await asyncio.sleep(0.05)
                assert (await c.get('/health')).status_code == 200
                m = (await c.get('/v1/models')).json()['data'][0]
                assert m['id'] == 'gqa-window' and m['max_model_len'] == 512
    run(go())

# ---------------------------------------------------------------- auth, rate limits, CORS, UI, logging

def test_api_keys(engine):
    app = create_app(engine=engine, model_name='tiny', api_keys=['sk-good', 'sk-other'])
    async def go():
        async with aclient(app) as c:
            assert (await c.get('/health')).status_code == 200                       # open
            r = await c.get('/v1/models')
            assert r.status_code == 401 and r.json()['error']['code'] == 'invalid_api_key' and r.headers['x-request-id']
            r = await c.get('/v1/models', headers={'Authorization': 'Bearer sk-bad'})
            assert r.status_code == 401
            assert (await c.get('/stats')).status_code == 401
            assert (await c.get('/v1/models', headers={'Authorization': 'Bearer sk-other'})).status_code == 200
        with pytest.raises(openai.AuthenticationError): await oai(app, 'sk-bad').models.list()
        assert (await oai(app, 'sk-good').models.list()).data[0].id == 'tiny'
    run(go())

def test_rate_limit_memory(engine):
    app = create_app(engine=engine, model_name='tiny', rate_limit='3/minute')
    async def go():
        async with aclient(app) as c:
            rs = [await c.get('/v1/models') for _ in range(4)]
            assert [r.status_code for r in rs] == [200, 200, 200, 429]
            assert [r.headers['x-ratelimit-remaining-requests'] for r in rs[:3]] == ['2', '1', '0']
            assert all(r.headers['x-ratelimit-limit-requests'] == '3' and r.headers['x-ratelimit-reset-requests'].endswith('s') for r in rs)
            r = rs[3]
            assert r.json()['error']['code'] == 'rate_limit_exceeded' and 1 <= int(r.headers['retry-after']) <= 60
            assert (await c.get('/health')).status_code == 200                       # not limited
        with pytest.raises(openai.RateLimitError): await oai(app).models.list()
    run(go())
    # per key: another key has its own window
    app = create_app(engine=engine, model_name='tiny', rate_limit='1/minute', api_keys=['a', 'b'])
    async def keys():
        async with aclient(app) as c:
            ha, hb = {'Authorization': 'Bearer a'}, {'Authorization': 'Bearer b'}
            assert [(await c.get('/v1/models', headers=ha)).status_code for _ in range(2)] == [200, 429]
            assert (await c.get('/v1/models', headers=hb)).status_code == 200
    run(keys())
    app = create_app(engine=engine, model_name='tiny', rate_limit=None)             # switched off
    async def off():
        async with aclient(app) as c:
            rs = [await c.get('/v1/models') for _ in range(70)]
            assert all(r.status_code == 200 and 'x-ratelimit-limit-requests' not in r.headers for r in rs)
    run(off())

def test_rate_limit_redis_shared(engine, tmp_path):
    from conftest import need_binary
    import subprocess
    binary = need_binary('redis-server', 'apt-get install redis-server (make system-deps)')
    port = free_port()
    p = subprocess.Popen([binary, '--port', str(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', str(tmp_path)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try: socket.create_connection(('127.0.0.1', port), 0.1).close(); break
            except OSError: time.sleep(0.05)
        url = f'redis://127.0.0.1:{port}'
        a = create_app(engine=engine, model_name='tiny', rate_limit='3/minute', rate_limit_storage=url)
        b = create_app(engine=engine, model_name='tiny', rate_limit='3/minute', rate_limit_storage=url)
        async def go():
            async with aclient(a) as ca, aclient(b) as cb:
                codes = [(await c.get('/v1/models')).status_code for c in (ca, cb, ca, cb)]
                assert codes == [200, 200, 200, 429]                                   # one shared window of 3
        run(go())
    finally:
        p.terminate(); p.wait(5)

def test_cors(engine):
    pre = {'Origin': 'http://ui.example', 'Access-Control-Request-Method': 'POST', 'Access-Control-Request-Headers': 'authorization,content-type'}
    async def go(app):
        async with aclient(app) as c:
            return await c.options('/v1/chat/completions', headers=pre), await c.get('/v1/models', headers={'Origin': 'http://ui.example'})
    off_pre, off_get = run(go(create_app(engine=engine, model_name='tiny')))
    assert 'access-control-allow-origin' not in off_get.headers and 'access-control-allow-origin' not in off_pre.headers
    on_pre, on_get = run(go(create_app(engine=engine, model_name='tiny', cors_origins=['http://ui.example'], api_keys=['k'])))
    assert on_pre.status_code == 200 and on_pre.headers['access-control-allow-origin'] == 'http://ui.example'   # preflight needs no key
    assert on_get.status_code == 401 and on_get.headers['access-control-allow-origin'] == 'http://ui.example'   # the browser can read the 401
    assert on_get.headers['x-request-id']
    _, star = run(go(create_app(engine=engine, model_name='tiny', cors_origins=['*'])))
    assert star.headers['access-control-allow-origin'] == '*'

def test_ui(engine, tmp_path):
    ui = tmp_path / 'ui'; ui.mkdir()
    (ui / 'index.html').write_text('<html>nanochat ui</html>'); (ui / 'app.js').write_text('console.log(1)')
    async def go(app):
        async with aclient(app) as c: return await c.get('/'), await c.get('/ui/app.js')
    root, js = run(go(create_app(engine=engine, model_name='tiny', ui_dir=ui, api_keys=['k'])))
    assert root.status_code == 200 and 'nanochat ui' in root.text and js.text == 'console.log(1)'
    root, js = run(go(create_app(engine=engine, model_name='tiny', ui_dir=tmp_path / 'missing')))
    assert root.status_code == 200 and 'not installed' in root.text and js.status_code == 404

def test_request_log_line(engine, caplog):
    app = create_app(engine=engine, model_name='tiny', api_keys=['sk-secret-123'])
    secret_text = 'my very private question'
    async def go():
        async with aclient(app, headers={'Authorization': 'Bearer sk-secret-123'}) as c:
            return await c.post('/v1/chat/completions', json={'messages': [{'role': 'user', 'content': secret_text}], 'max_tokens': 3})
    with caplog.at_level(logging.INFO, logger='nanochat.server'):
        r = run(go())
    lines = [rec.getMessage() for rec in caplog.records if rec.name == 'nanochat.server']
    mine = [l for l in lines if r.headers['x-request-id'] in l]
    assert len(mine) == 1, lines
    u = r.json()['usage']
    for part in ('route=/v1/chat/completions', 'status=200', f"prompt_tokens={u['prompt_tokens']}", f"completion_tokens={u['completion_tokens']}", 'latency_ms='):
        assert part in mine[0], (part, mine[0])
    assert not any('sk-secret-123' in l or secret_text in l for l in caplog.text.splitlines())

# ---------------------------------------------------------------- a real server: streaming, disconnects

def _cancelled(url):
    m = httpx.get(url + '/metrics').text
    return sum(float(l.split()[-1]) for l in m.splitlines() if l.startswith('nanochat:request_success_total') and 'cancelled' in l)

def test_live_stream_and_disconnects(mtok):
    tok = mtok[1]
    be = BatchEngine(*mtok, n_slots=4, max_queue=8)
    app = create_app(engine=be, model_name='tiny', rate_limit=None)
    long = {'model': 'tiny', 'messages': HI, 'max_tokens': 480, 'n': 4, 'logit_bias': ban_end(tok)}
    try:
        with Live(app) as srv:
            c = openai.OpenAI(base_url=srv.url + '/v1', api_key='x', max_retries=0, _strict_response_validation=True)
            s = c.chat.completions.create(model='tiny', messages=HI, max_tokens=8, temperature=0, stream=True)
            text = ''.join(ch.choices[0].delta.content or '' for ch in s if ch.choices)
            assert text == c.chat.completions.create(model='tiny', messages=HI, max_tokens=8, temperature=0).choices[0].message.content
            # streaming client goes away after two chunks: the request is cancelled and the slots freed
            with httpx.Client(base_url=srv.url) as h:
                with h.stream('POST', '/v1/chat/completions', json={**long, 'stream': True}) as r:
                    it = r.iter_lines(); next(it); next(it)
            t0 = time.monotonic()
            while (be.stats()['slots_busy'] or _cancelled(srv.url) < 1) and time.monotonic() - t0 < 5: time.sleep(0.02)
            assert be.stats()['slots_busy'] == 0 and _cancelled(srv.url) >= 1
            # non-streaming client gives up (timeout): cancelled too
            with pytest.raises(httpx.ReadTimeout):
                httpx.post(srv.url + '/v1/chat/completions', json=long, timeout=httpx.Timeout(5, read=0.15))
            t0 = time.monotonic()
            while (be.stats()['slots_busy'] or _cancelled(srv.url) < 2) and time.monotonic() - t0 < 5: time.sleep(0.02)
            assert be.stats()['slots_busy'] == 0 and _cancelled(srv.url) >= 2
            assert httpx.get(srv.url + '/health').status_code == 200
    finally: be.stop()

def test_error_after_stream_began(engine):
    app = create_app(engine=engine, model_name='tiny', rate_limit=None)
    real = engine.sched._decode
    def boom(): raise RuntimeError('kaboom')
    async def go():
        async with aclient(app) as c:
            engine.sched._decode = boom       # the engine loop turns this into an 'error' event
            try:
                async with c.stream('POST', '/v1/chat/completions', json={'messages': HI, 'max_tokens': 50, 'stream': True}) as r:
                    raw = (await r.aread()).decode()
            finally: engine.sched._decode = real
        events = [e[6:] for e in raw.split('\n\n') if e]
        assert events[-1] == '[DONE]'                       # the sample ends alone: finish_reason 'error' in its last chunk
        assert json.loads(events[-2])['choices'] == [{'index': 0, 'delta': {}, 'logprobs': None, 'finish_reason': 'error'}]
    run(go())

def test_concurrent_requests_batch(engine):
    app = create_app(engine=engine, model_name='tiny', rate_limit=None)
    async def go():
        c = oai(app)
        kw = dict(model='tiny', messages=HI, max_tokens=10, temperature=0)
        served = engine.stats()['requests_served']
        alone = (await c.chat.completions.create(**kw)).choices[0].message.content
        rs = await asyncio.gather(*[c.chat.completions.create(**kw) for _ in range(6)])
        assert all(r.choices[0].message.content == alone for r in rs)       # greedy: batching does not change the text
        for _ in range(100):   # the engine thread bumps the counter just after the last event
            if engine.stats()['requests_served'] - served == 7: break
            await asyncio.sleep(0.01)
        assert engine.stats()['requests_served'] - served == 7
        assert (await c.models.retrieve('tiny')).model_extra['max_model_len'] == 512
    run(go())
