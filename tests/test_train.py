"""The training recipe (nanochat.train) and the bundled demo model it made.

Fast: the shipped demo folder has nanochat's layout, fits the size budget and loads; the CLI parses.
Slow (`make test SLOW=1`): two CPU processes under torchrun/gloo train a tiny model with DDP; the shipped model's
quality bar (val bits per byte vs a unigram baseline, turn endings and Shakespeare-like words on held-out prompts)."""
import json, os, subprocess, sys
from pathlib import Path
import pytest
from conftest import ROOT

PY = sys.executable
DEMO = ROOT/'nanochat'/'assets'/'demo'

def _demo_log():
    p = DEMO/'train_log.json'
    if not p.exists(): pytest.fail(f'{p} is missing: run `make demo-model`')
    return json.loads(p.read_text())

def test_demo_folder_layout_and_size():
    log = _demo_log()
    ckpt = DEMO/log['checkpoint']
    assert ckpt.parent.name == 'chatsft_checkpoints'
    step = log['config']['sft_steps']
    for f in [DEMO/'tokenizer'/'tokenizer.pkl', DEMO/'tokenizer'/'token_bytes.pt', ckpt/f'model_{step:06d}.pt', ckpt/f'meta_{step:06d}.json']:
        assert f.exists(), f
    size = sum(f.stat().st_size for f in DEMO.rglob('*') if f.is_file())
    assert size <= 25e6, f'demo folder is {size/1e6:.1f} MB, over the 25 MB budget'
    meta = json.loads((ckpt/f'meta_{step:06d}.json').read_text())
    assert meta['model_config'] == log['model_config']

def test_demo_loads_with_load_model():
    import torch
    from nanochat.checkpoint import load_model
    model, tok, meta = load_model(device='cpu')           # no path: the bundled demo
    log = _demo_log()
    assert model.num_params() == log['params']
    assert tok.get_vocab_size() == log['model_config']['vocab_size']
    assert all(p.dtype == torch.float32 for p in model.parameters())   # bf16 on disk, fp32 on CPU
    sd = torch.load(meta['checkpoint'], map_location='cpu', weights_only=True)
    assert {v.dtype for v in sd.values() if v.is_floating_point()} == {getattr(torch, log['weights_dtype'])}

def test_cli_help():
    r = subprocess.run([PY, '-m', 'nanochat.train', '--help'], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0 and 'nanochat train-demo' in r.stdout and '--tiny' in r.stdout

@pytest.mark.slow
def test_torchrun_ddp_two_cpu_processes(tmp_path):
    "2 processes on the gloo backend: both train (same steps, identical weights after DDP), rank 0 writes the checkpoint"
    torchrun = Path(PY).with_name('torchrun')
    assert torchrun.exists(), f'{torchrun} missing (it ships with torch)'
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'PYTHONPATH': str(ROOT)}
    cmd = [str(torchrun), '--standalone', '--nproc_per_node=2', '-m', 'nanochat.train', '--tiny', '--device', 'cpu',
           '--out-dir', str(tmp_path/'demo'), '--work-dir', str(tmp_path/'work'), '--no-safety']
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    log = json.loads((tmp_path/'demo'/'train_log.json').read_text())
    assert log['world_size'] == 2
    ranks = log['ranks']
    assert [x['rank'] for x in ranks] == [0, 1] and len({x['pid'] for x in ranks}) == 2     # two processes ran
    assert all(x['steps'] == log['config']['pretrain_steps'] + log['config']['sft_steps'] for x in ranks)
    assert log['ranks_in_sync'] and ranks[0]['param_checksum'] == ranks[1]['param_checksum']
    assert log['tokens']['pretrain'] == log['config']['pretrain_steps'] * log['config']['batch_size'] * log['config']['seq_len']
    step = log['config']['sft_steps']
    assert (tmp_path/'demo'/'chatsft_checkpoints'/'d1'/f'model_{step:06d}.pt').exists()
    assert (tmp_path/'work'/'base_checkpoints'/'d1').is_dir()
    assert r.stdout.count('[train-demo] model ') == 1             # only rank 0 logs
    from nanochat.checkpoint import load_model
    model, tok, meta = load_model(tmp_path/'demo', device='cpu')
    assert meta['model_config'] == log['model_config']

@pytest.fixture(scope='module')
def shipped():
    from nanochat.checkpoint import load_model
    from nanochat.train import load_works, split_works, fetch_shakespeare
    model, tok, meta = load_model(device='cpu')
    works = load_works(fetch_shakespeare())
    log = _demo_log()
    train_w, val_w = split_works(works, log['config']['val_works'])
    return model, tok, works, train_w, val_w, log

@pytest.mark.slow
def test_quality_val_bpb_beats_unigram(shipped):
    from nanochat.train import encode_works, evaluate_bpb, unigram_bpb
    model, tok, works, train_w, val_w, log = shipped
    train_ids, val_ids = encode_works(tok, train_w), encode_works(tok, val_w)
    uni = unigram_bpb(train_ids, val_ids, tok.token_bytes)
    got = evaluate_bpb(model, val_ids, tok.token_bytes, seq_len=model.config.sequence_len, batch_size=16)
    print(f"val bpb {got['bpb']:.4f} vs unigram {uni:.4f}")
    assert got['bpb'] < 0.8 * uni, f"val bpb {got['bpb']:.3f} is not clearly below the unigram baseline {uni:.3f}"
    assert abs(got['bpb'] - log['val_bpb']) < 1e-3            # the recorded figure is what the shipped files give

@pytest.mark.slow
def test_quality_chat_replies_stop_and_read_as_shakespeare(shipped):
    from nanochat.train import chat_eval, eval_prompts, corpus_vocabulary
    model, tok, works, train_w, val_w, log = shipped
    prompts = eval_prompts(val_w, 50)
    assert len(set(prompts)) == 50
    res = chat_eval(model, tok, prompts, corpus_vocabulary(works), temperature=0.8, max_tokens=256)
    print(f"stop rate {res['stop_rate']:.0%}, corpus-word share {res['word_share']:.1%}")
    assert res['stop_rate'] >= 0.9, [r for r in res['replies'] if r['finish_reason'] != 'stop'][:3]
    assert res['word_share'] >= 0.85     # random tokens score ~0.43, unigram samples ~0.63
    assert sum(r['reply'].strip() != '' for r in res['replies']) >= 45     # replies say something
