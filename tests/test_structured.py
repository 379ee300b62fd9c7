"""Structured outputs against a real `nanochat serve` of the bundled demo model: JSON mode and JSON schemas on
both endpoints, streamed or not, the official client's `.parse()`, the validity rate over many seeded samples,
`finish_reason: "length"` inside the JSON, and a 400 naming what a schema asks that we cannot enforce."""
import itertools, json
import httpx, pytest
from conftest import live_server

pytest.importorskip('llguidance', reason='llguidance not installed: pip install "nanochat[serve]"')
jsonschema = pytest.importorskip('jsonschema')
openai = pytest.importorskip('openai')
from pydantic import BaseModel, Field

PERSON = {'type': 'object', 'properties': {'name': {'type': 'string', 'maxLength': 16},
          'age': {'type': 'integer', 'minimum': 0, 'maximum': 120}}, 'required': ['name', 'age'], 'additionalProperties': False}
VERDICT = {'type': 'object', 'properties': {'verdict': {'enum': ['guilty', 'innocent']},
           'why': {'type': 'string', 'maxLength': 24}}, 'required': ['verdict', 'why'], 'additionalProperties': False}
TAGS = {'type': 'array', 'items': {'type': 'string', 'maxLength': 8}, 'minItems': 1, 'maxItems': 3}
COUNT = {'type': 'object', 'properties': {'n': {'type': 'integer', 'minimum': -5, 'maximum': 5}, 'ok': {'type': 'boolean'}},
         'required': ['n', 'ok'], 'additionalProperties': False}


class Character(BaseModel):
    name: str = Field(max_length=16)
    play: str = Field(max_length=16)
    lines: int = Field(ge=0, le=999)


@pytest.fixture(scope='module')
def server():
    with live_server('--slots', '8', '--no-rate-limit') as url: yield url


def client(url): return openai.OpenAI(base_url=url + '/v1', api_key='none', timeout=300, max_retries=0, _strict_response_validation=True)
def rf(name, schema): return {'type': 'json_schema', 'json_schema': {'name': name, 'schema': schema, 'strict': True}}
MODEL = 'nanochat-demo'
USER = [{'role': 'user', 'content': 'Tell me about a character from a play, as JSON.'}]


def test_seeded_samples_all_validate(server):
    "64 seeded samples (4 schemas x 2 seeds x n=8), every knob on: every reply stops, parses and validates"
    c, stops, total = client(server), 0, 0
    for (name, schema), seed in itertools.product([('person', PERSON), ('verdict', VERDICT), ('tags', TAGS), ('count', COUNT)], (7, 1007)):
        r = c.chat.completions.create(model=MODEL, messages=USER, response_format=rf(name, schema), n=8, seed=seed,
                                      temperature=1.0, top_p=0.95, frequency_penalty=0.3, max_tokens=64,
                                      extra_body={'top_k': 50, 'min_p': 0.02, 'repetition_penalty': 1.1})
        for ch in r.choices:
            total += 1
            assert ch.finish_reason == 'stop', (name, ch.finish_reason, ch.message.content)
            jsonschema.validate(json.loads(ch.message.content), schema)
            stops += 1
    assert total >= 50 and stops == total
    print(f'structured outputs: {stops}/{total} replies parse and validate')


def test_json_object_mode_both_endpoints(server):
    c = client(server)
    r = c.chat.completions.create(model=MODEL, messages=USER, response_format={'type': 'json_object'}, max_tokens=200, seed=1, temperature=0.7)
    ch = r.choices[0]
    if ch.finish_reason == 'stop': assert isinstance(json.loads(ch.message.content), dict)
    else: assert ch.finish_reason == 'length'
    r = httpx.post(server + '/v1/completions', json={'model': MODEL, 'prompt': 'Data:', 'max_tokens': 40, 'seed': 2,
                   'response_format': rf('count', COUNT)}, timeout=300)
    assert r.status_code == 200, r.text
    ch = r.json()['choices'][0]
    assert ch['finish_reason'] == 'stop'
    jsonschema.validate(json.loads(ch['text']), COUNT)


def test_parse_with_pydantic_model(server):
    r = client(server).chat.completions.parse(model=MODEL, messages=USER, response_format=Character, max_tokens=80, seed=3)
    msg = r.choices[0].message
    assert r.choices[0].finish_reason == 'stop'
    assert isinstance(msg.parsed, Character) and 0 <= msg.parsed.lines <= 999


def test_stream_gives_the_same_json(server):
    c = client(server)
    kw = dict(model=MODEL, messages=USER, response_format=rf('person', PERSON), max_tokens=64, seed=11, temperature=0.9)
    whole = c.chat.completions.create(**kw).choices[0].message.content
    parts = [ch.choices[0].delta.content or '' for ch in c.chat.completions.create(stream=True, **kw) if ch.choices]
    assert ''.join(parts) == whole
    jsonschema.validate(json.loads(whole), PERSON)


def test_length_inside_the_json(server):
    r = client(server).chat.completions.create(model=MODEL, messages=USER, response_format=rf('person', PERSON), max_tokens=3, seed=0)
    ch = r.choices[0]
    assert ch.finish_reason == 'length'
    with pytest.raises(json.JSONDecodeError): json.loads(ch.message.content)


@pytest.mark.parametrize('schema,needle', [({'type': 'array', 'uniqueItems': True}, 'uniqueItems'),
                                           ({'if': {'type': 'integer'}, 'then': {}}, 'if'),
                                           ({'$ref': '#/$defs/nowhere'}, 'does not exist'),
                                           ({'type': 'strin'}, 'strin')])
def test_unsupported_schema_is_400_naming_it(server, schema, needle):
    r = httpx.post(server + '/v1/chat/completions', json={'model': MODEL, 'messages': USER, 'response_format': rf('bad', schema)}, timeout=60)
    assert r.status_code == 400, r.text
    err = r.json()['error']
    assert needle in err['message'] and err['param'].startswith('response_format')


@pytest.mark.parametrize('bad', [{'type': 'yaml'}, {'type': 'json_schema'}, {'type': 'json_schema', 'json_schema': {'schema': {}}}, 'json'])
def test_malformed_response_format_is_400(server, bad):
    r = httpx.post(server + '/v1/chat/completions', json={'model': MODEL, 'messages': USER, 'response_format': bad}, timeout=60)
    assert r.status_code == 400, r.text
    assert r.json()['error']['param'].startswith('response_format')
