"""The bundled models (shapes, seeded weights, batching equivalence) and request validation."""

from __future__ import annotations

import numpy as np
import orjson
import pytest
import torch

from reference_server.batcher import RequestResult
from reference_server.executor import ModelRunner
from reference_server.models import MODELS, load_model
from reference_server.protocol import (
    ProtocolError,
    encode_v2_response,
    model_metadata,
    parse_simple,
    parse_v2_infer,
)

CPU = torch.device("cpu")


@pytest.mark.parametrize("name", sorted(MODELS))
def test_models_are_seeded_and_batching_does_not_change_answers(name: str) -> None:
    spec = MODELS[name]
    runner = ModelRunner(spec, load_model(name, CPU), CPU)
    again = ModelRunner(spec, load_model(name, CPU), CPU)
    x = spec.example_batch(5, seed=1)
    per_request = [x[i : i + 1] for i in range(5)]
    batched = runner.run(per_request)
    assert [o.shape for o in batched] == [(1, *spec.output_shape)] * 5
    alone = [runner.run([r])[0] for r in per_request]
    np.testing.assert_allclose(np.concatenate(batched), np.concatenate(alone), rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(np.concatenate(again.run(per_request)), np.concatenate(batched))
    other_seed = ModelRunner(spec, load_model(name, CPU, seed=1), CPU)
    assert not np.allclose(np.concatenate(other_seed.run(per_request)), np.concatenate(batched))


def v2(spec_name: str, shape: list[int], data: object, datatype: str | None = None, **extra: object) -> bytes:
    spec = MODELS[spec_name]
    tensor = {"name": "input", "shape": shape, "datatype": datatype or spec.input_datatype, "data": data}
    return orjson.dumps({"inputs": [tensor], **extra})


def test_v2_accepts_flat_and_nested_data() -> None:
    spec = MODELS["mlp"]
    flat = parse_v2_infer(v2("mlp", [2, 64], list(range(128)), id="r1"), spec, max_items=8)
    nested = parse_v2_infer(v2("mlp", [2, 64], [list(range(64)), list(range(64, 128))]), spec, max_items=8)
    assert flat.items.shape == (2, 64) and flat.items.dtype == np.float32 and flat.request_id == "r1"
    assert not flat.binary_output
    np.testing.assert_array_equal(flat.items, nested.items)
    ids = parse_v2_infer(v2("transformer", [1, 32], list(range(32))), MODELS["transformer"], 8).items
    assert ids.dtype == np.int64


@pytest.mark.parametrize("name", ["mlp", "transformer"])
def test_v2_binary_tensor_extension_round_trip(name: str) -> None:
    """Triton's binary extension (tritonclient's default): JSON header, then raw little-endian bytes."""
    spec = MODELS[name]
    x = spec.example_batch(3, seed=2)
    tensor = {"name": "input", "shape": list(x.shape), "datatype": spec.input_datatype,
              "parameters": {"binary_data_size": x.nbytes}}  # fmt: skip
    header = orjson.dumps({"inputs": [tensor], "outputs": [{"name": "output", "parameters": {"binary_data": True}}]})
    parsed = parse_v2_infer(header + x.astype(x.dtype.newbyteorder("<")).tobytes(), spec, 8, len(header))
    np.testing.assert_array_equal(parsed.items, x)
    assert parsed.binary_output
    out = np.arange(6, dtype=np.float32).reshape(3, 2)
    result = RequestResult(out, batch_id=1, batch_size=1, queue_s=0.0, compute_s=0.001)
    body, json_bytes = encode_v2_response(spec, result, None, binary=True)
    assert json_bytes is not None
    meta = orjson.loads(body[:json_bytes])
    assert meta["outputs"][0]["parameters"] == {"binary_data_size": 24} and "data" not in meta["outputs"][0]
    np.testing.assert_array_equal(np.frombuffer(body[json_bytes:], "<f4").reshape(3, 2), out)
    with pytest.raises(ProtocolError, match="binary data of"):
        parse_v2_infer(header + b"\0" * 5, spec, 8, len(header))
    with pytest.raises(ProtocolError, match="does not fit"):
        parse_v2_infer(header, spec, 8, len(header) + 10)


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"{not json", "malformed JSON"),
        (b"", "empty request body"),
        (b"[1,2]", "JSON object"),
        (orjson.dumps({"inputs": []}), "exactly one tensor"),
        (v2("mlp", [1, 63], [0.0] * 63), "shape"),
        (v2("mlp", [1, 64], [0.0] * 63), "63 values"),
        (v2("mlp", [1, 64], [0.0] * 64, datatype="INT64"), "datatype"),
        (v2("mlp", [1, 64], ["a"] * 64), "expected numbers"),
        (v2("mlp", [1, 64], [[0.0] * 32, [0.0] * 31]), "expected numbers"),
        (v2("mlp", [1, 64], [None] * 64), "NaN"),
        (v2("mlp", [9, 64], [0.0] * 576), "exceed the max batch size"),
        (v2("mlp", [0, 64], []), "n >= 1"),
        (orjson.dumps({"inputs": [{"name": "x", "shape": [1, 64], "datatype": "FP32", "data": [0] * 64}]}), "unknown"),
        (orjson.dumps({"inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP32"}]}), "data is missing"),
    ],
)
def test_v2_rejects_bad_requests_with_400_and_a_reason(body: bytes, fragment: str) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_v2_infer(body, MODELS["mlp"], max_items=8)
    assert info.value.status == 400 and fragment in info.value.message


@pytest.mark.parametrize(
    ("data", "fragment"),
    [([8192] * 32, "token ids must be in"), ([-1] * 32, "token ids must be in"), ([1.5] * 32, "integers")],
)
def test_token_ids_are_checked(data: list[float], fragment: str) -> None:
    with pytest.raises(ProtocolError, match=fragment):
        parse_v2_infer(v2("transformer", [1, 32], data), MODELS["transformer"], max_items=8)


def test_simple_endpoint_takes_one_nested_item() -> None:
    spec = MODELS["cnn"]
    item = spec.example_batch(1)[0]
    assert parse_simple(orjson.dumps({"inputs": item.tolist()}), spec).shape == (1, 3, 32, 32)
    with pytest.raises(ProtocolError, match="expected"):
        parse_simple(orjson.dumps({"input": item.tolist()}), spec)
    with pytest.raises(ProtocolError):
        parse_simple(orjson.dumps({"inputs": item[:2].tolist()}), spec)


def test_v2_response_and_metadata_follow_the_protocol() -> None:
    spec = MODELS["cnn"]
    result = RequestResult(np.ones((2, 10), np.float32), batch_id=3, batch_size=2, queue_s=0.001, compute_s=0.002)
    encoded, json_bytes = encode_v2_response(spec, result, "abc")
    assert json_bytes is None
    body = orjson.loads(encoded)
    assert body["model_name"] == "cnn" and body["id"] == "abc"
    assert body["outputs"] == [{"name": "output", "shape": [2, 10], "datatype": "FP32", "data": [1.0] * 20}]
    meta = model_metadata(spec)
    assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 3, 32, 32]}]
    assert meta["outputs"][0]["shape"] == [-1, 10] and meta["name"] == "cnn"
