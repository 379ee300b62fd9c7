"""EleutherAI's lm-eval as a real client of `nanochat serve`: a loglikelihood (multiple-choice) task through
`local-completions` and a generate-until task through `local-chat-completions`, both defined here from local
files (no hub download). The loglikelihoods lm-eval reports must equal ours, computed in-process."""
import json, os, shutil, subprocess, sys
from pathlib import Path
import httpx, pytest, torch
from conftest import live_server, UPSTREAM

pytest.importorskip('lm_eval', reason='lm-eval not installed: pip install "lm-eval[api]" (the dev extra has it)')
FIX = UPSTREAM / 'E4-2026-07' / 'small'
MC = [{'question': 'The capital of France is', 'choices': ['Paris', 'Rome', 'a small dog'], 'answer': 0},
      {'question': 'Two plus two equals', 'choices': ['four', 'five'], 'answer': 0},
      {'question': 'Romeo loves', 'choices': ['Juliet', 'Rosaline', 'nobody at all', 'Mercutio'], 'answer': 0},
      {'question': 'Ünïcode and émoji 🎭 are', 'choices': [' handled', 'fine'], 'answer': 1}]
GEN = [{'question': 'Say hello.', 'answer': 'hello'}, {'question': 'Name a colour.', 'answer': 'red'}]


@pytest.fixture(scope='module')
def server():
    with live_server('--model', str(FIX), '--no-rate-limit') as url: yield url


def write_task(folder: Path, name, rows, **cfg):
    "A task YAML reading `rows` from a local JSONL file"
    data = folder / f'{name}.jsonl'
    data.write_text(''.join(json.dumps(r, ensure_ascii=False) + '\n' for r in rows), encoding='utf-8')
    lines = [f'task: {name}', 'dataset_path: json', 'dataset_kwargs:', '  data_files:', f'    test: {data}',
             'test_split: test', 'doc_to_text: "{{question}}"', 'doc_to_target: "{{answer}}"']
    lines += [f'{k}: {json.dumps(v)}' for k, v in cfg.items()]
    (folder / f'{name}.yaml').write_text('\n'.join(lines) + '\n', encoding='utf-8')


def lm_eval(tmp_path, model, model_args, task, *extra):
    "Run the lm-eval CLI; its per-sample log"
    out = tmp_path / f'out_{task}'
    env = {**os.environ, 'HF_DATASETS_OFFLINE': '1', 'HF_HUB_OFFLINE': '1', 'HF_HOME': str(tmp_path / 'hf')}
    exe = shutil.which('lm_eval', path=str(Path(sys.executable).parent)) or 'lm_eval'
    r = subprocess.run([exe, 'run', '--model', model, '--model_args', model_args, '--tasks', task,
                        '--include_path', str(tmp_path), '--output_path', str(out), '--log_samples', *extra],
                       capture_output=True, text=True, timeout=900, env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    files = list(out.rglob(f'samples_{task}_*.jsonl'))
    assert files, f'no sample log in {out}: {list(out.rglob("*"))}'
    return [json.loads(l) for l in files[0].read_text().splitlines() if l.strip()], list(out.rglob('results_*.json'))


def our_loglikelihood(model, tok, context, continuation):
    "Sum of log P(continuation | context) with the model in-process, tokenized as lm-eval does"
    whole, ctx = tok.encode(context + continuation), tok.encode(context)
    ids = torch.tensor([whole])
    with torch.no_grad(): lp = model(ids)[0].float().log_softmax(-1)
    return sum(lp[i - 1, whole[i]].item() for i in range(len(ctx), len(whole)))


def test_lm_eval_loglikelihood_matches_ours(server, tmp_path):
    from nanochat.checkpoint import load_model
    write_task(tmp_path, 'nanochat_mc', MC, output_type='multiple_choice', doc_to_choice='{{choices}}',
               metric_list=[{'metric': 'acc'}])
    args = f'model=small,base_url={server}/v1/completions,tokenizer_backend=remote,num_concurrent=1,max_retries=1'
    samples, results = lm_eval(tmp_path, 'local-completions', args, 'nanochat_mc')
    assert len(samples) == len(MC) and results
    model, tok, _ = load_model(FIX)
    model.eval()
    for s in samples:
        doc = s['doc']
        got = [r[0][0] if isinstance(r[0], list) else r[0] for r in s['resps']]
        for choice, ll in zip(doc['choices'], got):
            ours = our_loglikelihood(model, tok, doc['question'], ' ' + choice)
            assert abs(float(ll) - ours) < 1e-4, (doc['question'], choice, ll, ours)


def test_lm_eval_chat_generate_until(server, tmp_path):
    write_task(tmp_path, 'nanochat_gen', GEN, output_type='generate_until',
               generation_kwargs={'until': ['\n'], 'max_gen_toks': 8, 'do_sample': False},
               metric_list=[{'metric': 'exact_match'}])
    args = f'model=small,base_url={server}/v1/chat/completions,num_concurrent=2,max_retries=1'
    samples, results = lm_eval(tmp_path, 'local-chat-completions', args, 'nanochat_gen', '--apply_chat_template')
    assert len(samples) == len(GEN) and results
    # the harness got a reply for each prompt from our server (the fixture model's replies are noise, so we check
    # that each is the greedy reply our server gives for the same messages)
    for s in samples:
        reply = s['resps'][0][0]
        r = httpx.post(f'{server}/v1/chat/completions', json={'model': 'small', 'max_tokens': 8, 'temperature': 0,
                       'stop': ['\n'], 'messages': [{'role': 'user', 'content': s['doc']['question']}]}, timeout=60)
        assert r.status_code == 200, r.text
        assert reply == r.json()['choices'][0]['message']['content']
