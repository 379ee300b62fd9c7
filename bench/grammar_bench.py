"""Pick a grammar library for structured outputs by measurement: xgrammar, llguidance, outlines-core.

Measures, on the demo model's 4k vocab and a synthetic 65k vocab (byte-level, realistic substrings):
tokenizer-info build time, schema compile time (json_object + 3 schemas), per-step mask cost while walking a
valid JSON reply, and schema-feature coverage (compiles / refuses). Prints figures and one JSON line.

    pip install llguidance xgrammar outlines-core   # xgrammar pulls ~1.1 GB (triton, transformers)
    python bench/grammar_bench.py [--quick]

A library that is not installed is skipped. Figures of the run behind our choice are in nbs/04a_structured.ipynb.
"""
import json, sys, time, statistics, collections, re, glob, argparse, os
from pathlib import Path

SCHEMAS = {
    'person': {'type': 'object', 'properties': {'name': {'type': 'string'}, 'age': {'type': 'integer'}},
               'required': ['name', 'age'], 'additionalProperties': False},
    'order': {'type': 'object', 'properties': {
        'id': {'type': 'string', 'minLength': 3, 'maxLength': 12},
        'items': {'type': 'array', 'items': {'type': 'object', 'properties': {
            'sku': {'type': 'string'}, 'qty': {'type': 'integer', 'minimum': 1, 'maximum': 99}},
            'required': ['sku', 'qty']}, 'minItems': 1, 'maxItems': 5},
        'status': {'enum': ['new', 'paid', 'shipped']}, 'note': {'anyOf': [{'type': 'string'}, {'type': 'null'}]}},
        'required': ['id', 'items', 'status']},
    'tree': {'$defs': {'node': {'type': 'object', 'properties': {'v': {'type': 'number'},
             'kids': {'type': 'array', 'items': {'$ref': '#/$defs/node'}}}, 'required': ['v']}},
             '$ref': '#/$defs/node'},
}
INSTANCES = {'person': {'name': 'Juliet Capulet', 'age': 13},
             'order': {'id': 'A-1042', 'items': [{'sku': 'quill', 'qty': 3}, {'sku': 'ink', 'qty': 1}], 'status': 'paid', 'note': None},
             'tree': {'v': 1.5, 'kids': [{'v': 2, 'kids': []}, {'v': -3e2}]},
             'json_object': {'title': 'Hamlet', 'acts': 5, 'tags': ['tragedy', 'Denmark'], 'ok': True}}
FEATURES = {
    'pattern': {'type': 'string', 'pattern': '^[A-Z]{3}-[0-9]+$'},
    'format: email': {'type': 'string', 'format': 'email'},
    'format: date-time': {'type': 'string', 'format': 'date-time'},
    'enum + const': {'type': 'object', 'properties': {'a': {'enum': [1, 'x', None]}, 'b': {'const': 'k'}}},
    'anyOf': {'anyOf': [{'type': 'integer'}, {'type': 'string'}]},
    'oneOf': {'oneOf': [{'type': 'integer'}, {'type': 'boolean'}]},
    'allOf': {'allOf': [{'type': 'object', 'properties': {'a': {'type': 'integer'}}}, {'required': ['a']}]},
    'recursive $ref': SCHEMAS['tree'],
    'min/maxItems': {'type': 'array', 'items': {'type': 'integer'}, 'minItems': 2, 'maxItems': 3},
    'minimum/maximum': {'type': 'integer', 'minimum': -5, 'maximum': 5},
    'exclusiveMinimum': {'type': 'number', 'exclusiveMinimum': 0},
    'additionalProperties schema': {'type': 'object', 'additionalProperties': {'type': 'integer'}},
    'patternProperties': {'type': 'object', 'patternProperties': {'^x': {'type': 'integer'}}},
    'uniqueItems': {'type': 'array', 'items': {'type': 'integer'}, 'uniqueItems': True},
    'if/then/else': {'if': {'type': 'integer'}, 'then': {'minimum': 0}, 'else': {'type': 'string'}},
    'not': {'not': {'type': 'string'}},
    'multipleOf': {'type': 'integer', 'multipleOf': 3},
    'pydantic model': None,   # filled in below
}
# a value each feature's schema forbids: a library that compiles the schema but lets this through ignores the feature
VIOLATIONS = {'pattern': 'ab-1', 'format: email': 'not an email', 'format: date-time': 'yesterday',
              'enum + const': {'a': 2, 'b': 'k'}, 'anyOf': 1.5, 'oneOf': 'x', 'allOf': {}, 'recursive $ref': {'v': 'x'},
              'min/maxItems': [1], 'minimum/maximum': 9, 'exclusiveMinimum': 0, 'additionalProperties schema': {'a': 'x'},
              'patternProperties': {'xa': 'no'}, 'uniqueItems': [1, 1], 'if/then/else': -1, 'not': 'str',
              'multipleOf': 4, 'pydantic model': {'title': 't', 'stars': 9, 'tags': []}}


def demo_vocab():
    "The bundled demo model's token byte strings and end-of-reply id"
    from nanochat.tokenizer import Tokenizer
    tok = Tokenizer.from_directory(Path(__file__).resolve().parents[1] / 'nanochat' / 'assets' / 'demo' / 'tokenizer')
    V = tok.get_vocab_size()
    toks = [tok.decode_bytes([i]) if not tok.is_special(i) else tok.id_to_token(i).encode() for i in range(V)]
    return toks, tok.encode_special('<|assistant_end|>'), sorted(i for i in range(V) if tok.is_special(i))


def synthetic_vocab(n=65536):
    "A 65k byte-level vocab: 256 bytes + the most frequent 2..10-byte substrings of Python's stdlib sources"
    counts = collections.Counter()
    files = sorted(glob.glob(os.path.join(os.path.dirname(os.__file__), '*.py')))[:120]
    for f in files:
        text = Path(f).read_bytes()[:60000]
        for piece in re.findall(rb' ?[A-Za-z]+| ?[0-9]{1,3}| ?[^\sA-Za-z0-9]+|\s+', text):
            for L in range(2, min(10, len(piece)) + 1): counts[piece[:L]] += 1
    toks = [bytes([b]) for b in range(256)]
    seen = set(toks)
    for s, _ in counts.most_common():
        if len(toks) >= n - 1: break
        if s not in seen: toks.append(s); seen.add(s)
    while len(toks) < n - 1: toks.append(b'<pad%d>' % len(toks))
    toks.append(b'<|end|>')
    return toks, n - 1, [n - 1]


def greedy_tokenize(text: bytes, toks):
    "Longest-match tokenization over `toks` (enough to walk a valid reply)"
    index = {t: i for i, t in enumerate(toks)}
    maxlen = max(len(t) for t in toks if not t.startswith(b'<'))
    out, i = [], 0
    while i < len(text):
        for L in range(min(maxlen, len(text) - i), 0, -1):
            j = index.get(text[i:i + L])
            if j is not None: out.append(j); i += L; break
    return out


def as_tiktoken(toks, specials):
    "A tiktoken Encoding over `toks` (llguidance reads tiktoken natively, in Rust)"
    import tiktoken
    ranks = {t: i for i, t in enumerate(toks) if i not in specials}
    return tiktoken.Encoding('bench', pat_str=r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]++[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+""",
                             mergeable_ranks=ranks, special_tokens={toks[i].decode(): i for i in specials})


class XG:
    name = 'xgrammar'
    def __init__(self, toks, eos, specials):
        import xgrammar as xgr
        self.xgr = xgr
        self.info = xgr.TokenizerInfo(toks, xgr.VocabType.RAW, vocab_size=len(toks), stop_token_ids=[eos])
        self.compiler = xgr.GrammarCompiler(self.info, max_threads=1, cache_enabled=False)
        self.V = len(toks)
    def compile(self, schema):
        return self.compiler.compile_builtin_json_grammar() if schema is None else self.compiler.compile_json_schema(json.dumps(schema))
    def walk(self, cg, ids, eos):
        m = self.xgr.GrammarMatcher(cg); bm = self.xgr.allocate_token_bitmask(1, self.V); ts = []
        for t in ids + [eos]:
            t0 = time.perf_counter(); m.fill_next_token_bitmask(bm); ts.append(time.perf_counter() - t0)
            assert m.accept_token(t), f'xgrammar refused token {t}'
        return ts, m.is_terminated()


class LLG:
    name = 'llguidance'
    def __init__(self, toks, eos, specials):
        import llguidance, llguidance.torch
        self.llg, self.lt = llguidance, llguidance.torch
        from llguidance.tiktoken import lltokenizer_from_encoding
        self.tok = lltokenizer_from_encoding(as_tiktoken(toks, specials), eos_token=eos)
        self.V = len(toks)
    def compile(self, schema):
        g = self.llg.LLMatcher.grammar_from_json_schema(schema if schema is not None else {'type': 'object'},
                                                        defaults={'whitespace_flexible': True})
        m = self.llg.LLMatcher(self.tok, g)
        if m.is_error(): raise ValueError(m.get_error())
        return g
    def walk(self, g, ids, eos):
        m = self.llg.LLMatcher(self.tok, g); bm = self.lt.allocate_token_bitmask(1, self.V); ts = []
        for t in ids + [eos]:
            t0 = time.perf_counter(); self.lt.fill_next_token_bitmask(m, bm, 0); ts.append(time.perf_counter() - t0)
            assert m.consume_token(t), f'llguidance refused token {t}: {m.get_error()}'
        return ts, m.is_stopped()


class OC:
    name = 'outlines-core'
    def __init__(self, toks, eos, specials):
        from outlines_core import Vocabulary
        from outlines_core.json_schema import build_regex_from_schema
        self.build = build_regex_from_schema
        m = collections.defaultdict(list)
        for i, t in enumerate(toks):
            if i != eos and i not in specials: m[t].append(i)
        self.vocab = Vocabulary(eos, dict(m)); self.V = len(toks)
    def compile(self, schema):
        from outlines_core import Index
        if schema is None: raise ValueError('no json_object (free-form JSON) grammar: regex only')
        return Index(self.build(json.dumps(schema)), self.vocab)
    def walk(self, index, ids, eos):
        import torch
        from outlines_core import Guide
        g = Guide(index); mask = torch.zeros((self.V + 31) // 32, dtype=torch.int32); ts = []
        for t in ids + [eos]:
            t0 = time.perf_counter(); g.write_mask_into(mask.data_ptr(), mask.numel(), 4); ts.append(time.perf_counter() - t0)
            if t == eos: break
            g.advance(t)
        return ts, g.is_finished()


def timed(f, *a):
    t0 = time.perf_counter(); r = f(*a); return r, time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser(); ap.add_argument('--quick', action='store_true'); a = ap.parse_args()
    import pydantic
    class Review(pydantic.BaseModel):
        title: str
        stars: int = pydantic.Field(ge=1, le=5)
        tags: list[str]
    FEATURES['pydantic model'] = Review.model_json_schema()
    vocabs = {'demo 4k': demo_vocab(), 'synthetic 65k': synthetic_vocab(4096 * 2 if a.quick else 65536)}
    result = {}
    for vname, (toks, eos, specials) in vocabs.items():
        for cls in (XG, LLG, OC):
            try: lib, secs = timed(cls, toks, eos, specials)
            except ImportError as e: print(f'{cls.name}: not installed ({e}); skipped'); continue
            r = result.setdefault(cls.name, {}).setdefault(vname, {})
            r['tokenizer_s'] = secs
            for sname in ['json_object', *SCHEMAS]:
                schema = SCHEMAS.get(sname)
                try: cg, r[f'compile_{sname}_s'] = timed(lib.compile, schema)
                except Exception as e: r[f'compile_{sname}_s'] = f'refused: {str(e)[:60]}'; continue
                ids = greedy_tokenize(json.dumps(INSTANCES[sname]).encode(), toks)
                try:
                    ts, done = lib.walk(cg, ids, eos)
                    r[f'mask_{sname}_us'] = round(statistics.median(ts) * 1e6, 1)
                    r[f'mask_{sname}_p95_us'] = round(sorted(ts)[int(0.95 * (len(ts) - 1))] * 1e6, 1)
                    r[f'terminated_{sname}'] = bool(done)
                except AssertionError as e: r[f'mask_{sname}_us'] = f'walk failed: {e}'
            if vname == 'demo 4k':
                cov = result.setdefault('coverage', {}).setdefault(cls.name, {})
                for fname, schema in FEATURES.items():
                    try: cg = lib.compile(schema)
                    except Exception as e: cov[fname] = 'refused'; continue
                    bad = greedy_tokenize(json.dumps(VIOLATIONS[fname]).encode(), toks)
                    try: _, done = lib.walk(cg, bad, eos); cov[fname] = 'IGNORED' if done else 'enforced'
                    except (AssertionError, ValueError, RuntimeError): cov[fname] = "enforced"
    for lib in [l for l in ('xgrammar', 'llguidance', 'outlines-core') if l in result]:
        print(f'\n== {lib}')
        for vname, r in result[lib].items():
            print(f'  {vname}: ' + ', '.join(f'{k}={v if not isinstance(v, float) else round(v, 4)}' for k, v in r.items()))
        cov = result['coverage'][lib]
        print(f'  coverage: {sum(v == "enforced" for v in cov.values())}/{len(cov)} enforced; refused (clear error): ' +
              ', '.join(k for k, v in cov.items() if v == 'refused') + '; compiled but NOT enforced: ' +
              (', '.join(k for k, v in cov.items() if v == 'IGNORED') or 'none'))
    print(json.dumps(result, default=str))

if __name__ == '__main__': main()
