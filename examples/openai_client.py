"""Talk to a nanochat server with the official OpenAI Python client: nothing nanochat-specific is needed.

    nanochat serve                                   # in another terminal (bundled demo model, http://127.0.0.1:8000)
    python examples/openai_client.py                 # or --base-url http://host:port/v1 --api-key KEY

It lists the models, asks for a completion, streams one, and shows what an error looks like."""
import argparse, os, sys
import openai

def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--base-url', default=os.environ.get('OPENAI_BASE_URL', 'http://127.0.0.1:8000/v1'))
    p.add_argument('--api-key', default=os.environ.get('NANOCHAT_API_KEY', 'none'), help='any string when the server has no keys')
    p.add_argument('--max-tokens', type=int, default=32)
    a = p.parse_args(argv)
    client = openai.OpenAI(base_url=a.base_url, api_key=a.api_key, max_retries=1)

    # 1. which model does the server serve? (max_model_len is the context length, a vLLM-style extra)
    models = client.models.list().data
    model = models[0].id
    print(f'models: {[m.id for m in models]} (context {models[0].model_extra.get("max_model_len")} tokens)')

    # 2. a plain chat completion; the system message is merged into the first user turn, as nanochat was trained
    messages = [{'role': 'system', 'content': 'You are a helpful assistant.'},
                {'role': 'user', 'content': 'Why is the sky blue?'}]
    r = client.chat.completions.create(model=model, messages=messages, max_tokens=a.max_tokens, temperature=0)
    print(f'answer: {r.choices[0].message.content!r}')
    print(f'finish_reason={r.choices[0].finish_reason} usage={r.usage.prompt_tokens}+{r.usage.completion_tokens} tokens')

    # 3. the same, streamed token by token (at temperature 0 the text is the same)
    print('streamed: ', end='', flush=True)
    parts = []
    for chunk in client.chat.completions.create(model=model, messages=messages, max_tokens=a.max_tokens, temperature=0, stream=True):
        if chunk.choices and chunk.choices[0].delta.content:
            parts.append(chunk.choices[0].delta.content); print(chunk.choices[0].delta.content, end='', flush=True)
    print()
    print(f'stream matches: {"".join(parts) == r.choices[0].message.content}')

    # 4. errors come back as OpenAI errors, so the client raises its usual exceptions
    try:
        client.chat.completions.create(model=model, messages=messages, temperature=5)
    except openai.BadRequestError as e:
        print(f'error: {e.status_code} param={e.param} message={e.message!r}')
    return 0

if __name__ == '__main__':
    sys.exit(main())
