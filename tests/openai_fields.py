"""Drives every OpenAI sampling field Reservoir serves with OpenAI's official
client, unchanged: logit_bias, presence_penalty, frequency_penalty,
logprobs and top_logprobs (chat, streamed or not, and legacy completions),
n; then the fields it refuses (unsupported, unknown, out of bounds).

The test platform's workers run a tiny seeded model whose token i is the
letter chr(97 + i % 26) followed by i // 26 underscores, with no end token:
so token ids are known from the text, and every generation runs to
max_tokens. Logprobs are the model's own (raw) distribution, so greedy
choices under penalties and biases can be checked exactly against them."""

import os
import sys

import openai

MODEL = os.environ["RESERVOIR_MODEL"]
client = openai.OpenAI(max_retries=0)  # OPENAI_BASE_URL and OPENAI_API_KEY from the environment
HELLO = [{"role": "user", "content": "hello"}]


def check(condition, what):
    if not condition:
        print(f"FAILED: {what}")
        sys.exit(1)


def token_id(text):
    """The tiny model's id of a token's text."""
    return ord(text[0]) - 97 + 26 * (len(text) - 1)


def chat(**kwargs):
    kwargs.setdefault("temperature", 0)
    return client.chat.completions.create(model=MODEL, messages=HELLO, **kwargs)


def check_greedy(content, presence=0.0, frequency=0.0, bias=None):
    """Each chosen token beats every reported alternative once the penalties
    and biases are applied to the raw logprobs; answers at how many
    positions the penalties changed the choice (it is not the favourite
    under the biases alone)."""
    bias = bias or {}
    counts, moved = {}, 0
    for pos, entry in enumerate(content):
        def adjusted(token, logprob):
            seen = counts.get(token, 0)
            return logprob + bias.get(token_id(token), 0) - frequency * seen - (presence if seen else 0)

        chosen = adjusted(entry.token, entry.logprob)
        for alt in entry.top_logprobs:
            check(chosen >= adjusted(alt.token, alt.logprob) - 1e-3, f"position {pos}: {entry.token} beat {alt.token}")
        favourite = max(entry.top_logprobs, key=lambda a: a.logprob + bias.get(token_id(a.token), 0))
        moved += entry.token != favourite.token
        counts[entry.token] = counts.get(entry.token, 0) + 1
    return moved


# logprobs and top_logprobs: one entry a token, the alternatives best first,
# greedy takes the best.
plain = chat(max_tokens=24, logprobs=True, top_logprobs=5)
content = plain.choices[0].logprobs.content
check(len(content) == 24, f"a logprob a token: {len(content)}")
check(all(len(e.top_logprobs) == 5 for e in content), "five alternatives a token")
check(all(e.top_logprobs[0].logprob >= e.top_logprobs[-1].logprob for e in content), "alternatives best first")
check(all(bytes(e.bytes).decode() == e.token for e in content), "bytes spell the token")
check("".join(e.token for e in content) == plain.choices[0].message.content, "tokens spell the text")
check(check_greedy(content) == 0, "greedy takes the favourite")
check(chat(max_tokens=4).choices[0].logprobs is None, "no logprobs unless asked")

# The same, streamed: the chunks carry the same entries.
streamed = []
for chunk in chat(max_tokens=24, logprobs=True, top_logprobs=5, stream=True):
    if chunk.choices and chunk.choices[0].logprobs:
        streamed.extend(chunk.choices[0].logprobs.content)
check([(e.token, e.logprob) for e in streamed] == [(e.token, e.logprob) for e in content], "streamed logprobs")
check([len(e.top_logprobs) for e in streamed] == [5] * 24, "streamed alternatives")

# logit_bias: +100 forces a token, -100 bans one.
forced = chat(max_tokens=6, logit_bias={"7": 100})
check(forced.choices[0].message.content == "h" * 6, f"forced: {forced.choices[0].message.content!r}")
first = content[0].token
banned = chat(max_tokens=6, logit_bias={str(token_id(first)): -100}, logprobs=True, top_logprobs=20)
check(banned.choices[0].logprobs.content[0].token != first, "a banned token is not chosen")
check_greedy(banned.choices[0].logprobs.content, bias={token_id(first): -100})

# Presence and frequency penalties count generated tokens: greedy choices
# match the raw logprobs adjusted by them, at every position. The tiny model
# is sure of its favourite, so the runner-up is biased to within 1 of it:
# a penalty of 2 on the favourite, once generated, then moves greedy off it.
favourite, runner_up = content[0].top_logprobs[0], content[0].top_logprobs[1]
close = {token_id(runner_up.token): favourite.logprob - runner_up.logprob - 1}
for presence, frequency in [(2.0, 0.0), (0.0, 2.0), (1.5, 0.5)]:
    answer = chat(
        max_tokens=40, logprobs=True, top_logprobs=20, presence_penalty=presence, frequency_penalty=frequency,
        logit_bias={str(t): b for t, b in close.items()},
    )
    moved = check_greedy(answer.choices[0].logprobs.content, presence, frequency, close)
    check(moved > 0, f"presence {presence}, frequency {frequency} moved greedy off a repeated token")
# A bias pulls a token up; a frequency penalty pulls it down again.
run = chat(max_tokens=30, logit_bias={"7": 20}, logprobs=True, top_logprobs=20, frequency_penalty=2.0)
hs = [e.token for e in run.choices[0].logprobs.content].count("h")
check(0 < hs < 30, f"the frequency penalty outweighs the bias after a while: {hs} h of 30")
check_greedy(run.choices[0].logprobs.content, frequency=2.0, bias={7: 20})

# Legacy completions: logprobs is a count of alternatives, in parallel lists.
legacy = client.completions.create(model=MODEL, prompt="abc", max_tokens=5, temperature=0, logprobs=3)
lp = legacy.choices[0].logprobs
check(len(lp.tokens) == 5 and len(lp.token_logprobs) == 5 and len(lp.top_logprobs) == 5, f"legacy lists {lp}")
check(all(len(alts) == 3 for alts in lp.top_logprobs), "three alternatives")
check(lp.text_offset == [sum(len(t) for t in lp.tokens[:i]) for i in range(5)], f"offsets {lp.text_offset}")
check("".join(lp.tokens) == legacy.choices[0].text, "legacy tokens spell the text")
pieces = []
for chunk in client.completions.create(model=MODEL, prompt="abc", max_tokens=5, temperature=0, logprobs=3, stream=True):
    if chunk.choices and chunk.choices[0].logprobs:
        pieces.extend(chunk.choices[0].logprobs.tokens)
check(pieces == lp.tokens, "streamed legacy logprobs")

# n: independent choices, each its own sequence; usage is their sum; a seed
# makes them reproducible. The runner-up is biased level with the favourite,
# so sampled choices have two likely tokens a position to differ by.
even = {str(token_id(runner_up.token)): favourite.logprob - runner_up.logprob}
many = chat(max_tokens=8, n=3, temperature=1.0, seed=11, logit_bias=even)
check([c.index for c in many.choices] == [0, 1, 2], "three choices")
check(many.usage.completion_tokens == 24, f"usage summed: {many.usage}")
texts = [c.message.content for c in many.choices]
check(len(set(texts)) > 1, f"sampled choices differ: {texts}")
again = chat(max_tokens=8, n=3, temperature=1.0, seed=11, logit_bias=even)
check([c.message.content for c in again.choices] == texts, "the same seed gives the same choices")
one = chat(max_tokens=8, temperature=1.0, seed=11, logit_bias=even)
check(one.choices[0].message.content == texts[0], "choice 0 is the request with n = 1")
by_index, usage = {}, None
streamed_choices = chat(
    max_tokens=8, n=3, temperature=1.0, seed=11, logit_bias=even, stream=True, stream_options={"include_usage": True}
)
for chunk in streamed_choices:
    for c in chunk.choices:
        by_index[c.index] = by_index.get(c.index, "") + (c.delta.content or "")
    usage = chunk.usage or usage
check([by_index.get(i) for i in range(3)] == texts, f"streamed choices {by_index}")
check(usage is not None and usage.completion_tokens == 24, f"streamed usage {usage}")


def refused(what, param, code=None, **kwargs):
    try:
        chat(max_tokens=2, **kwargs)
    except openai.BadRequestError as e:
        check(e.param == param, f"{what}: param {e.param!r}, wanted {param!r}")
        if code is not None:
            check(e.code == code, f"{what}: code {e.code!r}, wanted {code!r}")
        return
    check(False, f"{what} must be refused")


tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
refused("tools", "tools", "unsupported_parameter", tools=[tool])
refused("tool_choice", "tool_choice", "unsupported_parameter", tool_choice="none")
refused("response_format", "response_format", "unsupported_parameter", response_format={"type": "json_object"})
refused("audio", "audio", "unsupported_parameter", audio={"voice": "alloy", "format": "wav"})
refused("modalities", "modalities", "unsupported_parameter", modalities=["text", "audio"])
refused("prediction", "prediction", "unsupported_parameter", prediction={"type": "content", "content": "x"})
refused("an unknown field", "colour", "unknown_parameter", extra_body={"colour": "red"})
refused("n beyond 8", "n", n=9)
refused("stop beyond 4", "stop", stop=["a", "b", "c", "d", "e"])
refused("logit_bias beyond 300", "logit_bias", logit_bias={str(i): 1 for i in range(301)})
refused("logit_bias beyond 100", "logit_bias", logit_bias={"1": 101})
refused("presence_penalty beyond 2", "presence_penalty", presence_penalty=2.5)
refused("frequency_penalty below -2", "frequency_penalty", frequency_penalty=-2.5)
refused("top_logprobs beyond 20", "top_logprobs", logprobs=True, top_logprobs=21)
chat(max_tokens=2, response_format={"type": "text"})  # text is what is served: accepted
try:
    chat(max_tokens=1_000)  # the tiny model's context holds 512 tokens
    check(False, "max_tokens beyond the context must be refused")
except openai.BadRequestError as e:
    check("context" in str(e), f"max_tokens beyond the context: {e}")
try:
    chat(max_tokens=2, logit_bias={"96": 1})  # the tiny vocabulary has 96 tokens
    check(False, "a token outside the vocabulary must be refused")
except openai.BadRequestError as e:
    check("vocabulary" in str(e), f"logit_bias outside the vocabulary: {e}")

print("all checks passed")
