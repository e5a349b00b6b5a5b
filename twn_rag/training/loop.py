"""The optimisation loop shared by the three training stages.

One ``TrainingLoop.run`` call performs optimizer steps; each step runs ``grad_accum``
micro-steps (the stage's forward + backward), clips, steps AdamW and the learning-rate
schedule (linear warm-up, then constant or decaying to 0), logs one record, shows progress,
and every ``save_every`` steps writes a checkpoint
(``<out>/checkpoint-<step>/``: the released TWN layout plus ``trainer_state.pt``). Run again
with the same output folder and it resumes from the newest checkpoint.

Reproducibility: the data order and every random draw of a step are seeded from
``(seed, step)``, so a resumed run sees the same batches and samples as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import logging
import random
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from twn_rag.device import DTYPE_NAMES, resolve_device
from twn_rag.modeling import TWNModel, load_tensor_file
from twn_rag.training.loss_log import LOG_FORMATS, LossLog

logger = logging.getLogger(__name__)

CHECKPOINT_PREFIX = "checkpoint-"
TRAINER_STATE_FILENAME = "trainer_state.pt"
LR_SCHEDULES = ("constant", "linear", "cosine")


@dataclass
class TrainingArguments:
    """Options every stage shares.

    ``max_steps`` counts optimizer steps; when ``None`` it is ``epochs`` passes over the data
    (``batch_size`` examples per micro-step, ``grad_accum`` micro-steps per optimizer step).
    ``save_every`` = 0 saves only at the end. ``dtype="auto"`` trains in bf16 autocast on
    CUDA (weights bf16, LoRA and queries fp32) and in fp32 elsewhere. ``lr_schedule``: after
    ``warmup_steps`` of linear warm-up the learning rate stays (``"constant"``) or decays to 0
    at the last step, linearly (``"linear"``) or along a half cosine (``"cosine"``), as
    transformers' schedulers of those names do.
    """

    output_dir: str | Path = "twn-out"
    max_steps: int | None = None
    epochs: float = 1.0
    batch_size: int = 8
    grad_accum: int = 1
    learning_rate: float = 1e-4
    weight_decay: float = 0.0
    warmup_steps: int = 0
    lr_schedule: str = "constant"
    max_grad_norm: float | None = 1.0
    save_every: int = 0
    keep_checkpoints: int = 1
    resume: bool = True
    gradient_checkpointing: bool = False
    device: str = "auto"
    dtype: str = "auto"
    seed: int = 0
    log_format: str = "jsonl"
    show_progress: bool = True

    def __post_init__(self) -> None:
        self.output_dir = Path(self.output_dir)
        for name in ("batch_size", "grad_accum", "keep_checkpoints"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {self.max_steps}")
        if self.epochs <= 0:
            raise ValueError(f"epochs must be > 0, got {self.epochs}")
        if self.save_every < 0 or self.warmup_steps < 0:
            raise ValueError("save_every and warmup_steps must be >= 0")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}")
        if self.log_format not in LOG_FORMATS:
            raise ValueError(f"log_format must be one of {LOG_FORMATS}, got {self.log_format!r}")

    def total_steps(self, num_examples: int) -> int:
        """Optimizer steps for a data set of ``num_examples`` examples."""
        if self.max_steps is not None:
            return self.max_steps
        micro_per_epoch = -(-num_examples // self.batch_size)
        return max(1, int(-(-self.epochs * micro_per_epoch // self.grad_accum)))


def training_precision(device: torch.device, dtype: str | torch.dtype = "auto") -> tuple[torch.dtype, bool]:
    """``(weight dtype, autocast on?)``: ``auto`` is bf16 + autocast on CUDA, fp32 elsewhere.
    fp16 is refused (it needs loss scaling; use bf16)."""
    if dtype == "auto":
        dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    elif isinstance(dtype, str):
        if dtype not in DTYPE_NAMES:
            raise ValueError(f"dtype must be 'auto' or one of {sorted(DTYPE_NAMES)}, got {dtype!r}")
        dtype = DTYPE_NAMES[dtype]
    if dtype == torch.float16:
        raise ValueError("training in float16 is not supported; use bfloat16 or float32")
    return dtype, device.type == "cuda" and dtype == torch.bfloat16


def resolve_training_device(args: TrainingArguments) -> tuple[torch.device, torch.dtype, bool]:
    """The device, weight dtype and autocast flag ``args`` asks for."""
    device = resolve_device(args.device)
    dtype, autocast = training_precision(device, args.dtype)
    return device, dtype, autocast


def batch_indices(num_examples: int, batch_size: int, seed: int, micro_index: int) -> list[int]:
    """The example indices of global micro-step ``micro_index``: the data is shuffled once per
    epoch (seeded by ``seed`` and the epoch) and cut into batches of ``batch_size``."""
    per_epoch = -(-num_examples // batch_size)
    epoch, position = divmod(micro_index, per_epoch)
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    order = torch.randperm(num_examples, generator=generator).tolist()
    return order[position * batch_size : (position + 1) * batch_size]


def seed_step(seed: int, step: int) -> None:
    """Seed every generator from ``(seed, step)`` (sampling, dropout, shuffles of a step)."""
    value = seed * 1_000_003 + step
    random.seed(value)
    torch.manual_seed(value)


class TrainingLoop:
    """Optimizer, schedule, accumulation, clipping, logging, checkpoints and resume for one
    stage (``"sft"``, ``"gate"`` or ``"rl"``) training ``parts`` of ``model``. With
    ``checkpoints=False`` (scratch fits whose result is read off the model) nothing is saved."""

    def __init__(
        self,
        stage: str,
        model: TWNModel,
        args: TrainingArguments,
        parts: Iterable[str],
        total_steps: int,
        autocast: bool = False,
        checkpoints: bool = True,
    ):
        self.stage = stage
        self.save_checkpoints = checkpoints
        self.model = model
        self.args = args
        self.total_steps = total_steps
        self.use_autocast = autocast
        self.trainable = model.set_trainable(parts)
        if not self.trainable:
            raise ValueError(f"stage {stage}: nothing to train in {sorted(parts)}")
        self.optimizer = torch.optim.AdamW(self.trainable, lr=args.learning_rate, weight_decay=args.weight_decay)
        self.scheduler = _scheduler(self.optimizer, args.lr_schedule, args.warmup_steps, total_steps)
        self.output_dir = Path(args.output_dir)
        suffix = "csv" if args.log_format == "csv" else "jsonl"
        self.log = LossLog(self.output_dir / f"{stage}_log.{suffix}", args.log_format)
        if args.gradient_checkpointing:
            model.enable_gradient_checkpointing()

    # -- helpers for stages -------------------------------------------------------------------
    def autocast(self):
        """bf16 autocast on CUDA when asked for; a no-op elsewhere. Wrap forwards, not backward."""
        if not self.use_autocast:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.model.device.type, dtype=torch.bfloat16)

    def micro_batch(self, step: int, micro: int, num_examples: int) -> list[int]:
        """Example indices for micro-step ``micro`` of optimizer step ``step``."""
        return batch_indices(num_examples, self.args.batch_size, self.args.seed, step * self.args.grad_accum + micro)

    # -- the loop ----------------------------------------------------------------------------------
    def run(
        self,
        micro_step: Callable[[int, int], dict[str, float]],
        on_step_end: Callable[[int, dict], None] | None = None,
    ) -> list[dict]:
        """Train from the resumed step (or 0) to ``total_steps``.

        ``micro_step(step, micro)`` runs one micro-batch's forward and backward (its losses
        already divided by ``grad_accum``) and returns metrics to log; they are averaged over
        the micro-steps of a step. ``on_step_end(step, record)`` is called after each step
        (and its checkpoint). Returns the log records of this run.
        """
        self.output_dir.mkdir(parents=True, exist_ok=True)
        start = self._resume_or_reset()
        self.log.truncate(start)
        records = []
        started = time.perf_counter()
        self.model.train()
        bar = tqdm(
            total=self.total_steps,
            initial=start,
            desc=f"twn train {self.stage}",
            unit="step",
            disable=not self.args.show_progress,
        )
        try:
            for step in range(start, self.total_steps):
                seed_step(self.args.seed, step)
                collected: dict[str, list[float]] = {}
                for micro in range(self.args.grad_accum):
                    for key, value in micro_step(step, micro).items():
                        collected.setdefault(key, []).append(float(value))
                record = {"step": step + 1, **{k: sum(v) / len(v) for k, v in collected.items()}}
                record.update(self._optimizer_step())
                record["elapsed_s"] = round(time.perf_counter() - started, 3)
                self.log.append(record)
                records.append(record)
                bar.update(1)
                bar.set_postfix({k: f"{v:.4g}" for k, v in record.items() if k.endswith(("loss", "reward"))})
                done = step + 1
                if self.save_checkpoints and (
                    done == self.total_steps or (self.args.save_every and done % self.args.save_every == 0)
                ):
                    self.save_checkpoint(done)
                if on_step_end is not None:
                    on_step_end(done, record)
        finally:
            bar.close()
            self.model.eval()
        return records

    def _optimizer_step(self) -> dict[str, float]:
        stats = {"lr": self.scheduler.get_last_lr()[0]}
        if self.args.max_grad_norm is not None:
            norm = torch.nn.utils.clip_grad_norm_(self.trainable, self.args.max_grad_norm)
            stats["grad_norm"] = float(norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return stats

    # -- checkpoints ---------------------------------------------------------------------------------
    def checkpoints(self) -> list[tuple[int, Path]]:
        """Complete checkpoints in the output folder, oldest first."""
        return complete_checkpoints(self.output_dir)

    def save_checkpoint(self, step: int) -> Path:
        """Write ``checkpoint-<step>`` (written beside, then renamed: never half a checkpoint)."""
        target = self.output_dir / f"{CHECKPOINT_PREFIX}{step}"
        partial = self.output_dir / f".{CHECKPOINT_PREFIX}{step}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        self.model.save(partial)
        state = {
            "stage": self.stage,
            "step": step,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
        }
        torch.save(state, partial / TRAINER_STATE_FILENAME)
        shutil.rmtree(target, ignore_errors=True)
        partial.rename(target)
        for _, old in self.checkpoints()[: -self.args.keep_checkpoints]:
            shutil.rmtree(old, ignore_errors=True)
        logger.info("saved %s", target)
        return target

    def _resume_or_reset(self) -> int:
        existing = self.checkpoints()
        if existing and not self.args.resume:
            logger.info("not resuming: removing %d old checkpoint(s) in %s", len(existing), self.output_dir)
            for _, path in existing:
                shutil.rmtree(path)
            return 0
        if not existing:
            return 0
        step, path = existing[-1]
        state = load_tensor_file(path / TRAINER_STATE_FILENAME)
        if state.get("stage") != self.stage:
            raise ValueError(
                f"{path} is a {state.get('stage')!r} checkpoint, not {self.stage!r}; "
                "use another output folder or --no-resume"
            )
        self.model.load_weights(path)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if step >= self.total_steps:
            logger.info("%s already reached step %d of %d", path, step, self.total_steps)
        else:
            logger.info("resuming %s from %s (step %d of %d)", self.stage, path, step, self.total_steps)
        return min(step, self.total_steps)


def complete_checkpoints(output_dir: str | Path) -> list[tuple[int, Path]]:
    """``(step, folder)`` of every complete ``checkpoint-<step>`` in a stage's output folder
    (one with its ``trainer_state.pt``), oldest first."""
    found = []
    for path in Path(output_dir).glob(f"{CHECKPOINT_PREFIX}*"):
        suffix = path.name[len(CHECKPOINT_PREFIX) :]
        if suffix.isdigit() and (path / TRAINER_STATE_FILENAME).is_file():
            found.append((int(suffix), path))
    return sorted(found)


def _scheduler(optimizer: torch.optim.Optimizer, schedule: str, warmup: int, total_steps: int):
    """The learning-rate schedule of ``TrainingArguments.lr_schedule``."""
    if schedule == "constant":
        return torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: min(1.0, (step + 1) / warmup) if warmup else 1.0
        )
    from transformers import get_scheduler

    return get_scheduler(schedule, optimizer, num_warmup_steps=warmup, num_training_steps=total_steps)
