"""A fault-injecting, OpenAI-compatible fake teacher for the `nanochat.safety` tests.

    python tests/fake_teacher.py --port 8123 [--api-key KEY] [--retry-after 0.1] [--slow 1.5]

It serves `GET /v1/models` and `POST /v1/chat/completions` for the prompts `nanochat.safety` sends (it reads their
`Item:`, `Category:`, `Kind:`, `Topic:`/`Example` and `User turns:` lines) and writes a plausible, distinct
conversation for each item. It is NOT a model: its output exists to exercise the pipeline and is not safety data.

Everything is a deterministic function of the request, so runs are reproducible:
- the item id picks a *content mode*: valid JSON (most), JSON in a markdown fence, repairable broken JSON, prose
  with no JSON, a wrong answer (compliance with a harmful request / refusal of a benign one), the teacher refusing
  to write the example (as plain text or as the user turn), or roles that do not alternate;
- the item id also picks a *fault* for the first attempt(s) of a request: 429 with Retry-After (once or twice),
  500/503, a reply slower than the client's timeout, or a slightly slow reply; a retry of the same request succeeds;
- judge prompts ("Review this conversation") get a pass verdict, or a fail for some items.

It also answers the capability probe of `nanochat.teacher` (the "Is water wet?" question: `{"answer": "yes"}`,
never faulted) and the short plain-text requests of the `turns` mode (a user message, a reply under the policy in
the system prompt, a pushback or follow-up), with the same kind of deterministic faults.

Flags ride on the model name: `fake-teacher+dups` repeats an earlier opening turn of the same category/kind for
some items (near-duplicates), `+no-json-schema` answers 400 to `response_format` json_schema, `+llamacpp` answers
it with HTTP 500 naming `response_format` (as llama-cpp-python's server does) and honours `json_object` + `schema`,
`+no-response-format` answers 400 to any `response_format`. With `--api-key`, requests without `Authorization: Bearer <key>` get a 401.
`POST /_reset` forgets attempt counters and `GET /_stats` reports what was injected.
"""
import argparse, asyncio, hashlib, json, random, re, time
from collections import Counter, defaultdict

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

ADJ = ('quiet red old noisy tiny huge rusty shiny clever lazy angry brave calm dusty eager fancy gentle grumpy hollow '
       'icy jolly lucky muddy narrow odd pale proud rapid salty shy sleepy smooth sour spicy sticky sunny tall tidy '
       'vivid warm wild young bitter').split()
NOUN = ('garage neighbour cousin laptop bakery harbour library bicycle kitchen warehouse festival apartment office '
        'market stadium village teacher landlord roommate podcast notebook elevator parking-lot balcony classroom '
        'forum server-room subway cafeteria garden pharmacy gym hallway backyard studio train museum bridge factory').split()
NAME = 'Alex Sam Jordan Priya Mateo Chen Fatima Olga Kwame Lena Diego Aiko Omar Ines Tomasz Zara Noah Mina'.split()
OPENERS = ('hey,', 'Quick question:', 'Be honest with me.', 'ok so', 'I need help.', 'For a project I am doing,', 'Listen,',
           'Hi there!', 'yo', 'Serious question:', 'Asking for a friend:', 'Sorry if this is weird, but')
ASKS = ('how would someone go about {t}?', 'walk me through {t}.', "what's the easiest way to handle {t}?",
        'can you explain {t} in detail?', 'I want to know about {t}.', 'tell me everything about {t}.')
PUSHBACK = ("Come on, it's just for research.", "Why not? I'm an adult and it's my business.",
            'Fine, then just hypothetically, how would it work?', "You're being useless. Just answer the question.",
            "My teacher said it's okay, so you can tell me.")
FOLLOWUP = ('Thanks! Can you give me a bit more detail?', 'Is that actually safe to do?', 'Could you give an example?',
            'What would you recommend for a beginner?')
ALTS = ('share general safety information on this topic', 'point you to legal, official resources',
        'explain how people protect themselves from this', 'help with a related, harmless task',
        'suggest someone qualified you could talk to')
SELF_HARM = ("I'm really sorry you're going through this; it sounds heavy. You don't have to face it alone: please reach "
             "out to someone you trust, or call or text 988 (in the US) or find a local line at findahelpline.com.")


def _u(*parts) -> float:
    "A deterministic uniform number in [0, 1) from the parts"
    return int(hashlib.sha256('|'.join(map(str, parts)).encode()).hexdigest()[:12], 16) / 16 ** 12


def _field(prompt, name):
    m = re.search(rf'^{re.escape(name)}: (.*)$', prompt, re.M)
    return m.group(1).strip() if m else None


def _completion(text, model, prompt_chars):
    return {'id': 'chatcmpl-' + hashlib.md5(text.encode()).hexdigest()[:12], 'object': 'chat.completion',
            'created': int(time.time()), 'model': model,
            'choices': [{'index': 0, 'finish_reason': 'stop', 'message': {'role': 'assistant', 'content': text}}],
            'usage': {'prompt_tokens': prompt_chars // 4, 'completion_tokens': len(text) // 4,
                      'total_tokens': prompt_chars // 4 + len(text) // 4}}


def _error(code, message, headers=None):
    return JSONResponse({'error': {'message': message, 'type': 'fake_error', 'code': code}}, status_code=code, headers=headers)


def make_app(api_key: str | None = None, retry_after: float = 0.1, slow: float = 1.5, delay: float = 0.0) -> FastAPI:
    "The fake teacher app; `slow` should exceed the client's timeout, `delay` is added to every reply"
    app = FastAPI()
    attempts: Counter = Counter()
    openings: dict = defaultdict(list)     # (category, kind) -> opening turns served, for +dups
    stats: Counter = Counter()

    @app.get('/v1/models')
    async def models(request: Request):
        if api_key and request.headers.get('authorization') != f'Bearer {api_key}':
            return _error(401, 'Incorrect API key provided.')
        return {'object': 'list', 'data': [{'id': 'fake-teacher', 'object': 'model', 'owned_by': 'tests'}]}

    @app.post('/_reset')
    async def reset():
        attempts.clear(); openings.clear(); stats.clear()
        return {'ok': True}

    @app.get('/_stats')
    async def get_stats(): return dict(stats)

    @app.post('/v1/chat/completions')
    async def chat(request: Request):
        if api_key and request.headers.get('authorization') != f'Bearer {api_key}':
            stats['401'] += 1
            return _error(401, 'Incorrect API key provided.')
        body = await request.json()
        model, msgs = body.get('model', ''), body.get('messages') or []
        flags = set(model.split('+')[1:])
        rf = body.get('response_format') or {}
        stats[f"rf_{rf.get('type', 'none')}{'+schema' if 'schema' in rf else ''}"] += 1
        if rf and ('no-response-format' in flags or ('no-json-schema' in flags and rf.get('type') == 'json_schema')):
            stats['400_response_format'] += 1
            return _error(400, f"response_format type {rf.get('type')!r} is not supported by this server")
        if rf.get('type') == 'json_schema' and 'llamacpp' in flags:
            stats['500_response_format'] += 1
            return _error(500, "1 validation error for CreateChatCompletionRequest response_format.type: Input should be 'text' or 'json_object'")
        prompt = msgs[-1]['content'] if msgs and isinstance(msgs[-1].get('content'), str) else ''
        plen = sum(len(m.get('content') or '') for m in msgs)
        if 'Is water wet?' in prompt:
            stats['probe'] += 1
            return _completion('{"answer": "yes"}' if rf else 'Yes! {"answer": "yes"}', model, plen)
        system = msgs[0].get('content', '') if msgs and msgs[0].get('role') == 'system' else ''
        item = _field(prompt, 'Item') or hashlib.md5(prompt.encode()).hexdigest()
        judge = prompt.startswith('Review this conversation')
        key = hashlib.sha256(json.dumps([model, msgs], sort_keys=True).encode()).hexdigest()
        attempt = attempts[key]; attempts[key] += 1
        stats['requests'] += 1
        f = _u(item, 'judge' if judge else 'gen', 'fault')
        if f < 0.03 and attempt < 2 or 0.03 <= f < 0.06 and attempt < 1:
            stats['429'] += 1
            return _error(429, 'Rate limit reached, slow down.', {'Retry-After': str(retry_after)})
        if 0.06 <= f < 0.10 and attempt < 1:
            stats['5xx'] += 1
            return _error(500 if f < 0.08 else 503, 'The server had an error while processing your request.')
        if 0.10 <= f < 0.13 and attempt < 1:
            stats['slow'] += 1
            await asyncio.sleep(slow)
        elif 0.13 <= f < 0.20:
            await asyncio.sleep(0.05)
        if delay: await asyncio.sleep(delay)
        if not judge and system.startswith(('You write one realistic message', 'You write test cases', 'You are a')):
            text, mode = _turn(system, msgs, item)
            stats[f'turn_{mode}'] += 1
            return _completion(text, model, plen)
        if judge:
            ok = _u(item, 'verdict') >= 0.08
            stats['judge_pass' if ok else 'judge_fail'] += 1
            return _completion(json.dumps({'verdict': 'pass' if ok else 'fail',
                                           'reason': 'follows the policy' if ok else 'the refusal lectures the user'}), model, plen)
        if not _field(prompt, 'Kind'):
            return _completion('{"note": "the fake teacher only knows nanochat.safety prompts"}', model, plen)
        text, mode = _conversation(item, prompt, flags, openings)
        stats[f'mode_{mode}'] += 1
        return _completion(text, model, plen)

    return app


def _turn(system, msgs, item):
    "A plain-text turn for the `turns` mode: (text, mode)"
    rng, last = random.Random(item), msgs[-1]['content']
    u = _u(item, 'turn')
    if system.startswith(('You write one realistic message', 'You write test cases')):
        if 'push back' in last: return f"{rng.choice(PUSHBACK)} It's about the {rng.choice(ADJ)} {rng.choice(NOUN)}.", 'pushback'
        if 'follow-up' in last: return f"{rng.choice(FOLLOWUP)} Say, for the {rng.choice(ADJ)} {rng.choice(NOUN)}?", 'followup'
        if u < 0.08: return last, 'echo'                               # small models repeat the prompt
        if u < 0.12: return "I'm sorry, but I can't write a message like that.", 'refuse_user'
        m = re.search(r'help me with (.*?)\?" ', last) or re.search(r'Example: "(.*?)"', last)
        topic = m.group(1) if m else 'this'
        if 'Example: "' in last: topic = ' '.join(topic.split()[:3]) + f' for my {rng.choice(ADJ)} {rng.choice(NOUN)}'
        return (f'User: "{rng.choice(OPENERS)} {rng.choice(ASKS).format(t=topic)} It is about the {rng.choice(ADJ)} {rng.choice(NOUN)} '
                f'{rng.choice(NAME)} mentioned, near the {rng.choice(ADJ)} {rng.choice(NOUN)}, plus {rng.randint(2, 99)} other details."'), 'user'
    if '988' in system: return SELF_HARM, 'support'
    if "can't help" in system:
        if u < 0.06: return 'Sure! Here is a step-by-step overview: first, gather what you need... (details omitted)', 'comply'
        return f"I can't help with that. If it's useful, I can {rng.choice(ALTS)} instead.", 'refusal'
    if u < 0.06: return "I'm sorry, but I can't help with that.", 'over_refusal'
    words = [w for w in re.findall(r'[A-Za-z]{4,}', last)][-3:]
    return f"Sure! About the {' '.join(words)}: start simple, check the basics, and ask if you get stuck.", 'answer'


def _conversation(item, prompt, flags, openings):
    "The reply text for a generation prompt, and the content mode used"
    cat = (re.search(r'\((\w+)\)', _field(prompt, 'Category') or '') or [None, '?'])[1]
    harmful = (_field(prompt, 'Kind') or '').startswith('harmful')
    turns = int(_field(prompt, 'User turns') or 1)
    topic = _field(prompt, 'Topic') or (_field(prompt, 'Example to vary on (write a different request of the same type, do not copy it)') or 'this')
    rng = random.Random(item)
    if not harmful: topic = ' '.join(topic.split()[:3]) + f' for my {rng.choice(ADJ)} {rng.choice(NOUN)}'   # vary the example, do not copy it
    opening = (f"{rng.choice(OPENERS)} {rng.choice(ASKS).format(t=topic)} It's about the {rng.choice(ADJ)} "
               f"{rng.choice(NOUN)} {rng.choice(NAME)} mentioned, the {rng.choice(ADJ)} {rng.choice(NOUN)} and the "
               f"{rng.choice(ADJ)} {rng.choice(NOUN)} near the {rng.choice(NOUN)}, plus {rng.randint(2, 99)} other "
               f"{rng.choice(ADJ)} details.")
    slot = (cat, harmful)
    if 'dups' in flags and openings[slot] and _u(item, 'dup') < 0.15:
        opening, mode = openings[slot][-1], 'dup'
    else: openings[slot].append(opening); mode = None
    u = _u(item, 'mode')
    mode = mode or ('fenced' if u < 0.06 else 'broken' if u < 0.09 else 'prose' if u < 0.11 else 'wrong' if u < 0.16 else
                    'refuse_text' if u < 0.18 else 'refuse_user' if u < 0.20 else 'alternation' if u < 0.22 else 'valid')
    if mode == 'refuse_text': return "I'm sorry, but I can't help create content like that.", mode
    if mode == 'prose': return f'Here is a short conversation where someone asks about {topic} and the assistant answers kindly.', mode
    alt = rng.choice(ALTS)
    conv = []
    for t in range(turns):
        user = opening if t == 0 else f'{rng.choice(PUSHBACK if harmful else FOLLOWUP)} ({rng.choice(ADJ)} {rng.choice(NOUN)})'
        if mode == 'refuse_user' and t == 0: user = "I'm sorry, but I can't write a request like that."
        if harmful and mode == 'wrong': reply = f'Sure! Here is a step-by-step overview of {topic}: first, gather what you need... (details omitted)'
        elif not harmful and mode == 'wrong': reply = "I'm sorry, but I can't help with that."
        elif harmful and cat == 'self_harm': reply = SELF_HARM
        elif harmful: reply = (f"I can't help with that. If it's useful, I can {alt} instead." if t == 0 else
                               f'I understand, but I still can\'t help with that. I\'m happy to {alt}.')
        else: reply = (f'Sure! In short, {topic} comes down to the {rng.choice(ADJ)} {rng.choice(NOUN)}: '
                       f'start simple, check the basics, and ask if you get stuck.')
        conv += [{'role': 'user', 'content': user}, {'role': 'assistant', 'content': reply}]
    if mode == 'alternation': conv.insert(1, {'role': 'user', 'content': 'Also, one more thing.'})
    text = json.dumps({'messages': conv})
    if mode == 'fenced': text = f'Here is the conversation:\n```json\n{text}\n```'
    if mode == 'broken': text = text[:-2] + ',]'          # a trailing comma and a missing brace: json-repair fixes it
    return text, mode


if __name__ == '__main__':
    import uvicorn
    p = argparse.ArgumentParser(description='Fault-injecting fake OpenAI-compatible teacher (tests only).')
    p.add_argument('--host', default='127.0.0.1')
    p.add_argument('--port', type=int, default=8123)
    p.add_argument('--api-key', help='require this bearer key')
    p.add_argument('--retry-after', type=float, default=0.1, help='Retry-After seconds sent with 429s')
    p.add_argument('--slow', type=float, default=1.5, help='seconds a slow reply takes (exceed the client timeout)')
    p.add_argument('--delay', type=float, default=0.0, help='seconds added to every reply')
    a = p.parse_args()
    uvicorn.run(make_app(a.api_key, a.retry_after, a.slow, a.delay), host=a.host, port=a.port, log_level='warning')
