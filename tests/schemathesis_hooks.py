"""Schemathesis hooks for tests/test_schemathesis.py (loaded with SCHEMATHESIS_HOOKS=schemathesis_hooks).

`positive_data_acceptance` is told that 400 is an acceptable answer to a schema-valid request, and this check takes
its place, narrower: a 400 to a schema-valid request is fine only for a refusal no JSON Schema can state (it depends
on the tokenizer, or on several fields together, or on JSON Schema's rule that 1.0 is an integer); any other 400 to
schema-valid data means the schema and the server disagree, and fails."""
import schemathesis
from schemathesis import GenerationMode

def semantic_refusal(e: dict) -> bool:
    "True for the refusals the schema cannot express"
    if e.get('code') in ('context_length_exceeded', 'string_above_max_length'): return True     # tokens, joined text parts
    if e.get('param') == 'messages' and e.get('message', '').startswith('invalid messages'): return True   # role order
    if 'Input should be a valid integer' in e.get('message', ''): return True   # 1.0 is a JSON Schema integer; OpenAI refuses it
    if e.get('param') == 'seed' and '922337203685477580' in e.get('message', ''):
        return True   # just past int64: validators compare in float64, where 2**63 + 191 == 2**63 - 1
    if e.get('code') == 'invalid_response_format': return True   # a JSON schema the grammar library cannot enforce (named in the message)
    if e.get('param') == 'best_of' and ('at least n' in e.get('message', '') or 'stream' in e.get('message', '')): return True   # best_of >= n, not streamed
    return False

def integral_float(v) -> bool:
    "True when `v` holds a float with an integral value (JSON Schema calls 1.0 an integer; OpenAI and this server do not)"
    if isinstance(v, float): return v.is_integer()
    if isinstance(v, dict): return any(integral_float(x) for x in v.values())
    if isinstance(v, list): return any(integral_float(x) for x in v)
    return False

@schemathesis.check
def schema_valid_refused_only_for_semantic_reasons(ctx, response, case):
    if case.meta is None or case.meta.generation.mode != GenerationMode.POSITIVE or response.status_code != 400: return None
    try: e = response.json()['error']
    except Exception: raise AssertionError(f'400 without an OpenAI error body: {response.text[:300]}')
    if integral_float(case.body) and e.get('code') == 'invalid_value': return None
    if not semantic_refusal(e): raise AssertionError(f'schema-valid request refused: {e}')
    return None
