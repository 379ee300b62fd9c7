"""Entrypoint of the nanochat image: `nanochat serve` on 0.0.0.0:8000, serving /models when it holds something.

    docker run IMAGE                        -> serves /models if a checkpoint is mounted there, else the bundled demo model
    docker run IMAGE --port 9000 --slots 4  -> extra `nanochat serve` options (a later --port/--host wins)
    docker run IMAGE generate "hi"          -> any other nanochat command runs as given

An empty /models (compose's default `./models` before you put a checkpoint there, or the anonymous volume) serves the
bundled demo model with a log line saying so, instead of exiting: under `restart: unless-stopped` an exit is a crash loop.
An explicit `--model PATH` is passed through unchanged, so a wrong path still fails with serve's one-line error.
"""
import os, sys

MODEL_DIR = os.environ.get('NANOCHAT_MODEL_DIR', '/models')
COMMANDS = ('serve', 'generate', 'safety-gen', 'mix-sft', 'train-demo', '-h', '--help')

def has_flag(args, flag):
    "True when `args` sets `flag` (as `--flag value` or `--flag=value`)"
    return any(a == flag or a.startswith(flag + '=') for a in args)

def holds_checkpoint(path):
    "True when `path` is a folder with anything in it but dotfiles (a `.gitkeep` alone counts as empty)"
    try: return any(not e.name.startswith('.') for e in os.scandir(path))
    except (FileNotFoundError, NotADirectoryError, PermissionError): return False

def serve_argv(args):
    "The `nanochat` argv the container runs for the user's `args`"
    if args and args[0] in COMMANDS and args[0] != 'serve': return list(args)
    if args and args[0] == 'serve': args = args[1:]
    argv = ['serve', '--host', '0.0.0.0', '--port', '8000']
    if not has_flag(args, '--model'):
        if holds_checkpoint(MODEL_DIR): argv += ['--model', MODEL_DIR]
        else: print(f'nanochat image: {MODEL_DIR} is empty: serving the bundled demo model '
                    f'(mount a checkpoint folder at {MODEL_DIR} to serve it instead)', flush=True)
    return argv + list(args)

if __name__ == '__main__':
    argv = serve_argv(sys.argv[1:])
    exe = os.path.join(os.path.dirname(sys.executable), 'nanochat')
    os.execv(exe, [exe] + argv)   # exec: the server is PID 1 and gets docker's SIGTERM
