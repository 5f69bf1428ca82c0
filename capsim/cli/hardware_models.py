"""`capsim hardware --models [NAME] [--json]`: the LLM model catalogue (capsim/hardware/models.yaml),
one row per model, or every field of one model with its sources. Called by `capsim hardware`."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from capsim.hardware.model_catalogue import ModelShape

_PIPE_WIDTH = 180  # rich assumes 80 columns when stdout is not a terminal


def _billions(value: float) -> str:
    return f"{value / 1e9:.3g}B"


def models_table(models: list[ModelShape]) -> Table:
    """The catalogue: shape, parameters and KV bytes per token at BF16, one row per model."""
    from capsim.hardware.model_catalogue import kv_bytes_per_token

    table = Table(title="capsim model catalogue (capsim/hardware/models.yaml)", title_justify="left")
    for header in ("name", "layers", "hidden", "heads q/kv", "head dim", "MLP", "experts", "params total/active",
                   "context", "KV B/token", "conf."):  # fmt: skip
        table.add_column(header, justify="left" if header in ("name", "conf.") else "right", no_wrap=True)
    for m in models:
        experts = f"{m.experts_per_token}/{m.experts}" if m.is_moe else "—"
        params = _billions(m.params_total) + (f" / {_billions(m.active_params)}" if m.is_moe else "")
        table.add_row(m.name, str(m.layers), str(m.hidden_size), f"{m.attention_heads}/{m.kv_heads}", str(m.head_size),
                      str(m.expert_intermediate_size if m.is_moe else m.intermediate_size), experts, params,
                      f"{m.max_context:,}", f"{kv_bytes_per_token(m, 2):,.0f}", m.confidence)  # fmt: skip
    table.caption = ("Shapes from each model's config.json on the Hugging Face hub (`capsim hardware --models NAME` "
                     "shows the URL);\nparameters as the model cards publish them; KV bytes per token at BF16. "
                     "conf.: SRC read from a copy of config.json, MEM not yet confirmed.")  # fmt: skip
    return table


def model_table(model: ModelShape) -> Table:
    """Every field of one model."""
    from capsim.hardware.model_catalogue import kv_bytes_per_token, shape_params

    table = Table(title=f"{model.name}{': ' + model.description if model.description else ''}", title_justify="left")
    table.add_column("field")
    table.add_column("value")
    for field, value in model.model_dump().items():
        table.add_row(field, str(value))
    total, active = shape_params(model)
    table.add_row("counted from the shape", f"{_billions(total)} total, {_billions(active)} active")
    table.add_row("KV bytes per token (bf16)", f"{kv_bytes_per_token(model, 2):,.0f}")
    return table


def show_models(name: str | None, as_json: bool) -> None:
    """Print the catalogue, or one model (a name the catalogue lacks is a one-line error with suggestions)."""
    from capsim.hardware.model_catalogue import iter_models, resolve_model

    console = Console(width=None if sys.stdout.isatty() else _PIPE_WIDTH)
    if name is not None:
        model = resolve_model(name, name_field="NAME")
        if as_json:
            print(json.dumps(model.model_dump(mode="json"), indent=2))
        else:
            console.print(model_table(model))
        return
    models = list(iter_models())
    if as_json:
        print(json.dumps({"models": [m.model_dump(mode="json") for m in models]}, indent=2))
        return
    console.print(models_table(models))
