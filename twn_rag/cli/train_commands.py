"""``twn-rag train sft|gate|rl`` and ``twn-rag eval``."""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, get_type_hints

import typer

from twn_rag.cli.app import app

if TYPE_CHECKING:
    from twn_rag.training.loop import TrainingArguments

train_app = typer.Typer(
    help="Train TWN adapters on your data (JSONL, see README): sft, then gate, then rl.",
    no_args_is_help=True,
)
app.add_typer(train_app, name="train")

BaseModel = Annotated[
    str | None, typer.Option("--base-model", help="Local backbone replacing the one the checkpoint names.")
]
Device = Annotated[str, typer.Option("--device", help="auto, cuda, mps or cpu.")]
Progress = Annotated[bool, typer.Option("--progress/--no-progress", help="Show a progress bar.")]


@dataclass
class TrainOptions:
    """The options every ``twn-rag train`` stage takes, declared once: ``train_command`` adds
    each field to a stage's command line. Fields left at None keep the stage's default."""

    data: Annotated[Path, typer.Option("--data", help="Training JSONL file.", exists=True, dir_okay=False)]
    base: Annotated[str, typer.Option("--base", help="A TWN checkpoint, or (sft only) a Qwen-VL backbone.")]
    out: Annotated[Path, typer.Option("--out", help="Output folder: checkpoint, checkpoints, loss log.")]
    base_model: BaseModel = None
    steps: Annotated[
        int | None,
        typer.Option("--steps", help="Optimizer steps (default: --epochs over the data)."),
    ] = None
    epochs: Annotated[
        float | None,
        typer.Option("--epochs", help="Passes over the data when --steps is not given."),
    ] = None
    batch_size: Annotated[int | None, typer.Option("--batch-size", help="Examples per micro-step.")] = None
    grad_accum: Annotated[int, typer.Option("--grad-accum", help="Micro-steps per optimizer step.")] = 1
    lr: Annotated[float | None, typer.Option("--lr", help="AdamW learning rate.")] = None
    warmup_steps: Annotated[int, typer.Option("--warmup-steps", help="Linear warm-up steps.")] = 0
    lr_schedule: Annotated[
        str, typer.Option("--lr-schedule", help="After warm-up: constant, or decay to 0 (linear, cosine).")
    ] = "constant"
    save_every: Annotated[int, typer.Option("--save-every", help="Checkpoint every N steps (0: only at the end).")] = 0
    resume: Annotated[
        bool,
        typer.Option("--resume/--no-resume", help="Continue from the newest checkpoint in --out."),
    ] = True
    gradient_checkpointing: Annotated[
        bool,
        typer.Option("--gradient-checkpointing", help="Recompute activations to save memory."),
    ] = False
    device: Device = "auto"
    dtype: Annotated[
        str,
        typer.Option("--dtype", help="auto (bf16 autocast on CUDA, else fp32), bf16 or fp32."),
    ] = "auto"
    seed: Annotated[int, typer.Option("--seed")] = 0
    log_format: Annotated[str, typer.Option("--log-format", help="Loss log format: jsonl or csv.")] = "jsonl"
    progress: Progress = True

    def arguments(self, stage_arguments: type[TrainingArguments], **stage_options: Any) -> TrainingArguments:
        """``stage_arguments`` (a ``TrainingArguments`` class) built from these options and the
        stage's own."""
        shared = {
            _ARGUMENT_NAMES.get(name, name): value
            for name, value in dataclasses.asdict(self).items()
            if name not in _NOT_ARGUMENTS and value is not None
        }
        return stage_arguments(**shared, **stage_options)

    def run(self, train: Callable[..., Path], args: TrainingArguments, **extra: Any) -> None:
        """Run a training stage; a data or argument error exits with status 2 and its message."""
        from twn_rag.training.data import DataFormatError

        try:
            output = train(self.data, self.base, args, base_model=self.base_model, **extra)
        except (DataFormatError, ValueError, FileNotFoundError) as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from exc
        typer.echo(f"saved {output}")


# Options that are no TrainingArguments field, and those whose field has another name.
_NOT_ARGUMENTS = frozenset({"data", "base", "base_model"})
_ARGUMENT_NAMES = {"out": "output_dir", "steps": "max_steps", "lr": "learning_rate", "progress": "show_progress"}


def _keyword(name: str, annotation: Any, default: Any = inspect.Parameter.empty) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation, default=default)


def _default(field: dataclasses.Field) -> Any:
    return inspect.Parameter.empty if field.default is dataclasses.MISSING else field.default


def train_command(name: str, *, without: Iterable[str] = ()) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Register ``twn-rag train <name>`` for a function ``(options: TrainOptions, **own)``: its
    command line is every ``TrainOptions`` field (but those ``without``, which keep their
    default), then its own parameters, all listed by ``--help``."""
    hints = get_type_hints(TrainOptions, include_extras=True)
    excluded = set(without)
    shared = [field for field in dataclasses.fields(TrainOptions) if field.name not in excluded]
    shared_parameters = [_keyword(field.name, hints[field.name], _default(field)) for field in shared]

    def register(command: Callable[..., None]) -> Callable[..., None]:
        _, *own = inspect.signature(command, eval_str=True).parameters.values()

        @functools.wraps(command)
        def run(**values: Any) -> None:
            options = TrainOptions(**{field.name: values.pop(field.name) for field in shared})
            command(options, **values)

        parameters = shared_parameters + [_keyword(p.name, p.annotation, p.default) for p in own]
        # typer builds the command line from the signature and the annotations.
        run.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
        run.__annotations__ = {parameter.name: parameter.annotation for parameter in parameters}
        train_app.command(name)(run)
        return command

    return register


@train_command("sft")
def train_sft_command(
    options: TrainOptions,
    temperature: Annotated[float, typer.Option(help="InfoNCE temperature.")] = 0.05,
    reasoning_weight: Annotated[float, typer.Option(help="Weight of the thought next-token loss.")] = 1.0,
    embedding_weight: Annotated[float, typer.Option(help="Weight of the InfoNCE loss.")] = 1.0,
    num_queries: Annotated[int, typer.Option(help="Learnable queries K (new TWN only).")] = 16,
    lora_rank: Annotated[int, typer.Option(help="LoRA rank (new TWN only).")] = 16,
    lora_alpha: Annotated[int, typer.Option(help="LoRA alpha (new TWN only).")] = 32,
    gate_hidden: Annotated[int, typer.Option(help="Gate MLP hidden size (new TWN only).")] = 256,
) -> None:
    """Stage 1: joint SFT of both adapters and the queries.

    The thought next-token loss trains the reasoning adapter; InfoNCE on no-think and think views
    trains the embedding adapter and the queries. --base is a TWN checkpoint or a plain backbone.
    """
    from twn_rag.training.sft import SFTArguments, train_sft

    args = options.arguments(
        SFTArguments, temperature=temperature, reasoning_weight=reasoning_weight, embedding_weight=embedding_weight
    )
    create = dict(num_queries=num_queries, lora_rank=lora_rank, lora_alpha=lora_alpha, gate_hidden=gate_hidden)
    options.run(train_sft, args, **create)


# The gate trains on frozen features: no backbone activations to recompute.
@train_command("gate", without=["gradient_checkpointing"])
def train_gate_command(
    options: TrainOptions,
    delta: Annotated[float, typer.Option(help="Label 1 where thinking improves the margin by more.")] = 0.0,
    holdout: Annotated[float, typer.Option(help="Held-out fraction for the reported metrics.")] = 0.2,
    target_think_rate: Annotated[float | None, typer.Option(help="Calibrate the threshold to this think-rate.")] = None,
    calibration_folds: Annotated[
        int | None, typer.Option(help="Cross-fit the threshold over this many folds (held-out net margin gain).")
    ] = None,
    calibration_repeats: Annotated[int, typer.Option(help="Cross-fitting repeats with other folds.")] = 1,
    label_temperature: Annotated[
        float | None, typer.Option(help="Soft targets sigmoid((gain - delta) / T) instead of 0/1.")
    ] = None,
    max_thought_tokens: Annotated[int | None, typer.Option(help="Thought length for labelling.")] = None,
    embed_batch_size: Annotated[int, typer.Option(help="Batch size for labelling.")] = 8,
) -> None:
    """Stage 2: train the gate on self-supervised labels.

    Label 1 where thinking improves the margin by more than --delta (soft targets with
    --label-temperature); class-balanced BCE on frozen features; held-out precision, recall and
    AUC go to gate_metrics.json. The threshold is 0.5, or set by --target-think-rate, or
    cross-fitted with --calibration-folds (where held-out scores would gain the most margin).
    """
    from twn_rag.training.gate import GateArguments, train_gate

    args = options.arguments(
        GateArguments,
        delta=delta,
        holdout_fraction=holdout,
        target_think_rate=target_think_rate,
        calibration_folds=calibration_folds,
        calibration_repeats=calibration_repeats,
        label_temperature=label_temperature,
        max_thought_tokens=max_thought_tokens,
        embed_batch_size=embed_batch_size,
    )
    options.run(train_gate, args)


@train_command("rl")
def train_rl_command(
    options: TrainOptions,
    group_size: Annotated[int, typer.Option(help="Sampled thoughts per query.")] = 4,
    max_thought_tokens: Annotated[int | None, typer.Option(help="Thought length cap.")] = None,
    sampling_temperature: Annotated[float, typer.Option(help="Sampling temperature.")] = 1.0,
    top_p: Annotated[float, typer.Option(help="Nucleus sampling.")] = 1.0,
    top_k: Annotated[int, typer.Option(help="Top-k sampling (0: off).")] = 0,
    clip_epsilon: Annotated[float, typer.Option(help="Ratio clipping.")] = 0.2,
    kl_coef: Annotated[float, typer.Option(help="KL weight to the frozen SFT reasoning adapter.")] = 0.04,
    updates_per_batch: Annotated[int, typer.Option(help="Optimizer steps per sampled batch.")] = 1,
) -> None:
    """Stage 3: GRPO on the reasoning adapter.

    Reward: the gap (positive minus best negative) of the embedding made with each sampled
    thought; KL to the starting (SFT) reasoning adapter.
    """
    from twn_rag.training.rl import RLArguments, train_rl

    args = options.arguments(
        RLArguments,
        group_size=group_size,
        max_thought_tokens=max_thought_tokens,
        sampling_temperature=sampling_temperature,
        top_p=top_p,
        top_k=top_k,
        clip_epsilon=clip_epsilon,
        kl_coef=kl_coef,
        updates_per_batch=updates_per_batch,
    )
    options.run(train_rl, args)


@app.command("eval")
def eval_command(
    data: Annotated[Path, typer.Option("--data", help="Evaluation JSONL file.", exists=True, dir_okay=False)],
    model: Annotated[str, typer.Option("--model", help="TWN checkpoint folder (or hub id).")],
    mode: Annotated[
        list[str] | None, typer.Option("--mode", help="never, always or adaptive; repeat it (default: all three).")
    ] = None,
    think_ratio: Annotated[
        float | None, typer.Option("--think-ratio", help="Adaptive: calibrate the threshold to this think-rate.")
    ] = None,
    candidates: Annotated[
        str, typer.Option("--candidates", help="corpus: rank against every document; own: only a query's own.")
    ] = "corpus",
    think_role: Annotated[
        list[str] | None,
        typer.Option("--think-role", help="query or document: the roles the mode applies to (default both)."),
    ] = None,
    threshold: Annotated[
        float | None, typer.Option("--threshold", help="Adaptive: this gate threshold instead of the checkpoint's.")
    ] = None,
    base_model: BaseModel = None,
    batch_size: Annotated[int, typer.Option("--batch-size")] = 8,
    device: Device = "auto",
    dtype: Annotated[str, typer.Option("--dtype", help="auto, bf16 or fp32.")] = "auto",
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the report as JSON here.")] = None,
    progress: Progress = False,
) -> None:
    """Evaluate retrieval under the reasoning modes, side by side.

    Recall@1/5/10, MRR, NDCG@10, think-rate, mean thought tokens and wall time per mode.
    """
    from twn_rag.embedder import TWNEmbedder
    from twn_rag.evaluation import EVAL_MODES, evaluate
    from twn_rag.training.data import DataFormatError

    modes = mode or list(EVAL_MODES)
    try:
        embedder = TWNEmbedder.from_pretrained(model, base_model=base_model, device=device, dtype=dtype)
        report = evaluate(
            embedder,
            data,
            modes,
            think_ratio=think_ratio,
            candidates=candidates,
            think_roles=think_role or ("query", "document"),
            threshold=threshold,
            batch_size=batch_size,
            show_progress=progress,
        )
    except (DataFormatError, ValueError, FileNotFoundError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(
        f"{report.queries} queries, {report.documents} documents ({candidates} candidates), model {report.model}"
    )
    typer.echo(report.table())
    if json_out is not None:
        json_out.write_text(report.to_json(), encoding="utf-8")
        typer.echo(f"wrote {json_out}")
