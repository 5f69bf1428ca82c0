"""capsim's bundled reference inference server.

`python -m reference_server --model cnn --max-batch-size 32 --max-wait-ms 2` serves a bundled
PyTorch model over the KServe v2 HTTP protocol behind a Triton-style dynamic batcher, with
Prometheus metrics, NVML telemetry and a per-batch log. `python -m reference_server.profile`
measures a model's batch latency and writes a capsim profile. See docs/reference_server.md.
"""

__version__ = "0.1.0"
