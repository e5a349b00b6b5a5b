"""Choose the gate's epochs on the validation split alone: for each candidate, train the gate
stage on 80 % of each role's validation rows and measure it on the other 20 %, for several
random hold-outs, on finished builds (their cached gate labels; nothing thinks again).

Run: ``.venv/bin/python benchmarks/twn_mini/gate_holdout.py [--builds DIR ...] [--epochs 20 40 80 160]``
(default builds: seeds 0, 1, 2 in their ``build.work_dir`` folders). Prints, per build and
candidate, the mean held-out ROC AUC and accuracy at the threshold per role.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from build import gate_arguments, work_dir

from twn_rag.training import train_gate
from twn_rag.training.gate import GATE_DATA_FILENAME, GATE_METRICS_FILENAME

HOLDOUT_FRACTION = 0.2


def heldout_metrics(build: Path, epochs: float, holdouts: int) -> dict[str, dict[str, float]]:
    """Per role, the mean held-out AUC and accuracy of the gate stage trained for ``epochs``
    on the rest of the validation rows, over ``holdouts`` random hold-outs (seeds 0, 1, ...)."""
    runs = []
    for seed in range(holdouts):
        with tempfile.TemporaryDirectory() as out:
            shutil.copy2(build / "gate" / GATE_DATA_FILENAME, Path(out) / GATE_DATA_FILENAME)
            args = gate_arguments(
                Path(out), seed, epochs=epochs, holdout_fraction=HOLDOUT_FRACTION, calibration_folds=None
            )
            train_gate(build / "data" / "validation.jsonl", build / "sft-averaged", args)
            runs.append(json.loads((Path(out) / GATE_METRICS_FILENAME).read_text(encoding="utf-8"))["roles"])
    return {
        role: {metric: _mean([run[role]["heldout"][metric] for run in runs]) for metric in ("auc", "accuracy")}
        for role in runs[0]
    }


def _mean(values: list[float | None]) -> float | None:
    """The mean of the known values (a hold-out with one class only has no AUC)."""
    known = [v for v in values if v is not None]
    return statistics.mean(known) if known else None


def _cell(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--builds", type=Path, nargs="+", default=[work_dir(s) for s in (0, 1, 2)])
    parser.add_argument("--epochs", type=float, nargs="+", default=[20, 40, 80, 160])
    parser.add_argument("--holdouts", type=int, default=5)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    print("| build | epochs | query AUC | query accuracy | document AUC | document accuracy |")
    print("| --- | --- | --- | --- | --- | --- |")
    for build in args.builds:
        for epochs in args.epochs:
            m = heldout_metrics(build, epochs, args.holdouts)
            cells = [_cell(m[role][metric]) for role in ("query", "document") for metric in ("auc", "accuracy")]
            print(f"| {build.name} | {epochs:g} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
