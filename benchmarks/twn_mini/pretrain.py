"""Pre-train the miniature backbone on the synthetic world's corpus (stands in for a
pretrained MLLM): next-token loss on every fact sentence, on one-fact answers in the chat
format (``chat_examples``) and on captions of the colour pictures. Deterministic for a given
seed and thread count."""

from __future__ import annotations

import logging
import random
from pathlib import Path

import torch
from PIL import Image
from task import (
    COLOURS,
    World,
    colour_picture,
    entity_facts,
    general_sentences,
    one_fact_answers,
    page_file,
    picture_thought,
)
from transformers import AutoModelForImageTextToText, AutoProcessor

from twn_rag import TWNConfig
from twn_rag.inputs import EmbeddingInput
from twn_rag.processing import build_conversation
from twn_rag.testing import build_tiny_backbone, build_tiny_tokenizer

logger = logging.getLogger(__name__)

HIDDEN_SIZE = 128
NUM_LAYERS = 4
VOCAB_SIZE = 800


def caption_examples(seed: int, per_colour: int = 12) -> list[tuple[str, object]]:
    """(text, image) pairs: a colour picture followed by its caption."""
    return [
        (
            f"<|vision_start|><|image_pad|><|vision_end|>a {colour} picture. {picture_thought(colour)}",
            colour_picture(colour, seed * 1000 + i),
        )
        for colour in COLOURS
        for i in range(per_colour)
    ]


def chat_examples(processor, world: World, config: TWNConfig, page_dir: Path) -> list[tuple[str, Image.Image | None]]:
    """``task.one_fact_answers`` as the reasoning adapter's chats, ``(text, page image or
    None)``: ``config``'s reasoning prompt for the role as the system turn, the question (and
    a document's page image from ``page_dir``, ``task.page_file``, as ``task.write_pages``
    renders it) as the user's, the answer as the assistant's, ending with its end-of-turn
    token (what SFT trains the adapter to write, ``twn_rag.processing.build_conversation``)."""
    examples = []
    for answer in one_fact_answers(world):
        images = [] if answer.page is None else [Image.open(page_file(page_dir, answer.page)).convert("RGB")]
        conversation = build_conversation(
            EmbeddingInput(text=answer.question, images=images), config.prompts(answer.role)[1], thought=answer.answer
        )
        text = processor.apply_chat_template(conversation, tokenize=False).rstrip("\n")
        examples.append((text, images[0] if images else None))
    return examples


# Page chats (ticket pages with their images) in every pre-training batch, next to the captions.
PAGE_CHATS_PER_STEP = 2


def build_pretrained_backbone(
    world: World,
    output_dir: Path,
    config: TWNConfig,
    page_dir: Path,
    steps: int = 2500,
    batch_size: int = 32,
    seed: int = 0,
) -> Path:
    """Build the tokenizer and backbone for ``world`` and pre-train it on the world's facts,
    its other sentences, captions and ``chat_examples`` (in ``config``'s reasoning prompts,
    pages from ``page_dir``); returns its directory."""
    facts, others = entity_facts(world), general_sentences(world)
    # Tokenizer words also cover the query templates, so "the" is one token, not three, and
    # the build's instructions (every training row holds two) and the chat's role names (a
    # line each: no space precedes a role in the chat).
    prompts = [prompt for role in ("query", "document") for prompt in config.prompts(role)]
    vocabulary = facts + others + [f"a {c} picture." for c in COLOURS] + [q.text for q in world.queries]
    vocabulary += [*prompts, "system", "user", "assistant"]
    tokenizer = build_tiny_tokenizer(corpus=vocabulary, vocab_size=VOCAB_SIZE)
    build_tiny_backbone(output_dir, hidden_size=HIDDEN_SIZE, num_layers=NUM_LAYERS, seed=seed, tokenizer=tokenizer)
    processor = AutoProcessor.from_pretrained(str(output_dir))
    processor.tokenizer.padding_side = "right"
    eos = processor.tokenizer.eos_token
    # Chats already end with the end-of-turn token, the tokenizer's end of sequence.
    chats = chat_examples(processor, world, config, page_dir)
    facts = [line + eos for line in facts] + [text for text, image in chats if image is None]
    page_chats = [(text, image) for text, image in chats if image is not None]
    model = AutoModelForImageTextToText.from_pretrained(str(output_dir), dtype=torch.float32)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=2e-3, total_steps=steps, pct_start=0.1)
    rng = random.Random(seed)
    captions = [(text + eos, image) for text, image in caption_examples(seed)]
    image_ids = {
        processor.tokenizer.convert_tokens_to_ids(t) for t in ("<|image_pad|>", "<|vision_start|>", "<|vision_end|>")
    }
    for step in range(steps):
        pictured = rng.sample(captions, 4) + rng.sample(page_chats, PAGE_CHATS_PER_STEP)
        # Entity facts are the hard part (arbitrary associations): half of every batch.
        plain = batch_size - len(pictured)
        texts = rng.sample(facts, plain // 2) + [line + eos for line in rng.sample(others, plain - plain // 2)]
        batch = processor(
            text=[text for text, _ in pictured] + texts,
            images=[image for _, image in pictured],
            padding=True,
            return_tensors="pt",
        )
        labels = batch["input_ids"].clone()
        labels[batch["attention_mask"] == 0] = -100
        for token_id in image_ids:
            labels[labels == token_id] = -100
        loss = model(**batch, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        if step % 100 == 0 or step == steps - 1:
            logger.info("pretrain step %d loss %.4f", step, loss.item())
    model.eval()
    model.save_pretrained(str(output_dir))
    processor.tokenizer.padding_side = "left"
    processor.save_pretrained(str(output_dir))
    return output_dir


def fact_recall(backbone_dir: Path, world: World) -> float:
    """Fraction of entities whose card the backbone completes greedily ("X has card" -> N)."""
    processor = AutoProcessor.from_pretrained(str(backbone_dir))
    model = AutoModelForImageTextToText.from_pretrained(str(backbone_dir), dtype=torch.float32).eval()
    tokenizer = processor.tokenizer
    tokenizer.padding_side = "left"
    names = sorted(world.entities)
    batch = tokenizer([f"Fact: {n} has card" for n in names], return_tensors="pt", padding=True)
    with torch.inference_mode():
        out = model.generate(**batch, max_new_tokens=4, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    texts = tokenizer.batch_decode(out[:, batch["input_ids"].shape[1] :], skip_special_tokens=True)
    hits = sum(t.strip().rstrip(".").split(" ")[0] == str(world.entities[n][0]) for n, t in zip(names, texts))
    return hits / len(names)


def ticket_recall(backbone_dir: Path, world: World) -> float:
    """Fraction of tickets whose seat the backbone completes greedily ("ticket N is for seat" -> S)."""
    processor = AutoProcessor.from_pretrained(str(backbone_dir))
    model = AutoModelForImageTextToText.from_pretrained(str(backbone_dir), dtype=torch.float32).eval()
    tokenizer = processor.tokenizer
    tokenizer.padding_side = "left"
    tickets = sorted(world.tickets.items())
    batch = tokenizer([f"Fact: ticket {t} is for seat" for t, _ in tickets], return_tensors="pt", padding=True)
    with torch.inference_mode():
        out = model.generate(**batch, max_new_tokens=4, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    texts = tokenizer.batch_decode(out[:, batch["input_ids"].shape[1] :], skip_special_tokens=True)
    return sum(t.strip().startswith(f"{seat}.") for (_, (seat, _, _)), t in zip(tickets, texts)) / len(tickets)
