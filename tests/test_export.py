"""Export to Hugging Face: for all 12 upstream fixtures and the demo model, transformers' logits, tokenizer and chat
template equal nanochat's; the exported folder loads back with `load_model`; `nanochat export-hf` on the command line."""
import json, os, subprocess, sys
from pathlib import Path
import pytest
import torch

os.environ.setdefault('HF_HUB_OFFLINE', '1')      # everything here is local; never reach for the Hub

pytest.importorskip('transformers', reason='the export extra is not installed: pip install "nanochat[export]"')
from safetensors import safe_open
from transformers import AutoModelForCausalLM, AutoTokenizer
from conftest import ROOT, UPSTREAM
from nanochat.checkpoint import load_model, DEMO_DIR
from nanochat.model import GPT, GPTConfig
from nanochat.export import export_hf, max_logit_gap, vllm_check, load_hf
from nanochat.tokenizer import Tokenizer

FIXTURES = sorted(p for p in UPSTREAM.glob('E*/*') if p.is_dir())
assert len(FIXTURES) == 12
E1_GAP = {'small': 9.3e-3, 'gqa-window': 6.3e-3, 'gpu-style': 5.5e-3}   # measured max |Δlogit|, bf16 vs fp32 rotary tables

CONVS = [
    {'messages': [{'role': 'system', 'content': 'Be brief.'}, {'role': 'user', 'content': 'Hi there'},
                  {'role': 'assistant', 'content': 'Hello!'}, {'role': 'user', 'content': ' 2+2=?\n'}, {'role': 'assistant', 'content': ''}]},
    {'messages': [{'role': 'user', 'content': 'compute  2**10, café 😀'},
                  {'role': 'assistant', 'content': [{'type': 'text', 'text': 'Let me see. '}, {'type': 'python', 'text': '2**10'},
                                                    {'type': 'python_output', 'text': '1024'}, {'type': 'text', 'text': 'It is 1024.'}]},
                  {'role': 'user', 'content': 'thanks\n\n'}, {'role': 'assistant', 'content': ''}]},
]
TEXTS = ['Hello, world! This is a test.', "it's I'LL we've\r\n\r\n  x 1234567 ++--=== \u00a0\u3000 日本語", '   \t\n  ', '',
         'A literal <|user_start|> marker, then <|bos|> text.']


def _cases():
    return [pytest.param(d, id=f'{d.parent.name}-{d.name}') for d in FIXTURES] + [pytest.param(DEMO_DIR, id='demo')]


def _prompts(d, tok):
    if d == DEMO_DIR:
        return [tok.encode('Once upon a time', prepend='<|bos|>'), tok.render_for_completion(CONVS[0])]
    return json.loads((d / 'expected.json').read_text())['prompts']


@pytest.mark.parametrize('d', _cases())
def test_transformers_parity(d, tmp_path):
    "logits (fp32) within 1e-4 (E1: the documented rotary gap), tokenizer and chat template ids, round trip exact"
    out = export_hf(d, tmp_path / 'hf')
    model, tok, _ = load_model(d, device='cpu')
    prompts = _prompts(d, tok)
    hf = AutoModelForCausalLM.from_pretrained(out, trust_remote_code=True, dtype=torch.float32).eval()
    gap = max_logit_gap(hf, model, prompts)
    if model.config.era == 'E1':
        assert type(hf).__name__ == 'NanoChatForCausalLM' and not (out / 'modeling_nanochat_gpt.py').exists()
        assert 1e-3 < gap <= E1_GAP[d.name] * 1.05, gap
        fp32_rotary = GPT(GPTConfig(**{**model.config.__dict__, 'rotary_bf16': False})).eval()
        fp32_rotary.load_state_dict(model.state_dict())
        assert max_logit_gap(hf, fp32_rotary, prompts) < 1e-4      # the rotary tables are the whole gap
        greedy = json.loads((d / 'expected.json').read_text())['greedy']['engine_kv_cache']
        for p, want in zip(prompts, greedy):                          # the gap does not change a greedy token here
            assert hf.generate(torch.tensor([p]), do_sample=False, max_new_tokens=24)[0, len(p):].tolist() == want
    else:
        assert type(hf).__name__ == 'NanoChatGPTForCausalLM' and gap < 1e-4, gap
    # tokenizer: encode (literal specials stay text with split_special_tokens), decode, chat template
    hft = AutoTokenizer.from_pretrained(out)
    texts = TEXTS + ([e['text'] for e in json.loads((d / 'expected.json').read_text())['encode']] if d != DEMO_DIR else [])
    for t in texts:
        assert hft(t, split_special_tokens=True)['input_ids'] == tok.encode(t), t
        assert hft.decode(tok.encode(t)) == t
    convs = CONVS + ([json.loads((d / 'expected.json').read_text())['chat_conversation']] if d != DEMO_DIR else [])
    for conv in convs:
        ids = hft.apply_chat_template(conv['messages'][:-1], add_generation_prompt=True, return_dict=False)
        assert list(ids) == tok.render_for_completion(conv)
        assert tok.encode_special('<|user_start|>') in ids and ids[-1] == tok.encode_special('<|assistant_start|>')
    if d != DEMO_DIR:
        exp = json.loads((d / 'expected.json').read_text())
        assert list(hft.apply_chat_template(convs[-1]['messages'][:-1], add_generation_prompt=True, return_dict=False)) == prompts[1]
        for r in exp.get('render', []):      # E4: whole conversations = upstream's render_conversation ids
            assert list(hft.apply_chat_template(r['conversation']['messages'], return_dict=False)) == r['ids']
    as_parts = [{**m, 'content': [{'type': 'text', 'text': m['content']}]} if m['role'] != 'assistant' else m for m in CONVS[0]['messages'][:-1]]
    assert list(hft.apply_chat_template(as_parts, add_generation_prompt=True, return_dict=False)) == tok.render_for_completion(CONVS[0])
    # round trip: load_model reads the folder back, bit-identical
    back, btok, meta = load_model(out, device='cpu')
    assert meta['era'] == model.config.era and btok.enc._mergeable_ranks == tok.enc._mergeable_ranks
    with torch.no_grad():
        for p in prompts: assert torch.equal(back(torch.tensor([p])), model(torch.tensor([p])))


def test_dtypes_are_kept_or_cast_on_request(tmp_path):
    "gpu-style keeps its bf16 tensors in the file; dtype='float32' casts everything; transformers loads without rounding"
    d = UPSTREAM / 'E2-2026-01' / 'gpu-style'
    file_dtypes = {k: v.dtype for k, v in torch.load(next(d.glob('chatsft_checkpoints/*/model_*.pt')), weights_only=True).items()}
    out = export_hf(d, tmp_path / 'keep')
    with safe_open(str(out / 'model.safetensors'), 'pt') as f:
        got = {k.removeprefix('model.'): f.get_slice(k).get_dtype() for k in f.keys()}
    assert got == {k: {torch.bfloat16: 'BF16', torch.float32: 'F32'}[v] for k, v in file_dtypes.items()}
    assert json.loads((out / 'config.json').read_text())['dtype'] == 'float32'
    hf = AutoModelForCausalLM.from_pretrained(out, trust_remote_code=True)
    assert hf.dtype == torch.float32
    out32 = export_hf(d, tmp_path / 'fp32', dtype='float32')
    with safe_open(str(out32 / 'model.safetensors'), 'pt') as f:
        assert {f.get_slice(k).get_dtype() for k in f.keys()} == {'F32'}
    demo = export_hf(None, tmp_path / 'demo')          # all-bf16 checkpoint: bf16 file, transformers loads bf16 by default
    assert json.loads((demo / 'config.json').read_text())['dtype'] == 'bfloat16'
    hf = AutoModelForCausalLM.from_pretrained(demo, trust_remote_code=True).eval()
    assert hf.dtype == torch.bfloat16
    m, tok, _ = load_model(None, device='cpu', dtype=torch.bfloat16)    # the same bf16 computation on both sides
    assert max_logit_gap(hf, m, [tok.render_for_completion(CONVS[0])]) < 1e-6
    with pytest.raises(ValueError, match="dtype='float16'"): export_hf(d, tmp_path / 'x', dtype='float16')


def test_vllm_fields(tmp_path):
    "the fields vLLM reads; E1 is servable through vLLM's Transformers backend, E2-E4 are said not to be"
    e1 = vllm_check(export_hf(UPSTREAM / 'E1-2025-10' / 'gqa-window', tmp_path / 'e1'))
    assert e1['architecture'] == 'NanoChatForCausalLM' and e1['servable'] and e1['max_model_len'] == 512
    assert (e1['num_attention_heads'], e1['num_key_value_heads'], e1['head_dim'], e1['tensor_parallel_sizes']) == (4, 2, 12, [1, 2, 4])
    e3 = vllm_check(export_hf(UPSTREAM / 'E3-2026-03' / 'small', tmp_path / 'e3'))
    assert e3['architecture'] == 'NanoChatGPTForCausalLM' and not e3['servable'] and 'attention interface' in e3['reason']
    cfg = json.loads((tmp_path / 'e3' / 'config.json').read_text())
    assert cfg['auto_map'] == {'AutoConfig': 'configuration_nanochat_gpt.NanoChatGPTConfig', 'AutoModel': 'modeling_nanochat_gpt.NanoChatGPTModel',
                               'AutoModelForCausalLM': 'modeling_nanochat_gpt.NanoChatGPTForCausalLM'}


def test_e1_as_remote_code_is_exact(tmp_path):
    "an E1 checkpoint exported with native=False runs nanochat's own code: no rotary gap"
    d = UPSTREAM / 'E1-2025-10' / 'small'
    out = export_hf(d, tmp_path / 'rc', native=False)
    model, tok, _ = load_model(d, device='cpu')
    hf = AutoModelForCausalLM.from_pretrained(out, trust_remote_code=True).eval()
    assert max_logit_gap(hf, model, _prompts(d, tok)) < 1e-5


def _cli(*args):
    return subprocess.run([sys.executable, '-c', 'import sys; from nanochat.cli import main; sys.exit(main())', *args],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)


def test_cli(tmp_path):
    "nanochat export-hf CHECKPOINT OUT_DIR; clear one-line errors for bad input"
    r = _cli('export-hf', str(UPSTREAM / 'E4-2026-07' / 'small'), str(tmp_path / 'out'))
    assert r.returncode == 0, r.stderr
    assert 'NanoChatGPTForCausalLM' in r.stdout and 'trust_remote_code=True' in r.stdout
    assert {p.name for p in (tmp_path / 'out').iterdir()} == {
        'config.json', 'model.safetensors', 'generation_config.json', 'tokenizer.json', 'tokenizer_config.json',
        'special_tokens_map.json', 'configuration_nanochat_gpt.py', 'modeling_nanochat_gpt.py'}
    gen = json.loads((tmp_path / 'out' / 'generation_config.json').read_text())
    assert gen['eos_token_id'] == [507, 503] and gen['bos_token_id'] == 503
    r = _cli('export-hf', str(UPSTREAM / 'E4-2026-07' / 'small'), str(tmp_path / 'out'))
    assert r.returncode == 2 and 'exists and is not empty' in r.stderr and 'Traceback' not in r.stderr
    r = _cli('export-hf', str(tmp_path / 'missing'), str(tmp_path / 'o2'))
    assert r.returncode == 2 and 'no such file or folder' in r.stderr and 'Traceback' not in r.stderr
    r = _cli('export-hf', str(UPSTREAM / 'E4-2026-07' / 'small'), str(tmp_path / 'o3'), '--dtype', 'float16')
    assert r.returncode == 2 and "invalid choice: 'float16'" in r.stderr
    assert 'export-hf' in _cli('--help').stdout


def test_load_model_errors(tmp_path):
    "a folder with a foreign config.json or missing weights gets a clear error"
    out = export_hf(UPSTREAM / 'E2-2026-01' / 'small', tmp_path / 'hf')
    (out / 'model.safetensors').rename(tmp_path / 'w')
    with pytest.raises(ValueError, match='model.safetensors: missing'): load_model(out)
    (tmp_path / 'w').rename(out / 'model.safetensors')
    c = json.loads((out / 'config.json').read_text()); (out / 'config.json').write_text(json.dumps({**c, 'model_type': 'llama'}))
    with pytest.raises(ValueError, match="model_type 'llama' is not a nanochat model"): load_model(out)


def test_generate_uses_nanochats_cache(tmp_path):
    "the remote-code model's generate runs on nanochat's KVCache (past the sliding window) and matches the Engine"
    d = UPSTREAM / 'E4-2026-07' / 'gqa-window'
    exp = json.loads((d / 'expected.json').read_text())
    hf = AutoModelForCausalLM.from_pretrained(export_hf(d, tmp_path / 'hf'), trust_remote_code=True).eval()
    p = exp['prompts'][2]                                   # 280 tokens: longer than the 128-token short window
    out = hf.generate(torch.tensor([p]), do_sample=False, max_new_tokens=24, return_dict_in_generate=True)
    assert out.sequences[0, len(p):].tolist() == exp['greedy']['engine_kv_cache'][2]
    assert type(out.cache).__name__ == 'NanoChatGPTCache' and out.cache.get_seq_length() == len(p) + 23


def test_transformers_finetune_comes_back(tmp_path):
    "E1 native: a step of transformers training, a sharded save_pretrained, then load_model gives transformers' logits"
    from nanochat.export import from_native_keys
    d = UPSTREAM / 'E1-2025-10' / 'gqa-window'
    out = export_hf(d, tmp_path / 'hf')
    hf = AutoModelForCausalLM.from_pretrained(out)
    x = torch.tensor([json.loads((d / 'expected.json').read_text())['prompts'][1]])
    opt = torch.optim.SGD(hf.parameters(), lr=0.5)
    hf(x, labels=x).loss.backward(); opt.step(); hf.eval()
    hf.save_pretrained(tmp_path / 'tuned', max_shard_size='20KB')
    AutoTokenizer.from_pretrained(out).save_pretrained(tmp_path / 'tuned')
    assert (tmp_path / 'tuned' / 'model.safetensors.index.json').exists()
    tuned, _, meta = load_model(tmp_path / 'tuned', device='cpu')
    orig, _, _ = load_model(d, device='cpu')
    assert meta['era'] == 'E1'
    with torch.no_grad(): assert (tuned(x) - orig(x)).abs().max() > 1e-2
    # what comes back is exactly transformers' tuned weights, and computes what transformers does (up to the E1 rotary gap)
    hsd = from_native_keys(hf.state_dict())
    assert set(hsd) == set(tuned.state_dict()) and all(torch.equal(v, hsd[k]) for k, v in tuned.state_dict().items())
    assert max_logit_gap(hf, tuned, x.tolist()) < 1.5e-2
