"""How often do constrained replies of the demo model parse and validate? Seeded samples through the engine's
constraint hook (the path the server takes), every sampling knob on, several schemas; and what a too-small token
budget gives. Prints a table; run: python bench/structured_validity.py [--seeds 2] [--n 8]"""
import argparse, json, time
import jsonschema
from nanochat.checkpoint import load_model
from nanochat.engine import Engine
from nanochat.sampler import SamplingParams
from nanochat.structured import json_constraint

SCHEMAS = {
    'json_object': None,
    'person': {'type': 'object', 'properties': {'name': {'type': 'string', 'maxLength': 16},
               'age': {'type': 'integer', 'minimum': 0, 'maximum': 120}}, 'required': ['name', 'age'], 'additionalProperties': False},
    'verdict': {'type': 'object', 'properties': {'verdict': {'enum': ['guilty', 'innocent']}, 'why': {'type': 'string', 'maxLength': 24}},
                'required': ['verdict', 'why'], 'additionalProperties': False},
    'tags': {'type': 'array', 'items': {'type': 'string', 'maxLength': 8}, 'minItems': 1, 'maxItems': 3},
    'count': {'type': 'object', 'properties': {'n': {'type': 'integer', 'minimum': -5, 'maximum': 5}, 'ok': {'type': 'boolean'}},
              'required': ['n', 'ok'], 'additionalProperties': False},
    'cast': {'type': 'object', 'properties': {'play': {'enum': ['Hamlet', 'Macbeth', 'Othello']},
             'cast': {'type': 'array', 'items': {'type': 'object', 'properties': {'name': {'type': 'string', 'maxLength': 10},
                      'lines': {'type': 'integer', 'minimum': 0, 'maximum': 999}}, 'required': ['name', 'lines'], 'additionalProperties': False},
                      'minItems': 1, 'maxItems': 2}}, 'required': ['play', 'cast'], 'additionalProperties': False},
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--seeds', type=int, default=2)
    ap.add_argument('--n', type=int, default=8)
    ap.add_argument('--max-tokens', type=int, default=96)
    a = ap.parse_args()
    model, tok, _ = load_model(None, device='cpu')
    eng = Engine(model, tok)
    prompt = tok.render_for_completion({'messages': [{'role': 'user', 'content': 'Tell me about a character from a play, as JSON.'},
                                                     {'role': 'assistant', 'content': ''}]}, max_tokens=None)
    print(f'{"schema":12} {"samples":>7} {"stop":>5} {"valid":>5} {"length":>6} {"mean tok":>8} {"s":>6}')
    tot = dict(samples=0, stop=0, valid=0, length=0)
    for name, schema in SCHEMAS.items():
        rf = {'type': 'json_object'} if schema is None else {'type': 'json_schema', 'json_schema': {'name': name, 'schema': schema}}
        make, check = json_constraint(rf, tok), schema or {'type': 'object'}
        c = dict(samples=0, stop=0, valid=0, length=0); toks = 0; t0 = time.perf_counter()
        for seed in range(a.seeds):
            p = SamplingParams(temperature=1.0, top_p=0.95, top_k=50, min_p=0.02, repetition_penalty=1.1, frequency_penalty=0.3, seed=1000 * seed + 7)
            for out in eng.complete(prompt, a.max_tokens, params=p, n=a.n, constraint=make):
                c['samples'] += 1; toks += len(out.tokens)
                if out.finish_reason == 'stop':
                    c['stop'] += 1
                    try: jsonschema.validate(json.loads(out.text), check); c['valid'] += 1
                    except (ValueError, jsonschema.ValidationError) as e: print('  INVALID', name, repr(out.text), e)
                elif out.finish_reason == 'length': c['length'] += 1
        for k in tot: tot[k] += c[k]
        print(f'{name:12} {c["samples"]:7} {c["stop"]:5} {c["valid"]:5} {c["length"]:6} {toks / c["samples"]:8.1f} {time.perf_counter() - t0:6.1f}')
    print(f'{"all":12} {tot["samples"]:7} {tot["stop"]:5} {tot["valid"]:5} {tot["length"]:6}')
    print(f'replies that stop and validate: {tot["valid"]}/{tot["stop"]} ({100 * tot["valid"] / max(tot["stop"], 1):.1f}%)')
    # a budget that ends inside the JSON: finish 'length', text a prefix that does not parse
    cut = eng.complete(prompt, 3, params=SamplingParams(seed=0), n=a.n, constraint=json_constraint(
        {'type': 'json_schema', 'json_schema': {'name': 'person', 'schema': SCHEMAS['person']}}, tok))
    unparsable = 0
    for out in cut:
        try: json.loads(out.text)
        except ValueError: unparsable += 1
    print(f'max_tokens=3 on "person": finish_reason {sorted({o.finish_reason for o in cut})}, {unparsable}/{len(cut)} do not parse')


if __name__ == '__main__': main()
