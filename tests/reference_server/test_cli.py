"""`capsim serve` and `capsim profile`: bad flags are one line on stderr and exit code 2."""

from __future__ import annotations

import pytest

from capsim.cli.main import main


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["serve", "--model", "resnet"], "--model: expected one of mlp, cnn, transformer"),
        (["serve", "--device", "tpu"], "--device"),
        (["serve", "--max-batch-size", "0"], "--max-batch-size"),
        (["serve", "--port", "70000"], "--port"),
        (["serve", "--queue-capacity", "0"], "--queue-capacity"),
        (["serve", "--queue-capacity", "1.5"], "--queue-capacity: expected 'auto' or an integer >= 1"),
        (["serve", "--timeout-ms", "soon"], "--timeout-ms: expected 'auto' or a number >= 0"),
        (["serve", "--timeout-ms", "nan"], "--timeout-ms"),
        (["serve", "--timeout-ms", "inf"], "--timeout-ms"),
        (["serve", "--max-body-bytes", "-1"], "--max-body-bytes"),
        (["serve", "--max-header-bytes", "0"], "--max-header-bytes"),
        (["serve", "--read-timeout-s", "0"], "--read-timeout-s"),
        (["serve", "--max-connections", "0"], "--max-connections"),
        (["serve", "--max-wait-ms", "-1"], "--max-wait-ms"),
        (["serve", "--switch-interval-ms", "-1"], "--switch-interval-ms"),
        (["serve", "--dtype", "float64"], "--dtype: expected one of float32, float16, bfloat16"),
        (["profile", "-o", "x.json", "--dtype", "int8"], "--dtype"),
        (["profile", "-o", "x.json", "--batch-sizes", "1,two"], "--batch-sizes"),
        (["profile", "-o", "x.json", "--batch-sizes", "0,1"], "--batch-sizes"),
        (["profile", "-o", "x.json", "--model", "bert"], "--model"),
        (["profile", "-o", "x.json", "--tolerance", "2"], "--tolerance"),
        (["profile", "-o", "x.json", "--max-windows", "2"], "--max-windows"),
        (["profile"], "--output"),
    ],
)
def test_bad_flags_give_one_line_and_exit_2(argv: list[str], fragment: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert fragment in err and len(err.splitlines()) == 1, err
