"""Encode-path benchmark (issue 2): ratios measured side by side in one run.

1. no-think ``encode`` vs a raw Hugging Face forward (embedding adapter, same batch);
2. adaptive where the gate says no to everything vs ``never`` (the gate should be free);
3. thought tokens per second: batched thinking at batch 8 vs one input at a time;
4. bf16 vs fp32 no-think ``encode`` on this CPU.

Run: ``make bench`` or ``.venv/bin/python benchmarks/bench_encode.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import bench_checkpoint, side_by_side

from twn_rag import ReasoningBudget, TWNEmbedder
from twn_rag.samples import make_sample_image

BATCH = 8
TEXTS = [
    f"Question {i}: what is the total of invoice number {i} when tax is added to the line items?" for i in range(BATCH)
]


def raw_forward(embedder: TWNEmbedder, texts: list[str]):
    """The baseline a user would hand-write with Hugging Face: chat template, processor, the
    K query vectors appended as input embeddings, one backbone forward with the embedding
    adapter, mean pooling over the query positions and L2 normalisation."""
    processor, model = embedder.processor.hf_processor, embedder.model
    system = embedder.config.instructions["query"]
    chats = [
        processor.apply_chat_template(
            [{"role": "system", "content": system}, {"role": "user", "content": [{"type": "text", "text": t}]}],
            tokenize=False,
            add_generation_prompt=True,
        )
        for t in texts
    ]
    batch = processor(text=chats, padding=True, return_tensors="pt")
    with torch.inference_mode():
        tokens = model.backbone.get_input_embeddings()(batch["input_ids"])
        queries = model.queries.to(tokens.dtype).expand(tokens.shape[0], -1, -1)
        mask = torch.cat([batch["attention_mask"], torch.ones(queries.shape[:2], dtype=torch.long)], dim=1)
        hidden = model._inner_model()(inputs_embeds=torch.cat([tokens, queries], 1), attention_mask=mask)
        pooled = hidden.last_hidden_state[:, -queries.shape[1] :].float().mean(1)
        return torch.nn.functional.normalize(pooled, dim=-1)


def thought_rates(embedder: TWNEmbedder, generation_only: bool) -> tuple[float, float]:
    """Thought tokens per second at batch 8 and one input at a time, side by side.

    ``generation_only``: time the batched ``generate`` of the reasoning adapter alone (what
    thinking costs); otherwise whole always-think ``encode`` calls (two embedding passes too).
    """
    items = embedder.prepare(TEXTS)
    tokens: dict[int, int] = {}

    def generate(batch_size: int) -> None:
        total = 0
        for start in range(0, len(items), batch_size):
            chunk = items[start : start + batch_size]
            batch = embedder.generation_batch(chunk, "query")
            with torch.inference_mode():
                out = embedder.model.generate_thoughts(batch, 32, pad_token_id=embedder.processor.pad_token_id)
            total += sum(embedder.processor.decode_thoughts(out)[1])
        tokens[batch_size] = total

    def encode(batch_size: int) -> None:
        embedder.thought_cache.clear()
        budget = ReasoningBudget(mode="always", max_thought_tokens=32)
        embedder.encode(TEXTS, budget=budget, batch_size=batch_size)
        tokens[batch_size] = budget.ledger.thought_tokens

    run = generate if generation_only else encode
    t_batched, t_single = side_by_side(lambda: run(BATCH), lambda: run(1), repeats=3)
    return tokens[BATCH] / t_batched, tokens[1] / t_single


def main() -> None:
    ckpt = bench_checkpoint()
    rows = []
    fp32 = TWNEmbedder.from_pretrained(ckpt, device="cpu", dtype="float32")
    bf16 = TWNEmbedder.from_pretrained(ckpt, device="cpu", dtype="bfloat16")
    params = sum(p.numel() for p in fp32.model.parameters())
    print(f"benchmark model: {params / 1e6:.1f} M parameters, batch {BATCH}, torch threads {torch.get_num_threads()}")

    never = lambda: ReasoningBudget(mode="never")  # noqa: E731
    for name, emb in (("bf16", bf16), ("fp32", fp32)):
        t_encode, t_raw = side_by_side(
            lambda e=emb: e.encode(TEXTS, budget=never(), batch_size=BATCH), lambda e=emb: raw_forward(e, TEXTS)
        )
        rows.append((f"no-think encode / raw HF forward ({name})", t_encode / t_raw, "<= 1.10"))

    images = [{"text": "a page", "image": make_sample_image((256, 256), seed=i)} for i in range(BATCH)]
    gate_no = lambda: ReasoningBudget(mode="adaptive", threshold=1.0)  # noqa: E731
    t_gate, t_never = side_by_side(
        lambda: bf16.encode(TEXTS + images, budget=gate_no(), batch_size=BATCH),
        lambda: bf16.encode(TEXTS + images, budget=never(), batch_size=BATCH),
    )
    rows.append(("adaptive, gate says no / never (bf16)", t_gate / t_never, "<= 1.05"))

    rate_gen_batched, rate_gen_single = thought_rates(bf16, generation_only=True)
    rows.append(
        ("thought tokens/s of generation, batch 8 / one at a time (bf16)", rate_gen_batched / rate_gen_single, ">= 4")
    )
    rate_batched, rate_single = thought_rates(bf16, generation_only=False)
    rows.append(("always-think encode tokens/s, batch 8 / one at a time (bf16)", rate_batched / rate_single, "info"))

    t_bf16, t_fp32 = side_by_side(
        lambda: bf16.encode(TEXTS + images, budget=never(), batch_size=BATCH),
        lambda: fp32.encode(TEXTS + images, budget=never(), batch_size=BATCH),
    )
    rows.append(("no-think encode time, fp32 / bf16 (speed-up of bf16)", t_fp32 / t_bf16, "> 1"))

    print(f"thought tokens/s of generation: batch 8 {rate_gen_batched:.1f}, one at a time {rate_gen_single:.1f}")
    print(f"{'measure':<66} {'ratio':>7}  target")
    for name, ratio, target in rows:
        print(f"{name:<66} {ratio:7.3f}  {target}")


if __name__ == "__main__":
    main()
