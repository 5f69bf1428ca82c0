"""capsim's bundled reference inference server.

`python -m reference_server --model cnn --max-batch-size 32 --max-wait-ms 2` serves a bundled
PyTorch model over the KServe v2 HTTP protocol behind a Triton-style dynamic batcher, with
Prometheus metrics, NVML telemetry and a per-batch log. `python -m reference_server.profile`
measures a model's batch latency and writes a capsim profile. See docs/reference_server.md.
"""

import os

__version__ = "0.1.0"

# OpenMP's default "active" wait makes idle intra-op workers spin, then sleep deeply: on a small or
# shared machine the spinning steals the core the event loop needs, and after an idle gap the first
# parallel batch waited ~20 ms to wake them (measured on a 2-vCPU VM: MLP batch 8 went from 0.08 ms
# to 20 ms after 1 s idle). Passive waiting costs microseconds per batch and removes both. It must be
# set before torch loads OpenMP; an explicit setting in the environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
