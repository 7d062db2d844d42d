"""``stag report``: one self-contained HTML page of a run's results.

Examples::

    stag demo --results runs/demo && stag report runs/demo
    stag synth --preset default --work runs/demo && stag report runs/demo --out /tmp/demo.html

Reads what ``stag demo``, ``stag compare``, ``stag train``, ``stag synth`` and ``make bench``
(``benchmarks/*.py --out``) wrote into RUN_DIR (searched a few directories deep; the formats are
in ``stag/report/inputs.py``) and writes one HTML file with every plot embedded (no external file,
no network):

1. speedup against ideal, per layer pass and per pass (FWD, BWI, BWW);
2. the waterfall of lost cycles (the cycle model's breakdown of the measured cycles);
3. the cycle model against the measured RTL cycles;
4. accuracy per epoch of the training runs;
5. the PPA table (LUT4, CCU2C, FF, DSP, BRAM, Fmax) and dense-equivalent throughput, with the
   deltas against the baselines stored in benchmarks/results/.

A section whose inputs are missing names the command that produces them. RUN_DIR missing, or
holding none of the inputs: one error line, exit status 2, nothing written. The page is written to
a temporary file beside the output and renamed into place; the path written is printed.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from stag.report.inputs import RunDirError, read_run
from stag.report.page import render_page
from stag.report.ppa import DEFAULT_BASELINES, read_baselines

__all__ = ["add_parser", "run", "write_atomically"]


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("report", help="one self-contained HTML page of a run's results",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR",
                        help="the directory stag demo --results / stag compare --out / stag synth --work wrote")
    parser.add_argument("--out", type=Path, default=None, metavar="FILE",
                        help="the HTML file to write (default: RUN_DIR/report.html)")
    parser.add_argument("--baselines", type=Path, default=DEFAULT_BASELINES, metavar="DIR",
                        help=f"stored results the PPA and throughput are compared with (default: {DEFAULT_BASELINES})")
    parser.set_defaults(run=run)


def write_atomically(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file in ``path``'s directory, then rename it to ``path``: a reader
    sees the old file or the whole new one, and a failure leaves no partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def run(args: argparse.Namespace) -> int:
    try:
        inputs = read_run(args.run_dir)
    except RunDirError as exc:
        print(f"stag report: error: {exc}", file=sys.stderr)
        return 2
    page = render_page(inputs, read_baselines(args.baselines))
    out = args.out if args.out is not None else args.run_dir / "report.html"
    write_atomically(out, page)
    print(out)
    return 0
