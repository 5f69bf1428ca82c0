"""The reference LLM server's tokenizer: byte-level, deterministic, defined in code (no downloads).

- Text is encoded as its UTF-8 bytes, one token per byte (ids 0–255), with no BOS: a prompt of N
  ASCII characters is exactly N tokens, so a load tester can ask for a prompt length in tokens.
- `EOS_ID` (256) ends a sequence (unless `ignore_eos`); ids above it are the model's other tokens.
- Decoding is per token, so streamed text never waits for a multi-byte character: ids 0–255 as the
  Latin-1 character of that byte (ASCII round-trips), EOS as nothing, any other id as a space and
  a letters-only word spelling the id in base 26 (" aab"): deterministic, and readable in a log.
- Chat: each message becomes `<|role|>\\n{content}\\n`, then `<|assistant|>\\n` cues the answer;
  the prompt's token count is that string's UTF-8 length.
"""

from __future__ import annotations

EOS_ID = 256
FIRST_WORD_ID = 257


def encode(text: str) -> list[int]:
    """Token ids of `text`: its UTF-8 bytes."""
    return list(text.encode("utf-8"))


def decode_token(token: int) -> str:
    """The text of one token (see the module docstring)."""
    if token < 256:
        return chr(token)
    if token == EOS_ID:
        return ""
    n = token - FIRST_WORD_ID
    letters = ""
    while True:
        n, r = divmod(n, 26)
        letters = chr(ord("a") + r) + letters
        if n == 0:
            return " " + letters


def chat_prompt(messages: list[tuple[str, str]]) -> str:
    """The prompt text of a chat: (role, content) pairs in order, then the assistant's cue."""
    return "".join(f"<|{role}|>\n{content}\n" for role, content in messages) + "<|assistant|>\n"
