"""Multi-turn sessions: conversations whose every prompt carries the conversation so far.

`workload.session` turns each arrival into a session (docs/model.md "Multi-turn sessions"):

- the arrival is the session's first turn; the session has `turns` turns (a token-count
  distribution: fixed, lognormal, empirical);
- turn k (k >= 1) arrives `think_time_s` (a duration distribution) after turn k − 1 completed —
  after its last output token, so a slow reply delays the next question (a closed loop per session);
- turn k's prompt is everything the conversation holds so far plus the turn's new input:
  prompt_k = Σ_{j<k} (new_input_j + output_j) + new_input_k, where new_input and output are drawn
  from `workload.tokens.input` / `.output`. The earlier part is the same token sequence as the
  previous turn's prompt and reply, so an engine with prefix caching can skip it;
- a turn whose prompt exceeds the model's context is rejected like any over-long prompt, and the
  session ends there.

`sample_sessions` draws the per-session arrays for the LLM engine, which does not inject follow-up
turns yet (it refuses `workload.session`).
Streams: "session.turns", "session.think", and the token streams of capsim.workload.tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from pydantic import ConfigDict, Field

from capsim.distributions import DurationSpec, FixedDuration
from capsim.input_model import InputModel
from capsim.workload.tokens import (
    EmpiricalTokens,
    FixedTokens,
    LognormalTokens,
    TokensSpec,
    lognormal_counts,
    sample_token_counts,
)

if TYPE_CHECKING:
    from capsim.rng import RandomStreams

TURNS_STREAM = "session.turns"
THINK_STREAM = "session.think"


class SessionSpec(InputModel):
    """`workload.session`: turns per session and the user's think time between a reply and the next
    question (module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    turns: FixedTokens | LognormalTokens | EmpiricalTokens = Field(discriminator="kind")
    think_time_s: DurationSpec = Field(default_factory=lambda: FixedDuration(value_s=0.0))


@dataclass(frozen=True)
class SessionDraws:
    """Per-session draws, flat over turns: session s owns turns `first_turn[s]` to
    `first_turn[s + 1] − 1`, in order.

    `new_input_tokens[t]`: the tokens turn t adds to the conversation; `output_tokens[t]`: its reply;
    `think_s[t]`: the wait between the previous turn's completion and turn t (0 for a first turn);
    `prompt_tokens[t]`: the prompt turn t sends (the conversation so far plus its new input)."""

    first_turn: np.ndarray  # int64[sessions + 1]
    new_input_tokens: np.ndarray  # int64[turns]
    output_tokens: np.ndarray  # int64[turns]
    think_s: np.ndarray  # float64[turns]
    prompt_tokens: np.ndarray  # int64[turns]

    @property
    def turns(self) -> np.ndarray:
        """Turns per session."""
        return np.diff(self.first_turn)


def conversation_prompts(first_turn: np.ndarray, new_input: np.ndarray, output: np.ndarray) -> np.ndarray:
    """prompt_k = Σ_{j<k} (new_input_j + output_j) + new_input_k within each session (flat arrays)."""
    held = np.cumsum(new_input + output) - output  # conversation through turn t's new input, globally
    session_of_turn = np.repeat(np.arange(first_turn.size - 1), np.diff(first_turn))
    start = first_turn[:-1][session_of_turn]
    before_session = np.where(start > 0, np.cumsum(new_input + output)[start - 1], 0)
    return (held - before_session).astype(np.int64)


def sample_sessions(spec: SessionSpec, tokens: TokensSpec, sessions: int, streams: RandomStreams) -> SessionDraws:
    """Draws for `sessions` sessions (see `SessionDraws`). Token counts come from `tokens` in flat
    turn order, from the token streams; `kind: trace` token counts are refused (a trace's rows are
    single requests, not conversations)."""
    from capsim.errors import CapsimInputError

    if tokens.needs_trace():
        raise CapsimInputError("a trace's token columns are single requests, not conversations: use fixed, "
                               "lognormal or empirical tokens with sessions", field="workload.session")  # fmt: skip
    turn_rng = streams.stream(TURNS_STREAM)
    if isinstance(spec.turns, FixedTokens):
        turns = np.full(sessions, spec.turns.value, dtype=np.int64)
    elif isinstance(spec.turns, LognormalTokens):
        turns = lognormal_counts(spec.turns, sessions, turn_rng)
    else:
        values = spec.turns.values("workload.session.turns")
        turns = values[turn_rng.integers(0, values.size, size=sessions)]
    first_turn = np.concatenate([[0], np.cumsum(turns)]).astype(np.int64)
    total = int(first_turn[-1])
    new_input, output = sample_token_counts(tokens, total, streams)
    think_rng = streams.stream(THINK_STREAM)
    think = spec.think_time_s.sample_array_s(think_rng, total)
    think[first_turn[:-1]] = 0.0
    return SessionDraws(first_turn, new_input, output, think, conversation_prompts(first_turn, new_input, output))
