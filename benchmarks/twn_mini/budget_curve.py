"""The budget curve of a miniature TWN (default: the bundled one): Recall@1 / MRR of the test
queries against the test documents indexed at document think ratios 0, 0.1, 0.25, 0.5 and 1
(queries adaptive at the model's gate threshold), with the thought tokens each spends; and
beside it never / always / adaptive / oracle and the gate's AUC per role (``build.report``).

Run: ``.venv/bin/python benchmarks/twn_mini/budget_curve.py [--model DIR]``. The world's test
split is written into a temporary folder; every query and document is embedded once without
and once with a thought, and each row chooses per input which of the two vectors it uses
(``measure.py``).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

sys.path.insert(0, str(Path(__file__).parent))
from build import WORLD_SEED, format_results, report
from task import build_world, write_jsonl

from twn_rag.mini import mini_model_path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="A miniature TWN checkpoint (default: bundled).")
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as folder:
        write_jsonl(build_world(WORLD_SEED), folder)
        results = report(args.model or mini_model_path(), Path(folder))
    print(format_results(results))


if __name__ == "__main__":
    main()
