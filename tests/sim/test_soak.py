"""The soak (``sim.soak``, ``make soak``) on a small scale: it counts tiles, resumes, and catches a wrong beat.

One batch of the ``tiny`` preset on Icarus through the real flow (worker process, build, cocotb,
``ref``); a rerun with a larger target runs only the new seed; and a batch whose expected results
were altered must be reported as a mismatch with its seed and its run directory kept.
"""

from __future__ import annotations

import dataclasses
import json

import pytest

import sim.soak as soak
from hw.config import preset

pytestmark = pytest.mark.cosim


def _settings(tmp_path):
    return soak.SoakSettings(config=preset("tiny"), out=tmp_path / "soak", simulators=("icarus",), programs=2)


def test_soak_counts_tiles_and_resumes(tmp_path):
    settings = _settings(tmp_path)
    first_tiles = sum(soak.case_tiles(c) for c in soak.batch_cases(settings.config, 1, settings.programs))
    summary = soak.run_soak(settings, tiles=1, shards=1, log=lambda *a, **k: None)
    assert summary["seeds"] == [1] and summary["tiles"] == first_tiles and summary["mismatches"] == 0
    assert summary["first_failing_seed"] is None and summary["per_simulator"]["icarus"]["cycles"] > 0
    on_disk = json.loads((settings.out / "summary.json").read_text(encoding="utf-8"))
    for key in ("programs", "tiles", "mismatches", "simulators", "seeds", "configs", "config_failures"):
        assert on_disk[key] == summary[key]
    batch_file = settings.out / "batches" / "seed_1.json"
    stamp = batch_file.stat().st_mtime_ns
    summary = soak.run_soak(settings, tiles=first_tiles + 1, shards=1, log=lambda *a, **k: None)
    assert summary["seeds"] == [1, 2]                       # seed 1 was not run again
    assert batch_file.stat().st_mtime_ns == stamp


def test_soak_reports_a_wrong_beat(tmp_path, monkeypatch):
    real = soak.batch_cases

    def one_beat_off(config, seed, programs):
        cases = real(config, seed, programs)
        case = cases[1]
        return [cases[0], dataclasses.replace(case, expected=[case.expected[0] ^ 1, *case.expected[1:]]), *cases[2:]]

    # The worker processes are forked from this one, so they draw the altered programs too.
    monkeypatch.setattr(soak, "batch_cases", one_beat_off)
    settings = _settings(tmp_path)
    summary = soak.run_soak(settings, tiles=1, shards=1, log=lambda *a, **k: None)
    assert summary["mismatches"] == 1 and summary["first_failing_seed"] == 1
    batch = json.loads((settings.out / "batches" / "seed_1.json").read_text(encoding="utf-8"))
    assert not batch["ok"] and "beat 0" in batch["simulators"]["icarus"]["failure"]
    assert (settings.out / "work" / "seed_1").is_dir()


@pytest.mark.long   # 40 s alone, 480 s beside other cosimulations: a local Ray instance per run
def test_soak_on_ray_equals_worker_processes(tmp_path):
    # The same batch through a local Ray instance (--address local) and through a worker process.
    runs = {}
    for label, address in (("ray", "local"), ("processes", None)):
        settings = dataclasses.replace(_settings(tmp_path / label), programs=1)
        summary = soak.run_soak(settings, tiles=1, shards=1, log=lambda *a, **k: None, address=address)
        batch = json.loads((settings.out / "batches" / "seed_1.json").read_text(encoding="utf-8"))
        runs[label] = (summary, batch)
    (ray_summary, ray_batch), (summary, batch) = runs["ray"], runs["processes"]
    assert ray_summary["mismatches"] == 0 and ray_batch["ok"]
    for key in ("programs", "tiles", "seeds", "mismatches"):
        assert ray_summary[key] == summary[key]
    assert ray_batch["names"] == batch["names"]
    assert ray_batch["simulators"]["icarus"]["cycles"] == batch["simulators"]["icarus"]["cycles"] > 0
