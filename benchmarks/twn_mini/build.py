"""Build the miniature TWN end to end and report never / always / adaptive on the test split.

Stages (each cached in ``--work``; delete the folder, or pass ``--fresh``, to redo them):
1. the synthetic world and its JSONL splits (``task.py``);
2. a small Qwen3-VL backbone pre-trained on the world's corpus (``pretrain.py``), then frozen;
3. SFT of both adapters on the train split, with gradient detachment (``twn_rag.training``);
4. the gate on self-supervised labels of the validation split (held-out entities: on the
   train split the no-think view has memorised the answers, so thinking looks useless there);
5. RL (GRPO, gap reward) of the reasoning adapter on the train split;
6. evaluation on the test split (never used before this step): never, always and adaptive
   at the gate's own threshold and at thresholds calibrated on validation gate scores.

``--ship`` copies the final checkpoint with its backbone into ``twn_rag/assets/twn-mini``.
Deterministic: seeds are fixed and torch runs one thread with deterministic algorithms.

Run: ``.venv/bin/python benchmarks/twn_mini/build.py [--ship]`` (``make mini``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

import torch

sys.path.insert(0, str(Path(__file__).parent))
from pretrain import build_pretrained_backbone, fact_recall
from task import COLOUR_RGB, NUM_CARDS, build_world, write_jsonl

from twn_rag import ReasoningBudget, TWNConfig, TWNEmbedder, calibrate
from twn_rag.evaluation import evaluate
from twn_rag.mini import WORLD_FILENAME
from twn_rag.training import GateArguments, RLArguments, SFTArguments, load_examples, train_gate, train_rl, train_sft

logger = logging.getLogger("twn_mini")

REPO = Path(__file__).resolve().parents[2]
ASSET_DIR = REPO / "twn_rag" / "assets" / "twn-mini"
SEED = 0
MAX_THOUGHT_TOKENS = 24
CALIBRATION_RATIOS = (0.3, 0.5, 0.7)
SFT_EPOCHS = 60
# The shipped threshold makes this fraction of the validation queries think.
GATE_THINK_RATE = 0.3
MINI_CONFIG = dict(
    max_thought_tokens=MAX_THOUGHT_TOKENS,
    max_image_pixels=64 * 64,
    gate_threshold=0.5,
    instructions={"query": "Find the card or picture this query asks for.", "document": "Represent this item."},
    reasoning_instructions={
        "query": "Write down the facts needed to answer this query.",
        "document": "Describe this item.",
    },
)


def stage(path: Path, name: str, fn):
    """Run ``fn`` unless ``path`` already holds its output (a finished stage)."""
    if path.exists():
        logger.info("%s: reusing %s", name, path)
        return path
    started = time.perf_counter()
    result = fn()
    logger.info("%s: done in %.0f s", name, time.perf_counter() - started)
    return result


def build(work: Path) -> Path:
    world = build_world(SEED)
    data = work / "data"
    stage(data / "test.jsonl", "data", lambda: write_jsonl(world, data))
    backbone = work / "backbone"
    stage(backbone / "config.json", "pretrain", lambda: build_pretrained_backbone(world, backbone, seed=SEED))
    logger.info("backbone fact recall: %.2f", fact_recall(backbone, world))
    common = dict(device="cpu", dtype="float32", seed=SEED, show_progress=False)
    sft = work / "sft"
    stage(
        sft / "gate_mlp.pt",
        "sft",
        lambda: train_sft(
            data / "train.jsonl",
            backbone,
            SFTArguments(
                output_dir=sft,
                epochs=SFT_EPOCHS,
                batch_size=16,
                learning_rate=2e-3,
                warmup_steps=20,
                reasoning_weight=2.0,
                **common,
            ),
            config=TWNConfig(**MINI_CONFIG),
            num_queries=8,
            lora_rank=16,
            lora_alpha=32,
            gate_hidden=64,
            seed=SEED,
        ),
    )
    gate = work / "gate"
    stage(
        gate / "gate_mlp.pt",
        "gate",
        lambda: train_gate(
            data / "validation.jsonl",
            sft,
            # Few labels (the validation split): a short, regularised fit generalises better.
            GateArguments(
                output_dir=gate,
                epochs=40,
                batch_size=32,
                learning_rate=1e-3,
                weight_decay=0.1,
                delta=0.02,
                target_think_rate=GATE_THINK_RATE,
                **common,
            ),
        ),
    )
    rl = work / "rl"
    stage(
        rl / "gate_mlp.pt",
        "rl",
        lambda: train_rl(
            data / "train.jsonl",
            gate,
            RLArguments(
                output_dir=rl,
                max_steps=30,
                batch_size=8,
                group_size=4,
                learning_rate=5e-5,
                kl_coef=0.1,
                sampling_temperature=0.8,
                **common,
            ),
        ),
    )
    return rl


def report(checkpoint: Path, data: Path) -> dict:
    """Test-split results: never, always, adaptive at the gate's threshold and at thresholds
    calibrated on the validation split's gate scores."""
    embedder = TWNEmbedder.from_pretrained(checkpoint, device="cpu", dtype="float32")
    validation = load_examples(data / "validation.jsonl")
    scores = [
        r.gate_score
        for r in embedder.encode([e.query for e in validation], role="query", budget=ReasoningBudget(mode="never"))
    ]
    test = data / "test.jsonl"
    rows = {}
    base = evaluate(embedder, test, ["never", "always", "adaptive"], think_roles=["query"])
    rows.update(
        {
            m if m != "adaptive" else f"adaptive (gate threshold {r.query_threshold:.2f})": r
            for m, r in base.modes.items()
        }
    )
    for ratio in CALIBRATION_RATIOS:
        threshold = calibrate(scores, ratio)
        result = evaluate(embedder, test, ["adaptive"], think_roles=["query"], threshold=threshold).modes["adaptive"]
        rows[f"adaptive (validation think-rate {ratio:.0%}, threshold {threshold:.3g})"] = result
    return {"queries": base.queries, "documents": base.documents, "rows": rows}


def print_table(results: dict) -> str:
    lines = [
        f"test split: {results['queries']} queries, {results['documents']} documents",
        "| mode | Recall@1 | MRR | think-rate | thought tokens / query | wall time s |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, r in results["rows"].items():
        lines.append(
            f"| {name} | {r.recall_at_1:.3f} | {r.mrr:.3f} | {r.query_think_rate:.0%} | "
            f"{r.query_mean_thought_tokens:.1f} | {r.wall_time_s:.2f} |"
        )
    text = "\n".join(lines)
    print(text)
    return text


def ship(checkpoint: Path, backbone: Path) -> None:
    """Copy the checkpoint and its backbone into the package (adapters name it ``backbone``)."""
    if ASSET_DIR.exists():
        shutil.rmtree(ASSET_DIR)
    ASSET_DIR.mkdir(parents=True)
    for name in ("reasoning", "embedding"):
        shutil.copytree(checkpoint / name, ASSET_DIR / name)
        config_path = ASSET_DIR / name / "adapter_config.json"
        config = json.loads(config_path.read_text())
        config["base_model_name_or_path"] = "backbone"
        config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    for name in ("gate_mlp.pt", "queries.pt", "twn_config.json"):
        shutil.copy2(checkpoint / name, ASSET_DIR / name)
    shutil.copytree(backbone, ASSET_DIR / "backbone")
    world = build_world(SEED)
    (ASSET_DIR / WORLD_FILENAME).write_text(
        json.dumps(
            {
                "seed": SEED,
                "num_cards": NUM_CARDS,
                "colours": COLOUR_RGB,
                "entities": {
                    name: {"card": card, "colour": colour, "split": world.entity_split[name]}
                    for name, (card, colour) in sorted(world.entities.items())
                },
            },
            indent=1,
            sort_keys=True,
        )
        + "\n",
        encoding="utf-8",
    )
    logger.info("shipped %s", ASSET_DIR)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=REPO / ".twn-cache" / "twn-mini-build")
    parser.add_argument("--fresh", action="store_true", help="Redo every stage.")
    parser.add_argument("--ship", action="store_true", help="Copy the result into twn_rag/assets/twn-mini.")
    parser.add_argument("--results", type=Path, help="Write the table (markdown) here.")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(SEED)
    if args.fresh and args.work.exists():
        shutil.rmtree(args.work)
    started = time.perf_counter()
    checkpoint = build(args.work)
    results = report(checkpoint, args.work / "data")
    table = print_table(results)
    logger.info("total %.0f s", time.perf_counter() - started)
    if args.results:
        args.results.write_text(table + "\n", encoding="utf-8")
    if args.ship:
        ship(checkpoint, args.work / "backbone")


if __name__ == "__main__":
    main()
