#!/usr/bin/env python3
"""`make docker-test`: build the nanochat image and check it end to end on this machine (issue 15).

What it does, in order (every step prints what it runs; the run ends with a summary of measured figures):
  1. installs `docker.io`, `debootstrap` and `docker-compose` with apt when missing (needs root);
  2. uses the running Docker engine, or starts `dockerd --storage-driver=vfs` with its data root in a temp folder
     (no bridge, no iptables: containers use `--network host`) and stops it and removes that folder at the end;
  3. the base image: $BASE_IMAGE if set (e.g. python:3.11-slim-bookworm from a registry), else one made once with
     `debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm` and `docker import`,
     cached as a tarball in ~/.cache/nanochat/docker/ (no registry needed);
  4. torch: a CPU wheel that pip finds locally here (`pip download torch==2.13.0 --no-deps --no-index`: find-links
     and file indexes only, never the network, and never a CUDA build) copied to docker/local/wheels, else the
     Dockerfile's default, the PyTorch CPU index; pip in the build trusts /etc/ssl/certs/ca-certificates.crt;
  5. `docker build --network host`, timed, and the image's size;
  6. runs the image with `--network host` on a free loopback port, waits for Docker's own health status `healthy`,
     sends a chat completion and a streaming one with the openai client, checks the server runs as uid 10001;
     then again with a fixture checkpoint mounted read-only at /models, and checks that it is what is served;
  7. compose (`docker compose` or `docker-compose`) with docker/compose.host.yml: an empty MODEL_DIR serves the
     bundled demo model without restarting (issue 14 item 17), and two server replicas share one rate limit through
     the Redis service (exactly N of 2N requests allowed across both);
  8. removes its containers (and the engine it started).

Exit status: 0 all passed, 1 a check failed, 77 no Docker engine can start here (the pytest wrapper skips on it).
Options: --image TAG, --reuse-image (skip the build when TAG exists), --keep-engine, --no-run, --no-compose.
"""
from __future__ import annotations
import argparse, json, os, shutil, signal, socket, subprocess, sys, tempfile, time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOCAL = ROOT / 'docker' / 'local'
CACHE = Path(os.environ.get('XDG_CACHE_HOME', Path.home() / '.cache')) / 'nanochat' / 'docker'
BASE_TAG = 'nanochat-base:bookworm-minbase'
REDIS_TAG = 'nanochat-redis:bookworm'
FIXTURE = ROOT / 'tests' / 'fixtures' / 'upstream' / 'E4-2026-07' / 'small'
TORCH_VERSION = '2.13.0'
CA_BUNDLE = Path('/etc/ssl/certs/ca-certificates.crt')
NO_ENGINE = 77
HEALTH_DEADLINE = float(os.environ.get('NANOCHAT_DOCKER_HEALTH_DEADLINE', 900))
T0 = time.monotonic()
SUMMARY: list[str] = []

class Skip(Exception): "no Docker engine can start here"
class Failed(Exception): "a check failed"

def say(*a): print(f'[docker-test {time.monotonic() - T0:7.1f}s]', *a, flush=True)
def note(line): SUMMARY.append(line); say(line)

def sh(cmd, *, check=True, capture=False, env=None, timeout=None, quiet=False, input=None):
    "Run `cmd` (a list), echoing it; the CompletedProcess (stdout text when `capture`)"
    if not quiet: say('$', ' '.join(str(c) for c in cmd))
    r = subprocess.run([str(c) for c in cmd], text=True, env=env, timeout=timeout, input=input,
                       stdout=subprocess.PIPE if capture else None, stderr=subprocess.STDOUT if capture else None)
    if check and r.returncode != 0:
        raise Failed(f'{cmd[0]} {cmd[1] if len(cmd) > 1 else ""} exited {r.returncode}' + (f':\n{r.stdout[-3000:]}' if capture else ''))
    return r

def docker(*args, **kw): return sh(['docker', *args], **kw)
def out(*args, **kw): return docker(*args, capture=True, quiet=True, **kw).stdout.strip()
def engine_up() -> bool:
    return shutil.which('docker') is not None and subprocess.run(['docker', 'info'], capture_output=True).returncode == 0

def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0)); return s.getsockname()[1]

# ---- 1. packages
def compose_cmd() -> list[str] | None:
    "`docker compose` (the plugin) where it works, else `docker-compose`, else None"
    if shutil.which('docker') and subprocess.run(['docker', 'compose', 'version'], capture_output=True).returncode == 0:
        return ['docker', 'compose']
    return ['docker-compose'] if shutil.which('docker-compose') else None

def ensure_packages(want_compose: bool):
    need = []
    if not shutil.which('dockerd') and not engine_up(): need.append('docker.io')
    if not os.environ.get('BASE_IMAGE') and not shutil.which('debootstrap') and not (CACHE / 'bookworm-minbase.tar').exists():
        need.append('debootstrap')
    if want_compose and compose_cmd() is None: need.append('docker-compose')
    if not need: return
    if os.geteuid() != 0: raise Skip(f'{" ".join(need)} not installed and not root: apt-get install {" ".join(need)} (as root), then rerun')
    env = dict(os.environ, DEBIAN_FRONTEND='noninteractive')
    if sh(['apt-get', 'update', '-qq'], check=False, env=env).returncode != 0: raise Skip('apt-get update failed: cannot install ' + ' '.join(need))
    if sh(['apt-get', 'install', '-y', '-qq', '--no-install-recommends', *need], check=False, env=env).returncode != 0:
        raise Skip(f'apt-get install {" ".join(need)} failed')

# ---- 2. engine
class Engine:
    "The Docker engine: the one running, or a vfs dockerd in a temp folder that `stop` ends and removes"
    def __init__(self): self.proc, self.dir = None, None

    def start(self):
        if engine_up(): say('using the running Docker engine'); return self
        if not shutil.which('dockerd'): raise Skip('no dockerd (install docker.io)')
        if os.geteuid() != 0: raise Skip('no Docker engine runs and starting dockerd needs root')
        self.dir = Path(tempfile.mkdtemp(prefix='nanochat-dockerd-'))
        sock = self.dir / 'docker.sock'
        cmd = ['dockerd', '--storage-driver=vfs', f'--data-root={self.dir / "data"}', f'--exec-root={self.dir / "exec"}',
               f'--pidfile={self.dir / "dockerd.pid"}', f'--host=unix://{sock}', '--iptables=false', '--ip-masq=false', '--bridge=none']
        say('$', ' '.join(cmd), f'> {self.dir / "dockerd.log"}')
        self.log = open(self.dir / 'dockerd.log', 'w')
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        os.environ['DOCKER_HOST'] = f'unix://{sock}'
        deadline = time.monotonic() + 180
        while not engine_up():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                tail = (self.dir / 'dockerd.log').read_text()[-2000:]
                self.stop(); raise Skip(f'dockerd did not start (exit {self.proc.returncode}):\n{tail}')
            time.sleep(0.5)
        say(f'dockerd (vfs, data root {self.dir / "data"}) is up, pid {self.proc.pid}')
        return self

    def stop(self):
        if self.proc is None: return
        if self.proc.poll() is None:
            say(f'stopping the dockerd this run started (pid {self.proc.pid})')
            self.proc.send_signal(signal.SIGTERM)
            try: self.proc.wait(120)
            except subprocess.TimeoutExpired: self.proc.kill(); self.proc.wait()
        self.log.close()
        def mounts(): return [l.split()[:3] for l in Path('/proc/mounts').read_text().splitlines() if l.split()[1].startswith(str(self.dir))]
        for _, path, kind in mounts():   # dockerd leaves its network namespace handle (exec/netns/default) mounted
            if kind == 'nsfs': subprocess.run(['umount', path], check=False)
        mounted = [path for _, path, _ in mounts()]
        if mounted: say(f'left {self.dir} in place: still mounted there: {mounted[:3]}')
        else: shutil.rmtree(self.dir, ignore_errors=True); say(f'removed {self.dir}')
        os.environ.pop('DOCKER_HOST', None); self.proc = None

# ---- 3. base image
def base_image() -> str:
    if os.environ.get('BASE_IMAGE'): say(f'base image from BASE_IMAGE: {os.environ["BASE_IMAGE"]}'); return os.environ['BASE_IMAGE']
    if docker('image', 'inspect', BASE_TAG, check=False, capture=True, quiet=True).returncode == 0:
        say(f'base image {BASE_TAG} is already in the engine'); return BASE_TAG
    tar = CACHE / 'bookworm-minbase.tar'
    if not tar.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        rootfs = Path(tempfile.mkdtemp(prefix='nanochat-rootfs-', dir=CACHE))
        try:
            t = time.monotonic()
            sh(['debootstrap', '--variant=minbase', '--include=python3,python3-venv,ca-certificates', 'bookworm', rootfs,
                os.environ.get('DEBIAN_MIRROR', 'http://deb.debian.org/debian')])
            for d in ('var/cache/apt', 'var/lib/apt/lists'):   # package caches: 90 MB the image does not need
                for p in (rootfs / d).glob('*'): shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
            sh(['tar', '-C', rootfs, '--numeric-owner', '-cf', f'{tar}.part', '.'])
            os.replace(f'{tar}.part', tar)
            note(f'debootstrap base: {time.monotonic() - t:.0f} s, cached as {tar} ({tar.stat().st_size / 1e6:.0f} MB)')
        finally: shutil.rmtree(rootfs, ignore_errors=True)
    else: say(f'base rootfs from the cache: {tar}')
    docker('import', tar, BASE_TAG)
    return BASE_TAG

# ---- 4. where torch and pip's CA bundle come from
def build_args(base: str) -> dict:
    args = {'BASE_IMAGE': base, 'TORCH_INDEX': os.environ.get('TORCH_INDEX', 'https://download.pytorch.org/whl/cpu'),
            'TORCH_WHEELS': '', 'PIP_CERT_FILE': '', 'PIP_ARGS': os.environ.get('PIP_ARGS', '')}
    wheels = LOCAL / 'wheels'
    wheels.mkdir(parents=True, exist_ok=True)
    have = sorted(wheels.glob(f'torch-{TORCH_VERSION}+cpu-*.whl'))
    if not have:
        with tempfile.TemporaryDirectory() as tmp:   # local sources only (--no-index keeps find-links): never a download
            sh([sys.executable, '-m', 'pip', 'download', f'torch=={TORCH_VERSION}', '--no-deps', '--no-index', '-d', tmp, '-q'], check=False)
            for w in Path(tmp).glob('torch-*.whl'):
                if '+cpu' in w.name: shutil.move(str(w), wheels / w.name)
                else: say(f'ignoring {w.name}: not a CPU build')
        have = sorted(wheels.glob(f'torch-{TORCH_VERSION}+cpu-*.whl'))
    if have:
        args['TORCH_WHEELS'] = str(wheels.relative_to(ROOT))
        say(f'torch from the local wheel {have[0].name} ({have[0].stat().st_size / 1e6:.0f} MB)')
    else: say(f'no local CPU torch wheel: the build gets torch from {args["TORCH_INDEX"]}')
    if CA_BUNDLE.exists():
        dst = LOCAL / 'ca-certificates.crt'
        if not dst.exists() or dst.read_bytes() != CA_BUNDLE.read_bytes(): shutil.copyfile(CA_BUNDLE, dst)
        args['PIP_CERT_FILE'] = str(dst.relative_to(ROOT))
    return args

# ---- 5. build
def build(image: str, args: dict, reuse: bool):
    if reuse and docker('image', 'inspect', image, check=False, capture=True, quiet=True).returncode == 0:
        say(f'--reuse-image: {image} exists, not building')
    else:
        cmd = ['build', '--network', 'host', '-t', image]
        for k, v in args.items(): cmd += ['--build-arg', f'{k}={v}']
        t = time.monotonic()
        docker(*cmd, str(ROOT), env=dict(os.environ, DOCKER_BUILDKIT=os.environ.get('DOCKER_BUILDKIT', '0')))
        note(f'build: {time.monotonic() - t:.0f} s (docker build --network host, legacy builder, '
             f'{out("info", "-f", "{{.Driver}}")} storage driver, base {args["BASE_IMAGE"]}, '
             f'torch from {args["TORCH_WHEELS"] or args["TORCH_INDEX"]})')
    size = int(out('image', 'inspect', '-f', '{{.Size}}', image))
    base = int(out('image', 'inspect', '-f', '{{.Size}}', args['BASE_IMAGE']))
    note(f'image {image}: {size / 1e6:.0f} MB (docker image inspect .Size; base {args["BASE_IMAGE"]} {base / 1e6:.0f} MB)')

def check_contents(name: str):
    "In a running container (a new one costs minutes on vfs): the venv's size, and no build tools or build inputs"
    du = out('exec', name, 'sh', '-c', 'du -sm /opt/venv | cut -f1; du -sm /opt/venv/lib/python3*/site-packages/torch | cut -f1').split()
    tools = out('exec', name, 'sh', '-c', 'for t in gcc cc g++ make rustc cargo; do command -v $t; done; ls -d /build /tmp/*.whl 2>/dev/null; true')
    if tools: raise Failed(f'the runtime image carries build tools or inputs: {tools}')
    note(f'runtime image: /opt/venv {du[0]} MB, of which torch {du[1]} MB; no compiler (gcc/cc/g++/make/rustc/cargo), '
         'no build folder, no wheel')

# ---- 6. run and check
def wait_healthy(name: str, deadline: float = HEALTH_DEADLINE) -> float:
    "Poll `docker inspect` until the container's health is `healthy`; seconds it took"
    t, last = time.monotonic(), None
    while True:
        state = json.loads(out('inspect', '-f', '{{json .State}}', name))
        health = (state.get('Health') or {}).get('Status')
        if (state['Status'], health) != last:
            last = (state['Status'], health); say(f'{name}: {state["Status"]}, health {health}')
        if health == 'healthy': return time.monotonic() - t
        if state['Status'] in ('exited', 'dead') or health == 'unhealthy' or time.monotonic() - t > deadline:
            logs = docker('logs', '--tail', '40', name, check=False, capture=True, quiet=True).stdout
            raise Failed(f'{name} did not become healthy ({state["Status"]}, health {health}, exit {state.get("ExitCode")}):\n{logs}')
        time.sleep(2)

def health_output(name: str) -> str:
    return json.loads(out('inspect', '-f', '{{json .State.Health.Log}}', name))[-1]['Output'].strip()

def check_chat(port: int, expect_model: str | None = None) -> str:
    "A chat completion and a streaming one with the openai client; the model id"
    from openai import OpenAI
    client = OpenAI(base_url=f'http://127.0.0.1:{port}/v1', api_key='unused', timeout=300, max_retries=0)
    model = client.models.list().data[0].id
    if expect_model and model != expect_model: raise Failed(f'served model {model!r}, expected {expect_model!r}')
    msgs = [{'role': 'user', 'content': 'Hello! What is 2 + 2?'}]
    r = client.chat.completions.create(model=model, messages=msgs, max_tokens=16, temperature=0)
    c = r.choices[0]
    if c.finish_reason not in ('stop', 'length') or r.usage.completion_tokens < 1 or not isinstance(c.message.content, str):
        raise Failed(f'bad chat completion: {r}')
    parts, finish, n = [], None, 0
    for chunk in client.chat.completions.create(model=model, messages=msgs, max_tokens=16, temperature=0, stream=True):
        n += 1
        if chunk.choices and chunk.choices[0].delta.content: parts.append(chunk.choices[0].delta.content)
        if chunk.choices and chunk.choices[0].finish_reason: finish = chunk.choices[0].finish_reason
    if finish not in ('stop', 'length') or ''.join(parts) != c.message.content:
        raise Failed(f'bad stream: {n} chunks, finish {finish}, text {"".join(parts)!r} vs {c.message.content!r}')
    say(f'{model}: chat {c.message.content!r} ({r.usage.completion_tokens} tokens, {c.finish_reason}); stream: {n} chunks, same text')
    return model

def check_non_root(name: str):
    status = out('exec', name, 'cat', '/proc/1/status')
    uids = next(l.split()[1:] for l in status.splitlines() if l.startswith('Uid:'))
    cmdline = out('exec', name, 'cat', '/proc/1/cmdline').replace('\0', ' ')
    if set(uids) != {'10001'} or 'serve' not in cmdline: raise Failed(f'{name}: pid 1 {cmdline!r} runs with uids {uids}')
    say(f'{name}: pid 1 `{cmdline.strip()}` runs as uid 10001')

def run_container(image: str, name: str, extra: list[str]) -> int:
    port = free_port()
    docker('run', '-d', '--name', name, '--network', 'host', *extra, image, '--host', '127.0.0.1', '--port', port, '--slots', '2')
    took = wait_healthy(name)
    ho = health_output(name)
    if f'127.0.0.1:{port}/health' not in ho: raise Failed(f'{name}: HEALTHCHECK did not follow --port {port}: {ho!r}')
    note(f'{name}: healthy {took:.0f} s after start; HEALTHCHECK followed --port {port}: {ho!r}')
    return port

def check_images(image: str, names: list[str]):
    "`docker run` with a fixture checkpoint mounted read-only at /models (the demo model with nothing mounted: compose)"
    name = f'nanochat-test-fixture-{os.getpid()}'; names.append(name)
    port = run_container(image, name, ['--mount', f'type=bind,source={FIXTURE},target=/models,readonly'])
    mounts = json.loads(out('inspect', '-f', '{{json .Mounts}}', name))
    if [(m['Destination'], m['RW']) for m in mounts] != [('/models', False)]: raise Failed(f'{name}: mounts {mounts}')
    check_chat(port, 'models'); check_non_root(name); check_contents(name)
    import httpx
    enc = json.loads((FIXTURE / 'expected.json').read_text())['encode'][0]
    got = httpx.post(f'http://127.0.0.1:{port}/tokenize', json={'prompt': enc['text'], 'add_special_tokens': False}, timeout=60).json()
    if got.get('tokens') != enc['ids']: raise Failed(f'{name}: /tokenize gave {got}, the fixture tokenizer gives {enc["ids"]}')
    note(f'fixture {FIXTURE.relative_to(ROOT)} mounted read-only at /models: served as "models", '
         f'its tokenizer ({len(enc["ids"])} ids match expected.json), chat + stream OK, uid 10001')
    docker('rm', '-f', name, capture=True)

# ---- 7. compose
def redis_image(base: str) -> str:
    "A Redis image from the same base (registries are out of reach here): Debian's redis-server"
    if docker('image', 'inspect', REDIS_TAG, check=False, capture=True, quiet=True).returncode == 0: return REDIS_TAG
    df = (f'FROM {base}\nRUN apt-get update && apt-get install -y --no-install-recommends redis-server '
          '&& rm -rf /var/lib/apt/lists/*\nUSER redis\n')
    t = time.monotonic()
    sh(['docker', 'build', '--network', 'host', '-t', REDIS_TAG, '-'], input=df, env=dict(os.environ, DOCKER_BUILDKIT='0'))
    note(f'redis image {REDIS_TAG} (debootstrap base + Debian redis-server): {time.monotonic() - t:.0f} s')
    return REDIS_TAG

def check_compose(image: str, args: dict, projects: list):
    compose = compose_cmd()
    if compose is None: raise Failed('neither `docker compose` nor `docker-compose` is available')
    version = sh([*compose, 'version', '--short'], capture=True, check=False, quiet=True).stdout.strip()
    redis = redis_image(args['BASE_IMAGE'])
    n = 5
    empty = Path(tempfile.mkdtemp(prefix='nanochat-empty-models-'))
    try: _compose_checks(compose, version, image, args, projects, redis, n, empty)
    finally: shutil.rmtree(empty, ignore_errors=True)

def _compose_checks(compose, version, image, args, projects, redis, n, empty):
    project = f'nanochat-test-{os.getpid()}'
    env = dict(os.environ, **args, NANOCHAT_IMAGE=image, BUILD_NETWORK='host', REDIS_IMAGE=redis, MODEL_DIR=str(empty),
               PORT=str(free_port()), PORT2=str(free_port()), REDIS_PORT=str(free_port()), RATE_LIMIT=f'{n}/minute',
               COMPOSE_PROJECT_NAME=project, DOCKER_BUILDKIT=os.environ.get('DOCKER_BUILDKIT', '0'),
               COMPOSE_HTTP_TIMEOUT='1200')   # removing a container on vfs can take minutes: the default is 60 s
    env['RATE_LIMIT_STORAGE'] = f'redis://127.0.0.1:{env["REDIS_PORT"]}'
    base = [*compose, '-f', ROOT / 'docker-compose.yml', '-f', ROOT / 'docker' / 'compose.host.yml', '--profile', 'redis']
    # compose would build with the same build args as `docker build` above (checked here in its resolved config); it
    # runs that image (NANOCHAT_IMAGE) instead of building it again: on vfs a second build costs another half hour
    import yaml
    conf = yaml.safe_load(sh([*base, 'config'], env=env, capture=True, quiet=True).stdout)['services']['nanochat']
    got = {k: '' if v is None else str(v) for k, v in conf['build']['args'].items()}
    if got != args or conf['build'].get('network') != 'host': raise Failed(f'compose would build with {conf["build"]}, not {args}')
    note(f'{" ".join(compose)} {version}: builds with the same build args as docker build (its resolved config), '
         f'runs {image} with --no-build')
    projects.append((base, env))
    sh([*base, 'up', '-d', '--no-build'], env=env)
    names = {}
    for svc in ('nanochat', 'nanochat-2'):
        cid = sh([*base, 'ps', '-q', svc], env=env, capture=True, quiet=True).stdout.strip()
        names[svc] = out('inspect', '-f', '{{.Name}}', cid).lstrip('/')
    ports = {'nanochat': int(env['PORT']), 'nanochat-2': int(env['PORT2'])}
    import httpx
    for svc, name in names.items():
        took = wait_healthy(name)
        health = httpx.get(f'http://127.0.0.1:{ports[svc]}/health', timeout=60).json()   # /health is not rate limited
        if health.get('model') != 'nanochat-demo': raise Failed(f'{name}: /health says {health}, expected the demo model')
        restarts = int(out('inspect', '-f', '{{.RestartCount}}', name))
        logs = docker('logs', name, check=False, capture=True, quiet=True).stdout
        if restarts or 'is empty: serving the bundled demo model' not in logs: raise Failed(f'{name}: {restarts} restarts, logs:\n{logs[-2000:]}')
        say(f'{name}: healthy after {took:.0f} s, 0 restarts, serves the bundled demo model from an empty MODEL_DIR')
    note(f'compose, empty MODEL_DIR ({empty}): both replicas serve the bundled demo model, healthy, 0 restarts')
    codes = []   # the limit counts per client IP (no API keys): every request below is 127.0.0.1's, whichever replica
    for i in range(2 * n):
        svc = ('nanochat', 'nanochat-2')[i % 2]
        r = httpx.post(f'http://127.0.0.1:{ports[svc]}/v1/chat/completions', timeout=300,
                       json={'model': 'nanochat-demo', 'max_tokens': 4, 'messages': [{'role': 'user', 'content': 'hi'}]})
        if r.status_code == 200 and not r.json()['choices'][0]['finish_reason']: raise Failed(f'{svc}: bad reply {r.text}')
        codes.append((svc, r.status_code))
    ok = [s for s, c in codes if c == 200]
    if len(ok) != n or sorted(c for _, c in codes) != [200] * n + [429] * n or len(set(ok)) != 2:
        raise Failed(f'shared rate limit {n}/minute over two replicas: {codes}')
    note(f'compose + Redis: {2 * n} chat completions alternating over 2 replicas with --rate-limit {n}/minute -> '
         f'exactly {n} allowed ({ok.count("nanochat")} + {ok.count("nanochat-2")}), {n} got 429')
    sh([*base, 'down', '--remove-orphans', '-v'], env=env); projects.remove((base, env))

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog='tools/docker_test.py', description=__doc__.split('\n')[0])
    ap.add_argument('--image', default='nanochat:test')
    ap.add_argument('--reuse-image', action='store_true', help='skip the build when --image exists')
    ap.add_argument('--keep-engine', action='store_true', help='leave a dockerd this run started running (and its data)')
    ap.add_argument('--no-compose', action='store_true')
    ap.add_argument('--no-run', action='store_true', help='skip the `docker run` checks (to iterate on compose)')
    a = ap.parse_args(argv)
    engine, names, projects = Engine(), [], []
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        ensure_packages(not a.no_compose)
        engine.start()
        args = build_args(base_image())
        build(a.image, args, a.reuse_image)
        if not a.no_run: check_images(a.image, names)
        if not a.no_compose: check_compose(a.image, args, projects)
        print('\n'.join(['', 'docker-test: all checks passed', *[f'  - {l}' for l in SUMMARY]]), flush=True)
        return 0
    except Skip as e:
        print(f'docker-test: SKIP: no Docker engine can start here: {e}', flush=True); return NO_ENGINE
    except Exception as e:   # Failed, a timeout, a client error: the same report
        if not isinstance(e, Failed): import traceback; traceback.print_exc()
        print('\n'.join(['', f'docker-test: FAILED: {e}', *[f'  - {l}' for l in SUMMARY]]), flush=True); return 1
    finally:
        for base, env in projects: sh([*base, 'down', '--remove-orphans', '-v'], env=env, check=False, capture=True)
        for n in names: docker('rm', '-f', n, check=False, capture=True, quiet=True)
        if not a.keep_engine: engine.stop()
        elif engine.proc: say(f'--keep-engine: dockerd pid {engine.proc.pid} keeps running: DOCKER_HOST={os.environ["DOCKER_HOST"]}')

if __name__ == '__main__':
    sys.exit(main())
