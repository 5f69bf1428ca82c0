"""`python -m reference_server --model llm-tiny [flags]`: the reference LLM server's entry point
(`reference_server/__main__.py` sends `--model llm-*` here).

Prints `reference_server: listening on http://HOST:PORT` once the socket is bound and
`reference_server: ready` once the model is loaded and warmed up, like the other server; logs go
to stderr. Binding beyond loopback prints the same warning.
"""

from __future__ import annotations

import logging
import sys


def main(argv: list[str] | None = None) -> None:
    """Parse the LLM server's flags and serve until interrupted."""
    from reference_server.__main__ import serve_app
    from reference_server.llm.config import parse_llm_config

    config = parse_llm_config(argv)
    logging.basicConfig(level=config.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")  # fmt: skip
    if config.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            print("error: --device cuda: torch.cuda.is_available() is False on this machine", file=sys.stderr)
            raise SystemExit(2)
    from reference_server.llm.app import create_llm_app

    serve_app(create_llm_app(config), config)
