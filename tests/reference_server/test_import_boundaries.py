"""capsim never imports torch (the server and profiler run as subprocesses), and neither do the
server's flag parsing and launcher."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    "statement",
    [
        "import capsim",
        "import capsim.cli.main",
        "import capsim.cli.serve, capsim.cli.profile",
        "import reference_server.config, reference_server.launch, reference_server.batcher",
        "import reference_server.llm.config, reference_server.llm.scheduler, reference_server.llm.block_pool",
        "import capsim.cli.serve_llm",
    ],
)
def test_no_torch_import(statement: str) -> None:
    probe = "import sys; print([m for m in ('torch', 'fastapi', 'uvicorn') if m in sys.modules])"
    code = f"{statement}\n{probe}"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    if statement.startswith("import reference_server"):
        assert "torch" not in out, out
    else:
        assert out.strip() == "[]", out
