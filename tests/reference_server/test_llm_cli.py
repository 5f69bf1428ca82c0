"""`capsim serve --model llm-*`: bad LLM flags are one line and exit 2; the command line it builds is
the one the LLM server parses; capsim's list of LLM presets is the server's."""

from __future__ import annotations

from pathlib import Path

import pytest

from capsim.cli.main import main
from capsim.cli.serve_llm import LLM_MODEL_NAMES, llm_server_argv
from reference_server.__main__ import llm_model_requested
from reference_server.llm.config import parse_llm_config
from reference_server.llm.presets import PRESETS


def test_capsims_llm_names_are_the_servers_presets() -> None:
    assert tuple(PRESETS) == LLM_MODEL_NAMES


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["serve", "--model", "llm-huge"], "--model: expected one of mlp, cnn, transformer, llm-tiny"),
        (["serve", "--model", "llm-tiny", "--max-num-seqs", "0"], "--max-num-seqs"),
        (["serve", "--model", "llm-tiny", "--block-size", "0"], "--block-size"),
        (
            ["serve", "--model", "llm-tiny", "--num-gpu-blocks", "many"],
            "--num-gpu-blocks: expected 'auto' or an integer",
        ),
        (["serve", "--model", "llm-tiny", "--max-model-len", "0"], "--max-model-len"),
        (["serve", "--model", "llm-tiny", "--max-num-batched-tokens", "8"], "must be >= --max-num-seqs 256"),
        (
            ["serve", "--model", "llm-tiny", "--dtype", "int4"],
            "--dtype: expected one of float32, float16, bfloat16, auto",
        ),
    ],
)
def test_bad_llm_flags_give_one_line_and_exit_2(argv: list[str], fragment: str,
                                                capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert fragment in err and len(err.splitlines()) == 1, err


def test_the_built_command_line_parses_to_the_same_settings(tmp_path: Path) -> None:
    argv = llm_server_argv(
        model="llm-small", host="127.0.0.1", port=0, device="cpu", dtype="auto", max_num_seqs=4,
        max_num_batched_tokens=128, enable_chunked_prefill=False, block_size=8, num_gpu_blocks="100",
        enable_prefix_caching=False, max_model_len="1024", step_log=tmp_path / "s.jsonl", torch_threads=1,
        max_body_bytes="auto", max_header_bytes=4096, read_timeout_s=2.5, max_connections=10, debug_endpoints=True,
    )  # fmt: skip
    assert argv[1:3] == ["-m", "reference_server"] and llm_model_requested(argv[3:])
    config = parse_llm_config(argv[3:])
    shape = (config.model, config.max_num_seqs, config.max_num_batched_tokens, config.block_size)
    assert shape == ("llm-small", 4, 128, 8)
    assert (config.enable_chunked_prefill, config.enable_prefix_caching, config.num_gpu_blocks) == (False, False, 100)
    assert (config.max_model_len, config.dtype, config.step_log, config.debug_endpoints) == (
        1024, None, tmp_path / "s.jsonl", True)  # fmt: skip
    assert config.body_limit_bytes == 64 * 1024 + 8 * 1024


def test_the_server_refuses_a_context_beyond_the_preset(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        parse_llm_config(["--model", "llm-tiny", "--max-model-len", "4096"])
    assert exc.value.code == 2 and "exceeds llm-tiny's context 2048" in capsys.readouterr().err


def test_llm_flags_are_recognized_in_either_form() -> None:
    assert llm_model_requested(["--port", "0", "--model", "llm-tiny"])
    assert llm_model_requested(["--model=llm-1b"])
    assert not llm_model_requested(["--model", "cnn", "--step-log", "llm-x"])


def test_beyond_loopback_the_llm_server_warns(capsys: pytest.CaptureFixture[str]) -> None:
    from reference_server.__main__ import warn_if_exposed

    warn_if_exposed(parse_llm_config(["--host", "127.0.0.1"]))
    assert capsys.readouterr().err == ""
    warn_if_exposed(parse_llm_config(["--host", "0.0.0.0"]))
    err = capsys.readouterr().err
    assert "beyond loopback" in err and "unauthenticated" in err and len(err.splitlines()) == 1
