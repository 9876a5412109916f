"""Drives Reservoir's OpenAI-compatible API with OpenAI's official client,
unchanged: plain and streamed chat completions (with usage), completions,
the model list, and the client's own exceptions for errors."""

import os
import sys

import openai

MODEL = os.environ["RESERVOIR_MODEL"]
client = openai.OpenAI()  # OPENAI_BASE_URL and OPENAI_API_KEY from the environment


def check(condition, what):
    if not condition:
        print(f"FAILED: {what}")
        sys.exit(1)


chat = client.chat.completions.create(
    model=MODEL, messages=[{"role": "user", "content": "hello"}], max_tokens=6, temperature=0
)
check(chat.choices[0].message.role == "assistant", "assistant message")
check(chat.usage.completion_tokens == 6, f"usage {chat.usage}")
check(chat.choices[0].finish_reason == "length", "finish reason")

pieces, usage = [], None
stream = client.chat.completions.create(
    model=MODEL,
    messages=[{"role": "user", "content": "hello"}],
    max_tokens=6,
    temperature=0,
    stream=True,
    stream_options={"include_usage": True},
)
for chunk in stream:
    if chunk.choices and chunk.choices[0].delta.content:
        pieces.append(chunk.choices[0].delta.content)
    if chunk.usage:
        usage = chunk.usage
check("".join(pieces) == chat.choices[0].message.content, "stream equals the plain answer")
check(usage is not None and usage.completion_tokens == 6, f"stream usage {usage}")

text = client.completions.create(model=MODEL, prompt="abc", max_tokens=3)
check(text.choices[0].text is not None, "completion text")

check(MODEL in [m.id for m in client.models.list()], "model list")

try:
    client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
    check(False, "unknown model must fail")
except openai.NotFoundError:
    pass
try:
    client.chat.completions.create(model=MODEL, messages=[])
    check(False, "empty messages must fail")
except openai.BadRequestError:
    pass
try:
    openai.OpenAI(api_key="not-a-token").chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}])
    check(False, "a bad key must fail")
except openai.AuthenticationError:
    pass

print("all checks passed")
