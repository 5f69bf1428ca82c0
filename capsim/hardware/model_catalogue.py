"""The LLM model catalogue: decoder-only model shapes from their config.json, with sources.

`models.yaml` (shipped next to this module) holds one entry per model: the shape fields of its
Hugging Face config.json (layers, hidden size, heads, KV heads, head dim, vocabulary, experts) and
the parameter counts its model card publishes. A scenario names a model (`model: {name:
llama-3.1-8b}`; names match loosely, as the hardware catalogue's do), overrides fields of an entry
(`model: {name: llama-3.1-8b, max_context: 8192}`), or describes a model the catalogue lacks inline
(`model: {name: my-model, layers: 24, hidden_size: 2048, ...}`).

What the simulator needs from a shape is here, each rule once:
- `kv_bytes_per_token`: the KV cache one token holds, 2 (K and V) × layers × KV heads × head dim ×
  bytes per element (per GPU under tensor parallelism: KV heads are split, or replicated when there
  are fewer heads than GPUs);
- `weight_bytes`: the bytes of the weights, published parameter count × bytes per element;
- `shape_params`: the parameters the shape implies (total and active per token), counted layer by
  layer as the Llama / Qwen / Mixtral architectures lay them out.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from importlib import resources
from typing import Any, Literal

from pydantic import ConfigDict, Field, ValidationError, model_validator

from capsim.errors import CapsimInputError
from capsim.hardware.catalogue import nearest_names, normalize_name
from capsim.input_files import load_yaml
from capsim.input_model import InputModel

MODELS_FORMAT = "capsim-models/1"
_SHIPPED = "models.yaml"


class ModelShape(InputModel):
    """One decoder-only transformer: the config.json fields the step time and the KV cache need.

    Dense models have `experts: 0`; mixture-of-experts models give `experts`, `experts_per_token`
    and `expert_intermediate_size`, and `params_active` (parameters used per token).
    """

    model_config = ConfigDict(frozen=True)
    name: str = Field(min_length=1)
    description: str = ""
    aliases: list[str] = Field(default_factory=list)
    layers: int = Field(ge=1)
    hidden_size: int = Field(ge=1)
    intermediate_size: int = Field(ge=1, description="dense MLP width (SwiGLU: gate, up and down projections)")
    attention_heads: int = Field(ge=1)
    kv_heads: int = Field(ge=1)
    head_dim: int | None = Field(default=None, ge=1, description="default: hidden_size / attention_heads")
    vocab_size: int = Field(ge=1)
    tied_embeddings: bool = False
    qkv_bias: bool = False
    experts: int = Field(default=0, ge=0, description="routed experts per layer; 0 for a dense model")
    experts_per_token: int = Field(default=0, ge=0)
    expert_intermediate_size: int = Field(default=0, ge=0)
    max_context: int = Field(ge=1, description="max_position_embeddings: vLLM's default max_model_len")
    params_total: float = Field(gt=0, description="published parameter count")
    params_active: float | None = Field(default=None, gt=0, description="published parameters per token (MoE)")
    params_source: str = ""
    source: str = ""
    confidence: Literal["SRC", "MEM", "user"] = "user"
    read_via: str = ""

    @model_validator(mode="after")
    def _consistent(self) -> ModelShape:
        if self.attention_heads % self.kv_heads:
            raise ValueError(
                f"attention_heads ({self.attention_heads}) must be a multiple of kv_heads ({self.kv_heads})"
            )
        if self.experts:
            if not 1 <= self.experts_per_token <= self.experts or self.expert_intermediate_size < 1:
                raise ValueError("a mixture of experts needs 1 <= experts_per_token <= experts and "
                                 "expert_intermediate_size >= 1")  # fmt: skip
        elif self.experts_per_token:
            raise ValueError("experts_per_token needs experts > 0")
        if self.params_active is not None and self.params_active > self.params_total:
            raise ValueError("params_active must not exceed params_total")
        return self

    @property
    def head_size(self) -> int:
        """Per-head width: `head_dim`, else hidden_size / attention_heads (config.json's rule)."""
        return self.head_dim if self.head_dim is not None else self.hidden_size // self.attention_heads

    @property
    def active_params(self) -> float:
        """Published parameters used per token: `params_active`, or all of them for a dense model."""
        return self.params_active if self.params_active is not None else self.params_total

    @property
    def is_moe(self) -> bool:
        """Whether the MLP is a mixture of experts."""
        return self.experts > 0


def kv_bytes_per_token(model: ModelShape, dtype_bytes: float, tp: int = 1) -> float:
    """KV-cache bytes one token holds on one GPU: 2 × layers × KV heads per GPU × head dim × bytes.

    Under tensor parallelism of degree `tp` each GPU holds kv_heads / tp heads, or one replicated head
    when there are fewer KV heads than GPUs (vLLM replicates them; facts: BLIS kv_capacity.go)."""
    heads_per_gpu = max(model.kv_heads / tp, 1.0) if tp > 1 else float(model.kv_heads)
    return 2.0 * model.layers * heads_per_gpu * model.head_size * dtype_bytes


def weight_bytes(model: ModelShape, dtype_bytes: float) -> float:
    """Bytes of all the weights (every expert of a MoE): published parameter count × bytes per element."""
    return model.params_total * dtype_bytes


def embedding_params(model: ModelShape) -> int:
    """Parameters of the token embedding and the LM head (one matrix when they are tied)."""
    return model.vocab_size * model.hidden_size * (1 if model.tied_embeddings else 2)


def _attention_params(model: ModelShape) -> int:
    """q, k, v and output projections of one layer (plus the q, k, v biases where the model has them)."""
    q_width = model.attention_heads * model.head_size
    kv_width = model.kv_heads * model.head_size
    weights = model.hidden_size * (q_width + 2 * kv_width) + q_width * model.hidden_size
    return weights + ((q_width + 2 * kv_width) if model.qkv_bias else 0)


def shape_params(model: ModelShape) -> tuple[float, float]:
    """(total, active per token) parameters the shape implies, counted per layer.

    Per layer: attention projections, the SwiGLU MLP (3 × hidden × width: gate, up, down) — for a MoE
    `experts` of them at `expert_intermediate_size` plus the router (hidden × experts), of which
    `experts_per_token` are active — and two RMSNorm vectors; then the final norm and the embedding
    and LM head matrices. Rotary embeddings have no parameters."""
    h = model.hidden_size
    per_layer_fixed = _attention_params(model) + 2 * h
    if model.is_moe:
        expert = 3 * h * model.expert_intermediate_size
        router = h * model.experts
        total_layer = per_layer_fixed + router + model.experts * expert
        active_layer = per_layer_fixed + router + model.experts_per_token * expert
    else:
        total_layer = active_layer = per_layer_fixed + 3 * h * model.intermediate_size
    outside = embedding_params(model) + h
    return float(model.layers * total_layer + outside), float(model.layers * active_layer + outside)


@functools.cache
def shipped_models() -> dict[str, ModelShape]:
    """The shipped catalogue (`capsim/hardware/models.yaml`), validated, by canonical name."""
    source = f"capsim/hardware/{_SHIPPED}"
    data = load_yaml(resources.files("capsim.hardware").joinpath(_SHIPPED).read_text(encoding="utf-8"), source)
    if not isinstance(data, dict) or data.get("format") != MODELS_FORMAT or not isinstance(data.get("models"), dict):
        raise CapsimInputError(f"expected format: {MODELS_FORMAT} and a 'models' mapping", source=source)
    out: dict[str, ModelShape] = {}
    for name, body in data["models"].items():
        try:
            out[str(name)] = ModelShape.model_validate({**body, "name": str(name)})
        except ValidationError as exc:
            from capsim.input_model import input_error

            raise input_error(exc, body, source, prefix=("models", str(name))) from None
    return out


def _index() -> dict[str, str]:
    """Normalized name or alias → canonical name ('llama-3.1-8b', 'Llama_3.1_8B' are one name)."""
    index: dict[str, str] = {}
    for model in shipped_models().values():
        for alias in model.aliases:
            index[normalize_name(alias)] = model.name
        index[normalize_name(model.name)] = model.name
    return index


def find_model(name: str) -> ModelShape | None:
    """The shipped entry called `name` (case, '-', '_' and spaces ignored; an org prefix such as
    'meta-llama/' is dropped), or None."""
    key = normalize_name(name.rsplit("/", 1)[-1])
    canonical = _index().get(key)
    return None if canonical is None else shipped_models()[canonical]


def suggest_models(name: str, n: int = 3) -> list[str]:
    """Up to `n` catalogue names nearest to `name`."""
    return nearest_names(name.rsplit("/", 1)[-1], _index(), n)


SHAPE_FIELDS: tuple[str, ...] = tuple(f for f in ModelShape.model_fields if f not in {"name", "aliases"})


def resolve_model(name: str, overrides: dict[str, Any] | None = None, field: str = "model",
                  name_field: str | None = None) -> ModelShape:  # fmt: skip
    """The model a scenario's `model:` block describes: the catalogue entry `name` with `overrides`
    applied, or — for a name the catalogue lacks — a model defined entirely by `overrides`.

    Errors are one line naming `field`: an unknown key, a name the catalogue lacks given without its
    shape (with the nearest names; named `name_field`, default `<field>.name`), or a bad value
    (`model.kv_heads: ...`)."""
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(SHAPE_FIELDS))
    if unknown:
        raise CapsimInputError(f"unknown key (expected name or one of: {', '.join(SHAPE_FIELDS)})",
                               field=f"{field}.{unknown[0]}")  # fmt: skip
    base = find_model(name)
    if base is None and "layers" not in overrides:
        hint = suggest_models(name)
        did_you_mean = f" (did you mean: {', '.join(hint)}?)" if hint else ""
        raise CapsimInputError(
            f"unknown model '{name}'{did_you_mean}; `capsim hardware --models` lists them, or describe it "
            f"inline (layers, hidden_size, intermediate_size, attention_heads, kv_heads, vocab_size, "
            f"max_context, params_total)",
            field=name_field or f"{field}.name",
        )
    data = {**(base.model_dump(exclude={"name"}) if base is not None else {"confidence": "user"}), **overrides}
    data["name"] = base.name if base is not None else name
    try:
        return ModelShape.model_validate(data)
    except ValidationError as exc:
        from capsim.input_model import input_error

        raise input_error(exc, data, None, prefix=(field,)) from None


class ModelRef(InputModel):
    """A scenario's `model:` block: a catalogue `name`, plus any shape fields to override or, for a
    model the catalogue lacks, to describe it (see `resolve_model`)."""

    model_config = ConfigDict(extra="allow", frozen=True)
    name: str = Field(min_length=1)

    @model_validator(mode="after")
    def _resolvable(self) -> ModelRef:
        try:
            self.shape()
        except CapsimInputError as exc:
            # pydantic puts the error under `model`; name the field inside it
            inner = (exc.field or "model").removeprefix("model").removeprefix(".")
            raise ValueError(f"{inner}: {exc.detail}" if inner else exc.detail) from None
        return self

    def shape(self) -> ModelShape:
        """The resolved model."""
        return resolve_model(self.name, dict(self.model_extra or {}))


def iter_models() -> Iterator[ModelShape]:
    """The shipped models in file order."""
    return iter(shipped_models().values())
