"""Checkpoint averaging: an adapter's weights averaged over the last checkpoints of one run.

At a constant learning rate the late checkpoints of a run scatter around a flat region, and
what they do on inputs they were not trained on can swing from one to the next (the
miniature TWN's held-out thoughts: 9 of 12 exact at one checkpoint, 4 at the next); their
mean sits nearer the middle of that region (stochastic weight averaging, Izmailov et al.
2018). For a LoRA adapter the mean is taken of its A and B factors, not of their product:
close checkpoints of one run differ little, and the result is again a LoRA adapter of the
same rank that peft loads as it is.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

from safetensors.torch import load_file, save_file

from twn_rag.modeling import ADAPTER_WEIGHTS_FILENAME, REASONING_ADAPTER
from twn_rag.training.loop import TRAINER_STATE_FILENAME, complete_checkpoints


def average_checkpoints(
    run_dir: str | Path, output_dir: str | Path, last: int, adapters: Sequence[str] = (REASONING_ADAPTER,)
) -> Path:
    """Write to ``output_dir`` the newest complete checkpoint of the training run in
    ``run_dir`` (released TWN layout, without its trainer state) with the weights of each
    adapter in ``adapters`` replaced by their element-wise mean over the ``last`` newest
    checkpoints; every other part (the other adapter, queries, gate, config) is the newest
    checkpoint's. Returns ``output_dir``. Raises ``ValueError`` when the run has fewer than
    ``last`` complete checkpoints (keep them with ``save_every`` and ``keep_checkpoints``) or
    their adapters do not hold the same tensors."""
    if last < 1:
        raise ValueError(f"last must be >= 1, got {last}")
    found = complete_checkpoints(run_dir)
    if len(found) < last:
        raise ValueError(
            f"{run_dir}: {len(found)} complete checkpoints, {last} asked for; "
            "save them with save_every and keep_checkpoints >= last"
        )
    folders = [path for _, path in found[-last:]]
    output = Path(output_dir)
    if output.exists():
        shutil.rmtree(output)
    shutil.copytree(folders[-1], output, ignore=shutil.ignore_patterns(TRAINER_STATE_FILENAME))
    for adapter in adapters:
        states = [load_file(folder / adapter / ADAPTER_WEIGHTS_FILENAME) for folder in folders]
        for folder, state in zip(folders, states):
            if state.keys() != states[0].keys() or any(state[k].shape != states[0][k].shape for k in state):
                raise ValueError(f"{folder / adapter}: other tensors than {folders[0] / adapter}")
        mean = {name: sum(state[name] for state in states) / len(states) for name in states[0]}
        save_file(mean, output / adapter / ADAPTER_WEIGHTS_FILENAME, metadata={"format": "pt"})
    return output
