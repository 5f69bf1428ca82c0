"""`import capsim` (and the CLI, and the load-test runner) never imports locust or gevent: importing
Locust monkey-patches the standard library, so it must stay inside its own processes."""

from __future__ import annotations

import subprocess
import sys

CHECK = """
import sys
import capsim
import capsim.cli.main
import capsim.loadtest
import capsim.loadtest.runner
import capsim.cli.loadtest
bad = sorted(m for m in sys.modules if m.split(".")[0] in ("locust", "gevent", "geventhttpclient", "zmq"))
print(",".join(bad))
"""


def test_capsim_imports_neither_locust_nor_gevent() -> None:
    done = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ""


def test_only_the_locust_modules_import_locust() -> None:
    from pathlib import Path

    import capsim

    root = Path(capsim.__file__).parent
    allowed = {"locust_plugin.py", "locust_senders.py", "locust_stream_sender.py", "locustfile_openloop.py",
               "locustfile_closedloop.py"}
    for path in root.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        imports = [line for line in text.splitlines()
                   if line.strip().startswith(("import locust", "from locust", "import gevent", "from gevent"))]
        if imports:
            assert path.name in allowed and path.parent.name == "loadtest", (path, imports)
