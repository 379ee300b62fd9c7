"""`/v1/completions` as OpenAI and vLLM have it, against a real `nanochat serve` of the bundled demo model: prompt
arrays (strings, token ids, lists of either; one choice per prompt x n, prompt-major), `echo` with prompt logprobs
equal to the model's own (first token null), `max_tokens: 0` scoring, `best_of`, `suffix` refused, usage summed,
streaming, and vLLM's `/tokenizer_info`."""
import json
import httpx, pytest, torch
from conftest import live_server

MODEL = 'nanochat-demo'


@pytest.fixture(scope='module')
def server():
    with live_server('--slots', '8', '--no-rate-limit') as url: yield url


@pytest.fixture(scope='module')
def demo():
    from nanochat.checkpoint import load_model
    model, tok, _ = load_model(None, device='cpu')
    return model.eval(), tok


def post(url, body, status=200):
    r = httpx.post(url + '/v1/completions', json={'model': MODEL, **body}, timeout=300)
    assert r.status_code == status, r.text
    return r.json()


def logprobs_in_process(model, ids):
    "log P(ids[i] | ids[:i]) for i >= 1, computed with the model in-process"
    with torch.no_grad(): lp = model(torch.tensor([ids]))[0].float().log_softmax(-1)
    return [lp[i - 1, ids[i]].item() for i in range(1, len(ids))]


def test_prompt_forms_one_choice_per_prompt_times_n(server, demo):
    _, tok = demo
    texts = ['To be, or not', 'My lord', 'Romeo']
    ids = [tok.encode(t) for t in texts]
    greedy = dict(max_tokens=5, temperature=0)
    alone = [post(server, {'prompt': t, **greedy}) for t in texts]
    alone_ids = [post(server, {'prompt': i, **greedy}) for i in ids]
    single, single_ids = [[a['choices'][0]['text'] for a in rs] for rs in (alone, alone_ids)]
    for prompt, want, n_prompt_tokens, rs in [(texts, single, sum(len(i) + 1 for i in ids), alone), (ids, single_ids, sum(map(len, ids)), alone_ids)]:
        r = post(server, {'prompt': prompt, 'n': 2, **greedy})
        test_index = [c['index'] for c in r['choices']]
        assert test_index == list(range(6)), test_index
        # prompt-major, as OpenAI: choice k*n + j is sample j of prompt k
        assert [c['text'] for c in r['choices']] == [w for w in want for _ in range(2)]
        assert r['usage']['prompt_tokens'] == n_prompt_tokens                # each prompt counted once
        n_out = 2 * sum(a['usage']['completion_tokens'] for a in rs)          # summed over prompts and samples
        assert r['usage']['completion_tokens'] == n_out and r['usage']['total_tokens'] == n_prompt_tokens + n_out
    # a one-item list is the same as the bare prompt
    assert post(server, {'prompt': [texts[0]], **greedy})['choices'][0]['text'] == single[0]
    assert post(server, {'prompt': [ids[0]], **greedy})['choices'][0]['text'] == single_ids[0]


def test_echo_scores_the_prompt_like_the_model(server, demo):
    model, tok = demo
    text = 'But soft, what light through yonder window breaks?'
    ids = tok.encode(text)
    ours = logprobs_in_process(model, ids)
    # lm-eval's loglikelihood request: token ids, echo, logprobs=1, max_tokens=1
    r = post(server, {'prompt': [ids], 'echo': True, 'logprobs': 1, 'max_tokens': 1, 'temperature': 0})
    ch = r['choices'][0]
    lp = ch['logprobs']
    assert ch['text'].startswith(text) and len(lp['tokens']) == len(ids) + 1
    assert lp['token_logprobs'][0] is None and lp['top_logprobs'][0] is None
    for got, want in zip(lp['token_logprobs'][1:len(ids)], ours): assert abs(got - want) < 1e-4, (got, want)
    for top, got in zip(lp['top_logprobs'][1:len(ids)], lp['token_logprobs'][1:len(ids)]):
        assert len(top) == 1 and max(top.values()) >= got - 1e-6
    # the generated token is listed even when it ends the sample (lm-eval drops the last entry: it must be that one)
    assert ''.join(lp['tokens'][:len(ids)]) == text and lp['text_offset'][:3] == [0, len(lp['tokens'][0]), len(lp['tokens'][0]) + len(lp['tokens'][1])]
    # max_tokens 0 with echo: score only; a string prompt gets <|bos|>, which the echoed text leaves out
    r = post(server, {'prompt': text, 'echo': True, 'logprobs': 0, 'max_tokens': 0})
    ch = r['choices'][0]
    assert ch['text'] == text and ch['finish_reason'] == 'length'
    assert ch['logprobs']['tokens'][0] == '<|bos|>' and ch['logprobs']['text_offset'][:2] == [0, 0]
    with_bos = logprobs_in_process(model, [tok.get_bos_token_id()] + ids)
    assert ch['logprobs']['token_logprobs'][0] is None
    assert max(abs(a - b) for a, b in zip(ch['logprobs']['token_logprobs'][1:], with_bos)) < 1e-4
    assert r['usage'] == {'prompt_tokens': len(ids) + 1, 'completion_tokens': 0, 'total_tokens': len(ids) + 1}
    # echo without logprobs: the prompt text before the completion
    plain = post(server, {'prompt': text, 'max_tokens': 4, 'temperature': 0})['choices'][0]['text']
    assert post(server, {'prompt': text, 'echo': True, 'max_tokens': 4, 'temperature': 0})['choices'][0]['text'] == text + plain


def test_best_of_returns_the_n_best_by_mean_logprob(server):
    body = {'prompt': 'Now is the winter of', 'max_tokens': 4, 'seed': 5, 'temperature': 1.0, 'logprobs': 0}
    ref = post(server, {**body, 'n': 4})
    every = ref['choices']
    mean = lambda c: sum(c['logprobs']['token_logprobs']) / len(c['logprobs']['token_logprobs'])
    want = [c['text'] for c in sorted(every, key=lambda c: -mean(c))[:2]]
    r = post(server, {**body, 'n': 2, 'best_of': 4})
    assert [c['text'] for c in r['choices']] == want and [c['index'] for c in r['choices']] == [0, 1]
    assert r['usage'] == ref['usage']         # all best_of samples were generated and are counted
    assert len(post(server, {**body, 'best_of': 1})['choices']) == 1


@pytest.mark.parametrize('body,param,needle', [
    ({'prompt': 'x', 'suffix': 'the end'}, 'suffix', 'fill-in-the-middle'),
    ({'prompt': 'x', 'n': 3, 'best_of': 2}, 'best_of', 'at least n'),
    ({'prompt': 'x', 'best_of': 2, 'stream': True}, 'best_of', 'stream'),
    ({'prompt': 'x', 'max_tokens': 0}, 'max_tokens', 'echo'),
    ({'prompt': ['x'] * 33}, 'prompt', ''),
    ({'prompt': [[1, 2], []]}, 'prompt', ''),
    ({'prompt': [[1, 99999]]}, 'prompt', '99999'),
    ({'prompt': ['a', [1]]}, 'prompt', ''),
])
def test_refusals_name_the_parameter(server, body, param, needle):
    err = post(server, body, 400)['error']
    assert err['param'] == param and needle in err['message'], err


def test_stream_matches_non_stream_per_index(server):
    body = {'prompt': ['Friends, Romans', 'Once more unto'], 'n': 2, 'max_tokens': 5, 'temperature': 0, 'echo': True}
    whole = post(server, body)['choices']
    want, want_finish = [c['text'] for c in whole], [c['finish_reason'] for c in whole]
    got, finish = ['' for _ in want], [None for _ in want]
    with httpx.stream('POST', server + '/v1/completions', json={'model': MODEL, **body, 'stream': True,
                      'stream_options': {'include_usage': True}}, timeout=300) as r:
        assert r.status_code == 200
        lines = [l[6:] for l in r.iter_lines() if l.startswith('data: ')]
    assert lines[-1] == '[DONE]'
    usage = json.loads(lines[-2])['usage']
    for l in lines[:-2]:
        for c in json.loads(l)['choices']:
            got[c['index']] += c['text']; finish[c['index']] = c['finish_reason'] or finish[c['index']]
    assert got == want and finish == want_finish
    assert usage == post(server, body)['usage']


def test_tokenizer_info_and_remote_tokenizer(server, demo):
    _, tok = demo
    info = httpx.get(server + '/tokenizer_info', timeout=30).json()
    assert info['bos_token'] == '<|bos|>' and info['bos_token_id'] == tok.get_bos_token_id()
    assert info['eos_token_id'] == tok.encode_special(info['eos_token']) and info['vocab_size'] == tok.get_vocab_size()
    assert len(info['special_tokens']) == 9 and info['model_max_length'] > 0
    lm_utils = pytest.importorskip('lm_eval.utils')
    assert lm_utils.check_remote_tokenizer_support(server + '/v1/completions')
    rt = lm_utils.RemoteTokenizer(server + '/v1/completions')
    assert rt.encode('hello world') == tok.encode('hello world') and rt.decode(tok.encode('hello world')) == 'hello world'
