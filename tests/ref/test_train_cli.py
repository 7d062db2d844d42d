import argparse
import json
from pathlib import Path

import pytest

from stag.commands import train as train_cmd


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="stag")
    train_cmd.add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["train", *argv])


@pytest.mark.parametrize(
    ("argv", "field"),
    [(["--sparsity", "1.5"], "--sparsity"), (["--sparsity", "-0.1"], "--sparsity"), (["--epochs", "-1"], "--epochs"),
     (["--seed", "-3"], "--seed"), (["--trace", "a,b"], "--trace"), (["--trace", "-1"], "--trace"),
     (["--algo", "relu_mask", "--sparsity", "0.5"], "sparsity"),
     (["--compare-all", "--sparsity", "0.5"], "--compare-all")],
)  # fmt: skip
def test_bad_values_exit_2_with_message(argv: list[str], field: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert train_cmd.run(parse(argv)) == 2
    err = capsys.readouterr().err
    assert err.startswith("stag train: error:") and field in err


def test_unknown_algorithm_is_rejected_by_the_parser(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        parse(["--algo", "magic"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--algo" in err and "magic" in err and "swat" in err


def test_trace_beyond_last_iteration(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = parse(["--epochs", "1", "--train-subset", "64", "--trace", "5", "--out", str(tmp_path), "--no-progress"])
    assert train_cmd.run(args) == 2
    assert "trace iteration 5" in capsys.readouterr().err


def test_compare_all_smoke(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = parse(["--compare-all", "--epochs", "1", "--train-subset", "96", "--seed", "3", "--out", str(tmp_path)])
    assert train_cmd.run(args) == 0
    out = capsys.readouterr()
    for algo in ("dense", "relu_mask", "zero_skip", "stochastic_prune", "resprop", "swat"):
        m = json.loads((tmp_path / algo / "metrics.json").read_text())
        assert m["algo"] == algo and m["seed"] == 3 and 0.0 <= m["test_accuracy"] <= 1.0
        assert algo in out.out
        assert (tmp_path / algo / "training_curves.png").stat().st_size > 0
    assert (tmp_path / "comparison.png").is_file()
    assert "epoch 1/1" in out.err  # progress bar


def test_parser_dispatches_to_run() -> None:
    args = parse([])
    assert args.run is train_cmd.run and args.algo == "dense" and args.epochs >= 1
