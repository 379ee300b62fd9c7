"The fp32 `Linear` backend: oneDNN by default on CPU, MKL (F.linear) with NANOCHAT_ONEDNN=0, the same logits either way"
import json, os, subprocess, sys

CODE = """
import json, torch
from nanochat.checkpoint import load_model
from nanochat.model import onednn_linear_ok
m, tok, _ = load_model(device='cpu', dtype=torch.float32)
ids = torch.tensor([[tok.get_bos_token_id()] + tok.encode('The quick brown fox jumps over the lazy dog.')])
with torch.inference_mode(): lg = m(ids)[0]
print(json.dumps(dict(ok=onednn_linear_ok(), argmax=lg.argmax(-1).tolist(), logits=lg[:, :64].flatten().tolist())))
"""

def run(**env):
    out = subprocess.run([sys.executable, '-c', CODE], capture_output=True, text=True, timeout=300,
                         env={**os.environ, 'OMP_NUM_THREADS': '1', **env})
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])

def test_backend_switch_keeps_the_logits():
    dnn, mkl = run(), run(NANOCHAT_ONEDNN='0')
    assert dnn['ok'] and not mkl['ok']
    assert dnn['argmax'] == mkl['argmax']
    assert max(abs(a - b) for a, b in zip(dnn['logits'], mkl['logits'])) < 1e-3
