"""The base of every schema that reads people's input, and its errors as one line.

Every pydantic model in capsim derives from `InputModel`, so that one configuration holds for
scenarios and each spec they compose, hardware catalogues, profiles and load-test settings:

- `extra="forbid"`: an unknown key (a typo) is an error, never a silently ignored setting;
- `strict=True`: types are not coerced: `"3"`, `true` and `3.0` are not integers, `"1.5"` is not a
  float (an integer is a float, though: `rate_rps: 300`). Values from the command line (`--set`)
  are read as YAML first, so `--set serving.replicas=4` is the integer 4 (capsim.input_files);
- `allow_inf_nan=False`: every float field refuses ±inf and NaN.

`input_error` turns a `ValidationError` into a `CapsimInputError`: one line, `file: dotted.field:
what was expected (got X)`, the first error plus "(and N more)".
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic_core import PydanticCustomError

from capsim.errors import CapsimInputError
from capsim.input_files import dotted_path


class InputModel(BaseModel):
    """Base class of capsim's schemas: unknown keys, coerced types and non-finite floats are errors.
    Subclasses add their own settings (`frozen=True`) with `model_config = ConfigDict(...)`, which
    pydantic merges with these."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


def user_path(data: Any, loc: tuple[int | str, ...]) -> tuple[str | int, ...]:
    """An error location as the user wrote it: pydantic's discriminated-union tags (the `kind:` or
    `mode:` it inserts) and its `function-after[...]` steps are left out."""
    parts: list[str | int] = []
    current = data
    tag_skipped = False  # a tag comes once per level: `arrival.steps.steps` is the field `steps`
    for i, part in enumerate(loc):
        last = i == len(loc) - 1
        is_tag = not tag_skipped and isinstance(current, dict) and part in (current.get("kind"), current.get("mode"))
        if is_tag:
            tag_skipped = True
            continue  # the discriminated-union tag pydantic inserts, not a key the user wrote
        tag_skipped = False
        if isinstance(current, dict) and part in current:
            current = current[part]
            parts.append(str(part))
        elif isinstance(current, list) and isinstance(part, int) and part < len(current):
            current = current[part]
            parts.append(part)
        elif isinstance(part, str) and ("[" in part or part.startswith(("function-", "json-or-python"))):
            continue  # a validator or union step such as 'function-after[...]' or 'list[float]'
        elif last or not isinstance(current, dict):
            parts.append(part)
            current = None
        # otherwise it is a discriminated-union tag pydantic inserted: skip it
    return tuple(parts)


def _shown(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, (bool, int, float, str)):
        text = repr(value)
        return text if len(text) <= 60 else text[:57] + "..."
    return type(value).__name__


def describe_error(err: Any, fields_doc: str | None = None) -> str:
    """What was expected, in words, with what was given: `(got 'x')` (scalars; for a wrong type,
    also 'a mapping' or 'a list'). `fields_doc` is the page that lists the fields, for unknown keys."""
    kind = str(err["type"])
    value = err.get("input")
    if kind == "extra_forbidden":
        return f"unknown key (check the spelling; {fields_doc} lists the fields)" if fields_doc else "unknown key"
    if kind == "missing":
        return "required field is missing"
    if kind == "int_type" and isinstance(value, float) and value.is_integer():
        return f"expected an integer: write {int(value)}, not a float (got {value!r})"
    if kind == "finite_number":
        return f"expected a finite number (got {value!r})"
    ctx = err.get("ctx") or {}
    if kind == "union_tag_invalid":
        return f"expected one of {ctx.get('expected_tags')} (got {ctx.get('tag')!r})"
    if kind == "union_tag_not_found":
        return "required field is missing"
    message = str(err["msg"]).removeprefix("Value error, ")
    scalar = isinstance(value, (bool, int, float, str))
    if (scalar or kind.endswith("_type")) and not message.endswith(repr(value)):
        message += f" (got {_shown(value)})"
    return message


def item_error(index: int, message: str) -> PydanticCustomError:
    """An error about item `index` of the list a field validator checks: `input_error` names it
    `field[index]` (e.g. `points[3].quantiles_ms[5]`), not just the list."""
    return PydanticCustomError("item_value", message, {"item": index})


def input_error(
    exc: ValidationError,
    data: Any,
    source: str | None,
    prefix: tuple[str | int, ...] = (),
    fields_doc: str | None = None,
) -> CapsimInputError:
    """The first error of `exc` as one line naming `source` and the field (under `prefix`), with
    the count of the others; `fields_doc` is named for an unknown key."""
    errors = exc.errors()
    err = errors[0]
    message = describe_error(err, fields_doc)
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more)"
    ctx = err.get("ctx") or {}
    below: tuple[str | int, ...] = ()  # a part of the field that pydantic's location leaves out
    if err["type"] == "item_value" and isinstance(ctx.get("item"), int):
        below = (ctx["item"],)
    elif err["type"] in ("union_tag_invalid", "union_tag_not_found"):  # the tag is what is wrong: `service.kind`
        below = (str(ctx.get("discriminator", "")).strip("'"),)
    field = dotted_path((*prefix, *user_path(data, tuple(err["loc"])), *below))
    return CapsimInputError(message, source=source, field=field or None)
