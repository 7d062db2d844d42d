"""``stag sweep`` and ``stag regress`` on a real two-node Ray cluster on this machine.

A head node and a second node, each its own ``ray start`` process with its own temporary
directory and one CPU, joined over 127.0.0.1 with a token made for this test (Ray's servers listen
on every interface; the token keeps anyone else off). A small cycle-model sweep and a small
sharded regression (Icarus, the tiny preset's LFSR unit, two seeds) run on it; their tasks must
have run on both nodes, and their results must equal the serial runs'. The nodes are stopped by
their own process ids (each ``ray start --block`` takes its node's processes down with it; its
process group is killed if it does not), never with ``ray stop``, which would end every Ray
process on the machine.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from stag.cli import main

RAY = Path(sys.executable).parent / "ray"
STAG = Path(sys.executable).parent / "stag"
#: Fields that say where and how fast a task ran, not what it found.
RUN_FIELDS = ("node", "seconds")

pytestmark = [pytest.mark.cosim, pytest.mark.slow]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for(log: Path, text: str, process: subprocess.Popen, timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if log.exists() and text in log.read_text(errors="replace"):
            return
        if process.poll() is not None:
            break
        time.sleep(0.2)
    raise RuntimeError(f"ray start did not report {text!r}: {log.read_text(errors='replace')[-2000:]}")


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
    try:  # whatever is left of the node (its own session: start_new_session below)
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait(timeout=10)


@pytest.fixture(scope="module")
def cluster():
    """``(address, environment)`` of a running two-node cluster; stopped afterwards."""
    port = _free_port()
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32),
           "RAY_USAGE_STATS_ENABLED": "0"}
    # Short directories: Ray's Unix sockets live below them (at most 107 characters).
    dirs = [tempfile.mkdtemp(prefix="stag_rh_", dir="/tmp"), tempfile.mkdtemp(prefix="stag_rw_", dir="/tmp")]
    nodes: list[subprocess.Popen] = []
    common = ["--node-ip-address=127.0.0.1", "--num-cpus=1", "--disable-usage-stats", "--block"]
    try:
        for i, role in enumerate((["--head", f"--port={port}", "--include-dashboard=false"],
                                  [f"--address=127.0.0.1:{port}"])):
            log = Path(dirs[i]) / "start.log"
            with log.open("w") as out:
                nodes.append(subprocess.Popen([str(RAY), "start", *role, f"--temp-dir={dirs[i]}", *common], env=env,
                                              stdout=out, stderr=subprocess.STDOUT, start_new_session=True))
            _wait_for(log, "Ray runtime started", nodes[-1])
        yield f"127.0.0.1:{port}", env
    finally:
        for node in reversed(nodes):
            _stop(node)
        for directory in dirs:
            shutil.rmtree(directory, ignore_errors=True)


def _stag(args: list[str], env: dict[str, str]) -> str:
    done = subprocess.run([str(STAG), *args], env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def _lines(path: Path) -> dict[str, dict]:
    return {line["key"]: line for line in map(json.loads, path.read_text().splitlines())}


def test_sweep_and_regression_on_two_nodes_equal_the_serial_runs(cluster, tmp_path, capsys):
    address, env = cluster
    spec = tmp_path / "spec.toml"
    spec.write_text('name = "two_nodes"\nworkloads = ["dense", "swat"]\n[grid]\nlanes = [4, 8]\nsparse = [true]\n')
    printed = _stag(["sweep", str(spec), "--address", address, "--out", str(tmp_path / "ray")], env)
    assert f"on the Ray cluster at {address}" in printed and "4 evaluated" in printed
    assert main(["sweep", str(spec), "--serial", "--out", str(tmp_path / "serial")]) == 0
    sharded = _lines(tmp_path / "ray" / "two_nodes" / "results.jsonl")
    serial = _lines(tmp_path / "serial" / "two_nodes" / "results.jsonl")
    assert len(sharded) == 4 and all(line["status"] == "ok" for line in sharded.values())
    assert len({line["node"] for line in sharded.values()}) == 2  # both nodes evaluated points
    strip = lambda line: {k: v for k, v in line.items() if k not in RUN_FIELDS}  # noqa: E731
    assert {k: strip(v) for k, v in sharded.items()} == {k: strip(v) for k, v in serial.items()}

    regress = ["regress", "--preset", "tiny", "--sim", "icarus", "--suites", "lfsr", "--seeds", "1,2"]
    printed = _stag([*regress, "--address", address, "--work", str(tmp_path / "ray")], env)
    assert "PASS: 6 of 6 cocotb tests passed in 2 jobs" in printed and "on 2 node(s)" in printed
    assert main([*regress, "--serial", "--work", str(tmp_path / "serial")]) == 0
    capsys.readouterr()
    first, second = (json.loads((tmp_path / mode / "tiny" / "regress" / "summary.json").read_text())
                     for mode in ("ray", "serial"))
    assert len(first["nodes"]) == 2 and first["passed"] and second["passed"]
    assert first["outcomes"] == second["outcomes"] and len(first["outcomes"]) == 6
    digests = lambda summary: {j["name"]: j["records_sha256"] for j in summary["jobs"]}  # noqa: E731
    assert digests(first) == digests(second)
    assert (tmp_path / "ray" / "tiny" / "regress" / "junit.xml").read_text().count("<testcase ") == 6
