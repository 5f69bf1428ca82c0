"""The bundled models: defined in code, weights drawn from a fixed seed, nothing downloaded.

Three shapes of batch-size curve, so that calibration sees more than one kind of model:

- ``mlp``: a tabular scorer (64 features → 1 score). Tiny: batch latency is almost flat, dominated
  by per-call framework overhead.
- ``cnn``: a small image classifier (3×32×32 → 10 logits) in the VGG style: a light convolutional
  feature extractor and a wide fully connected head. At batch 1 the head is a matrix-vector product
  bound by memory bandwidth (its weights are read once per call), so batching amortises the weight
  traffic: latency grows far more slowly than the batch.
- ``transformer``: a small text encoder (32 token ids → a 128-d embedding): attention and MLP
  blocks whose cost grows almost linearly with the batch once past a few items. Its requests may
  be shorter (1–32 tokens: the size knob, `capsim profile --sizes`); a batch of mixed lengths is
  padded to its longest, as servers batch tensors (`ModelRunner.run`).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

with warnings.catch_warnings():
    # torch.utils.mkldnn defines its modules with torch.jit.script_method, deprecated in torch 2.13
    # (the conversion itself is supported); keep the warning out of every import.
    warnings.simplefilter("ignore", DeprecationWarning)
    from torch.utils.mkldnn import to_mkldnn

DEFAULT_SEED = 20261122

# Weight and activation precision (`--dtype`); inputs that are floats are cast to it on the device.
DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}

TRANSFORMER_VOCAB = 8192
TRANSFORMER_SEQ_LEN = 32
TRANSFORMER_DIM = 128


@dataclass(frozen=True)
class ModelSpec:
    """What the protocol layer needs to know about a model, without touching its weights."""

    name: str
    description: str
    input_shape: tuple[int, ...]  # one item, without the batch dimension
    input_datatype: str  # KServe v2 datatype: "FP32" or "INT64"
    output_shape: tuple[int, ...]
    output_datatype: str
    build: Callable[[], nn.Module]
    # Largest valid value for integer inputs (token ids), exclusive; None for float inputs.
    input_upper_bound: int | None = None
    # On the CPU, run with oneDNN's blocked weight layout (see `OneDnnModule`).
    onednn_on_cpu: bool = False
    # The request-size knob (capsim's workload.size): the unit and largest size of the input's
    # variable first axis (the transformer's sequence length in tokens); None: fixed-size inputs.
    size_unit: str | None = None
    max_size: int | None = None

    @property
    def numpy_input_dtype(self) -> type[np.generic]:
        """The numpy dtype that request data is converted to."""
        return np.float32 if self.input_datatype == "FP32" else np.int64

    def example_batch(self, batch_size: int, seed: int = 0, size: int | None = None) -> np.ndarray:
        """A random but valid input batch, for warm-up, profiling and tests; `size` sets the
        variable axis of a model with a size knob (every item that size)."""
        rng = np.random.default_rng(seed)
        shape = (batch_size, *self.input_shape)
        if size is not None:
            if self.max_size is None or not 1 <= size <= self.max_size:
                raise ValueError(f"model {self.name} takes request sizes 1..{self.max_size} {self.size_unit}, "
                                 f"not {size}")  # fmt: skip
            shape = (batch_size, size, *self.input_shape[1:])
        if self.input_upper_bound is not None:
            return rng.integers(0, self.input_upper_bound, size=shape, dtype=np.int64)
        return rng.standard_normal(shape, dtype=np.float32)


class TabularMLP(nn.Module):
    """Feature vector → probability: three linear layers."""

    def __init__(self, n_features: int = 64, hidden: int = 256) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(n_features, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.net(x))


class SmallCNN(nn.Module):
    """3×32×32 image → 10 logits: three conv stages, then a wide classifier head (VGG style)."""

    def __init__(self, n_classes: int = 10, head_width: int = 4096) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(64 * 4 * 4, head_width),
            nn.ReLU(),
            nn.Linear(head_width, head_width),
            nn.ReLU(),
            nn.Linear(head_width, n_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class TextEncoder(nn.Module):
    """Token ids → a sentence embedding: two pre-norm transformer encoder layers, mean pooled."""

    def __init__(
        self,
        vocab: int = TRANSFORMER_VOCAB,
        seq_len: int = TRANSFORMER_SEQ_LEN,
        dim: int = TRANSFORMER_DIM,
        layers: int = 2,
        heads: int = 4,
    ) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.position = nn.Parameter(torch.randn(seq_len, dim) * 0.02)
        layer = nn.TransformerEncoderLayer(dim, heads, 4 * dim, dropout=0.0, batch_first=True, norm_first=True)
        # Nested tensors only help with padding masks, which this model does not use.
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        # Shorter sequences (the size knob) take the first positions; 32 tokens take them all.
        hidden = self.encoder(self.embed(ids) + self.position[: ids.shape[1]])
        return self.norm(hidden.mean(dim=1))


MODELS: dict[str, ModelSpec] = {
    "mlp": ModelSpec(
        name="mlp",
        description="tabular scorer: 64 features -> probability (3-layer MLP)",
        input_shape=(64,),
        input_datatype="FP32",
        output_shape=(1,),
        output_datatype="FP32",
        build=TabularMLP,
    ),
    "cnn": ModelSpec(
        name="cnn",
        description="image classifier: 3x32x32 -> 10 logits (3 conv stages + 2x4096 FC head)",
        input_shape=(3, 32, 32),
        input_datatype="FP32",
        output_shape=(10,),
        output_datatype="FP32",
        build=SmallCNN,
        onednn_on_cpu=True,
    ),
    "transformer": ModelSpec(
        name="transformer",
        description="text encoder: 32 token ids -> 128-d embedding (2 transformer layers)",
        input_shape=(TRANSFORMER_SEQ_LEN,),
        input_datatype="INT64",
        output_shape=(TRANSFORMER_DIM,),
        output_datatype="FP32",
        build=TextEncoder,
        input_upper_bound=TRANSFORMER_VOCAB,
        size_unit="tokens",
        max_size=TRANSFORMER_SEQ_LEN,
    ),
}


class OneDnnModule(nn.Module):
    """A CPU model whose convolution and linear weights were converted once to oneDNN's blocked
    layout (`torch.utils.mkldnn.to_mkldnn`); inputs and outputs stay ordinary dense tensors.

    Why: in eager mode a linear layer called with 2–16 rows goes through a GEMM that repacks the
    whole weight matrix on every call. For the CNN's 84 MB head that made a batch of 2 cost twice a
    batch of 1 and a batch of 8 almost three times (measured, one thread: 5.5, 11.4, 14.9 ms), so
    batching at moderate load bought nothing. Prepacked weights: 4.9, 7.2, 10.0 ms; batch 32 went
    from 34 to 23 ms. Outputs agree with the eager model to ~1e-8.
    """

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x.to_mkldnn()).to_dense()


def parameter_count(model: nn.Module) -> int:
    """Number of weights (counted before any layout conversion)."""
    return int(getattr(model, "parameter_count", sum(p.numel() for p in model.parameters())))


def load_model(name: str, device: torch.device, seed: int = DEFAULT_SEED, dtype: str = "float32") -> nn.Module:
    """Build model `name` with weights drawn from `seed` (the same weights on every machine), in
    eval mode on `device`, its weights cast to `dtype` (a `DTYPES` name; drawn in float32 first, so
    every precision serves the same function). The global RNG is left as it was."""
    spec = MODELS[name]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = spec.build()
    model = model.eval().to(device=device, dtype=DTYPES[dtype])
    count = sum(p.numel() for p in model.parameters())
    # oneDNN's prepacked layout is a float32 path; other precisions run eager.
    onednn = device.type == "cpu" and spec.onednn_on_cpu and dtype == "float32"
    if onednn and torch.backends.mkldnn.is_available():
        model = OneDnnModule(to_mkldnn(model)).eval()
    model.parameter_count = count  # type: ignore[assignment]
    if device.type == "cuda":
        # The copies and casts above were queued on the default stream, but executors run on their
        # own streams, which do not wait for it: finish them before any executor reads a weight.
        torch.cuda.synchronize(device)
    return model


def resolve_device(requested: str) -> torch.device:
    """`auto` → CUDA when available, else CPU. Asking for CUDA without it is an error."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was requested but torch.cuda.is_available() is False")
    return torch.device(requested)
