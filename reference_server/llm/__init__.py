"""capsim's reference LLM server: a Llama-shaped decoder with seeded weights, a paged KV cache and the
simulator's (vLLM V1's) continuous-batching rules, behind an OpenAI-compatible API with vLLM's
Prometheus names and a per-step log. `python -m reference_server --model llm-tiny`; see
docs/reference_server.md, "LLM server"."""
