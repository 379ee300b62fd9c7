"""The rate-limit storage goes away and comes back: a real `redis-server` on a free loopback port, stopped and
restarted under a running app. Limited routes answer 503 `service_unavailable` with Retry-After (or, failing open,
serve with a warning in the log), /health says degraded, and everything recovers by itself."""
import asyncio, logging, socket, subprocess, time
import httpx, pytest

from conftest import UPSTREAM, need_binary
from nanochat.checkpoint import load_model
from nanochat.engine import BatchEngine
from nanochat.server import create_app

FIX = UPSTREAM / 'E4-2026-07' / 'gqa-window'

def free_port():
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); return s.getsockname()[1]

class Redis:
    "redis-server on `port`, no persistence; start/stop at will"
    def __init__(self, binary, port, tmp):
        self.cmd = [binary, '--port', str(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', str(tmp)]
        self.port, self.p = port, None
    def start(self):
        self.p = subprocess.Popen(self.cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        t0 = time.monotonic()
        while True:
            try: socket.create_connection(('127.0.0.1', self.port), 0.5).close(); return self
            except OSError:
                if self.p.poll() is not None or time.monotonic() - t0 > 30: raise RuntimeError('redis-server did not start')
                time.sleep(0.05)
    def stop(self):
        if self.p is not None:
            self.p.terminate()
            try: self.p.wait(15)
            except subprocess.TimeoutExpired: self.p.kill(); self.p.wait()
            self.p = None

@pytest.fixture(scope='module')
def engine():
    model, tok, _ = load_model(FIX, device='cpu')
    be = BatchEngine(model, tok, n_slots=2, max_queue=8).start()
    yield be
    be.stop()

@pytest.fixture
def redis(tmp_path):
    r = Redis(need_binary('redis-server', 'apt-get install redis-server (make system-deps)'), free_port(), tmp_path).start()
    yield r
    r.stop()

def aclient(app): return httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url='http://test')

async def until(pred, what, deadline=60):
    t0 = time.monotonic()
    while not await pred():
        if time.monotonic() - t0 > deadline: raise AssertionError(f'{what}: not within {deadline} s')
        await asyncio.sleep(0.1)

def test_redis_outage_fail_closed_and_recovers(engine, redis, caplog):
    app = create_app(engine=engine, model_name='tiny', rate_limit='100/minute', rate_limit_storage=f'redis://127.0.0.1:{redis.port}')
    async def go():
        async with aclient(app) as c:
            r = await c.get('/v1/models')
            assert r.status_code == 200 and r.headers['x-ratelimit-limit-requests'] == '100'
            assert (await c.get('/health')).json() == {'status': 'ok', 'model': 'tiny', 'rate_limit_storage': 'ok'}
            redis.stop()
            for path in ('/v1/models', '/v1/chat/completions', '/tokenize'):
                r = await (c.get(path) if path == '/v1/models' else c.post(path, json={'messages': [{'role': 'user', 'content': 'hi'}], 'prompt': None}))
                assert r.status_code == 503, (path, r.text)
                e = r.json()['error']
                assert (e['type'], e['code']) == ('server_error', 'service_unavailable') and int(r.headers['retry-after']) >= 1
            h = await c.get('/health')                       # 200: the model serves; the dependency is reported
            assert h.status_code == 200 and h.json()['status'] == 'degraded' and h.json()['rate_limit_storage'] == 'unreachable'
            assert (await c.get('/metrics')).status_code == 200    # not a limited route
            redis.start()                                    # same port: it comes back
            async def back(): return (await c.get('/v1/models')).status_code == 200
            await until(back, 'limited routes serve again after Redis returns')
            assert (await c.get('/health')).json()['status'] == 'ok'
    with caplog.at_level(logging.WARNING, logger='nanochat.server'):
        asyncio.run(go())
    text = caplog.text
    assert 'unreachable' in text and 'answer 503' in text and 'reachable again' in text

def test_redis_outage_fail_open_logs_warning(engine, redis, caplog):
    app = create_app(engine=engine, model_name='tiny', rate_limit='2/minute', rate_limit_fail_open=True,
                     rate_limit_storage=f'redis://127.0.0.1:{redis.port}')
    async def go():
        async with aclient(app) as c:
            redis.stop()
            rs = [await c.get('/v1/models') for _ in range(5)]          # more than the limit: nothing counts them
            assert [r.status_code for r in rs] == [200] * 5 and 'x-ratelimit-limit-requests' not in rs[0].headers
            assert (await c.get('/health')).json()['status'] == 'degraded'
            redis.start()
            async def limited(): return (await c.get('/v1/models')).headers.get('x-ratelimit-limit-requests') == '2'
            await until(limited, 'limits apply again after Redis returns')
    with caplog.at_level(logging.WARNING, logger='nanochat.server'):
        asyncio.run(go())
    assert 'WITHOUT rate limits' in caplog.text
