"""How many intra-op threads each executor gets."""

from __future__ import annotations

import pytest


def test_default_torch_threads_leave_a_core_for_the_event_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    from reference_server import executor

    monkeypatch.setattr(executor, "_affinity", lambda: set(range(16)))
    assert executor.torch_threads_per_instance(1, None) == 15
    assert executor.torch_threads_per_instance(4, None) == 3
    assert executor.torch_threads_per_instance(4, 2) == 2  # asked for: given
    monkeypatch.setattr(executor, "_affinity", lambda: {0, 1})
    assert executor.torch_threads_per_instance(1, None) == 1
    assert executor.torch_threads_per_instance(3, None) == 1
    monkeypatch.setattr(executor, "_affinity", lambda: {0})
    assert executor.torch_threads_per_instance(1, None) == 1
