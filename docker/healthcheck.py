"""Docker HEALTHCHECK of the nanochat image: 200 from /health of the running server, on the port it was given.

The port and host come from the server's own command line (`--port N`, `--host H`; the last one wins, as in argparse),
read from /proc, so `docker run IMAGE --port 9000` (say with `--network host`) is checked on 9000, not on 8000.
Exit 0 when healthy, 1 otherwise (Docker's convention), with one line saying why.
"""
import os, sys, urllib.error, urllib.request

def flag_value(args, flag, default):
    "The last value of `flag` in `args` (`--flag v` or `--flag=v`), else `default`"
    v = default
    for i, a in enumerate(args):
        if a == flag and i + 1 < len(args): v = args[i + 1]
        elif a.startswith(flag + '='): v = a.split('=', 1)[1]
    return v

def server_args():
    "argv of the `nanochat serve` process in this container (lowest pid), or None"
    pids = sorted(int(p) for p in os.listdir('/proc') if p.isdigit())
    for pid in pids:
        try:
            with open(f'/proc/{pid}/cmdline', 'rb') as f: args = f.read().decode(errors='replace').split('\0')
        except OSError: continue
        if 'serve' in args and any(os.path.basename(a) == 'nanochat' for a in args): return args
    return None

def health_url(args):
    "The /health URL of a server started with `args`"
    host = flag_value(args, '--host', '127.0.0.1')
    host = {'0.0.0.0': '127.0.0.1', '::': '::1', '': '127.0.0.1'}.get(host, host)
    if ':' in host: host = f'[{host}]'
    return f'http://{host}:{int(flag_value(args, "--port", "8000"))}/health'

if __name__ == '__main__':
    args = server_args()
    if args is None: print('unhealthy: no `nanochat serve` process in this container'); sys.exit(1)
    url = health_url(args)
    try:
        with urllib.request.urlopen(url, timeout=4) as r: status = r.status
    except urllib.error.HTTPError as e: status = e.code
    except Exception as e: print(f'unhealthy: {url}: {e}'); sys.exit(1)
    print(f'{url}: {status}')
    sys.exit(0 if status == 200 else 1)
