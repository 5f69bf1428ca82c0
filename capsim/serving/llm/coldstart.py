"""How long a new LLM engine replica takes to serve: the real-time fleet's node provisioning and
image pull (capsim.serving.coldstart.ColdStart), then loading the weights and warming the engine up.

Model load is derived from the model unless given: the bytes of every weight (parameters × bytes
per element at the service's precision; a tensor-parallel replica reads all of its shards from the
same node's storage) over the storage bandwidth, plus vLLM's engine start-up (torch.compile, CUDA
graph capture, KV-cache profiling and warm-up). Defaults and sources (docs/model.md "LLM cold start"):

- storage bandwidth 2 GB/s: the rule "weights_GB / (1–5 GB/s)" for loading to the GPU; ServerlessLLM
  (Fu et al., OSDI 2024, arXiv:2401.14351) loads 130 GB at about 5 GB/s from fast local storage, and
  standard loaders take 84 s for LLaMA-2-70B (about 1.6 GB/s);
- engine warm-up 34.1 s: vLLM issue #20264 (a 3.4 GiB model with a reused compile cache: Dynamo
  7.5 s, CUDA graphs 17 s, engine init 34.1 s); PR #11005 measured 14.2 s of engine init for
  Meta-Llama-3-8B without compilation, vllm#19824 about 130 s of compilation and graphs for a 70B
  model at TP 8.

Llama-3.1-8B in BF16 (16.06 GB) thus loads in 8.0 s + 34.1 s = 42.1 s after its node and image.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field

from capsim.distributions import DurationSpec, FixedDuration
from capsim.errors import CapsimInputError
from capsim.serving.coldstart import ColdStart

if TYPE_CHECKING:
    from capsim.hardware.model_catalogue import ModelShape

DEFAULT_STORAGE_GB_PER_S = 2.0
DEFAULT_ENGINE_WARMUP_S = 34.1


class LlmColdStart(ColdStart):
    """`serving.cold_start` of an LLM fleet: ColdStart's provisioning, image pull and warm pool;
    `model_load_s` left out is derived from the weights (`weights_load_s`)."""

    model_load_s: DurationSpec | None = Field(  # type: ignore[assignment]  # optional here: derived when left out
        default=None, description="weights + engine warm-up; left out: weight bytes / storage + engine_warmup_s"
    )
    storage_gb_per_s: float = Field(
        default=DEFAULT_STORAGE_GB_PER_S, gt=0, le=1000, description="read bandwidth of the weights (1e9 bytes/s)"
    )
    engine_warmup_s: float = Field(
        default=DEFAULT_ENGINE_WARMUP_S, ge=0, description="vLLM start-up after the weights: compile, graphs, profiling"
    )

    def weights_load_s(self, weight_bytes: float) -> float:
        """Seconds from weights on storage to an engine serving: weight_bytes / bandwidth + warm-up."""
        return weight_bytes / (self.storage_gb_per_s * 1e9) + self.engine_warmup_s

    def resolved(self, model: ModelShape | None, precision: str, *, starts_replicas: bool = True) -> ColdStart:
        """The plain ColdStart the pool samples: `model_load_s` as given, else derived from `model`'s
        weights at `precision` (`weights_load_s`). A fleet that never starts a replica during the run
        (`starts_replicas` false: fixed size, it starts ready) never samples it, so it needs no model."""
        load = self.model_load_s
        if load is None and not starts_replicas and model is None:
            load = FixedDuration(value_s=0.0)
        if load is None:
            if model is None:
                raise CapsimInputError("the model load time is derived from the model's weights: add model: "
                                       "{name: ...} or give model_load_s",
                                       field="serving.cold_start.model_load_s")  # fmt: skip
            from capsim.hardware.model_catalogue import weight_bytes
            from capsim.hardware.spec import BYTES_PER_ELEMENT

            load = FixedDuration(value_s=self.weights_load_s(weight_bytes(model, float(BYTES_PER_ELEMENT[precision]))))
        return ColdStart(provisioning_s=self.provisioning_s, image_pull_s=self.image_pull_s, model_load_s=load,
                         warm_pool=self.warm_pool)  # fmt: skip
