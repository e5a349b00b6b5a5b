"""The budget curve of the bundled miniature TWN: Recall@1 / MRR of the test queries against
the test documents indexed at several document think ratios (queries adaptive at the model's
gate threshold), with the thought tokens each ratio spends.

Run: ``.venv/bin/python benchmarks/twn_mini/budget_curve.py [--model DIR]`` (default: the
bundled model, ``twn_rag/assets/twn-mini``). It writes the test split of the world into a
temporary folder, embeds every query and document once without and once with a thought, and
lets each ratio choose, per document, which of the two vectors the index holds (see
``measure.py``).
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
from measure import DOCUMENT_THINK_RATIOS, document_curve, embed_split, gain_share
from task import build_world, write_jsonl

from twn_rag import TWNEmbedder
from twn_rag.mini import mini_model_path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="A miniature TWN checkpoint (default: bundled).")
    parser.add_argument("--world-seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    embedder = TWNEmbedder.from_pretrained(args.model or mini_model_path(), device="cpu", dtype="float32")
    with tempfile.TemporaryDirectory() as folder:
        split = embed_split(embedder, write_jsonl(build_world(args.world_seed), folder)["test"])
    curve = document_curve(split, embedder.config.gate_threshold, DOCUMENT_THINK_RATIOS)
    print(f"test split: {len(split.positives)} queries, {len(split.document_names)} documents; queries adaptive")
    print("| document think ratio | Recall@1 | MRR | documents thought | document tokens | query tokens |")
    print("| --- | --- | --- | --- | --- | --- |")
    for ratio, row in curve:
        thought = round(row["document_think_rate"] * len(split.document_names))
        print(
            f"| {ratio:g} | {row['recall_at_1']:.3f} | {row['mrr']:.3f} | {thought} | "
            f"{row['document_tokens']} | {row['query_tokens']} |"
        )
    share = gain_share(curve, 0.25)
    print(f"share of the always-think gain reached at ratio 0.25: {'n/a' if share is None else f'{share:.0%}'}")


if __name__ == "__main__":
    main()
