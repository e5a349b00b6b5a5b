"""From ``EmbeddingInput`` items to model-ready batches: chat conversations, left padding,
and the K query placeholders appended for the embedding pass."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch
from PIL import Image
from transformers import BatchFeature

from twn_rag.inputs import EmbeddingInput

# Frames with no known rate (a user's frame list) are assumed one per second.
ASSUMED_FRAME_FPS = 1.0


def video_metadata(item: EmbeddingInput):
    """What the processor needs to know of ``item``'s frames: their count and rate (frames
    are taken as they are, not sampled again)."""
    from transformers.video_utils import VideoMetadata

    return VideoMetadata(
        total_num_frames=len(item.video or []),
        fps=item.video_fps or ASSUMED_FRAME_FPS,
        frames_indices=list(range(len(item.video or []))),
    )


def build_conversation(item: EmbeddingInput, system: str, thought: str | None = None) -> list[dict]:
    """The chat for one input: a system turn, a user turn with the media then the text, and,
    when ``thought`` is given, the thought as the assistant turn."""
    content: list[dict] = [{"type": "image"} for _ in item.images]
    if item.video:
        content.append({"type": "video"})
    if item.text:
        content.append({"type": "text", "text": item.text})
    conversation = [
        {"role": "system", "content": system},
        {"role": "user", "content": content},
    ]
    if thought is not None:
        conversation.append({"role": "assistant", "content": thought})
    return conversation


class TWNProcessor:
    """Wraps a Hugging Face multimodal processor; always pads on the left so every row ends
    at the same position (the K query slots, or the first generated token)."""

    def __init__(self, hf_processor, num_queries: int):
        self.hf_processor = hf_processor
        self.tokenizer = hf_processor.tokenizer
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.num_queries = num_queries

    @property
    def pad_token_id(self) -> int:
        return self.tokenizer.pad_token_id

    def _chat_texts(self, conversations: list[list[dict]], generation_prompt: list[bool]) -> list[str]:
        """Each conversation as the chat template writes it (one placeholder per image and video)."""
        return [
            self.hf_processor.apply_chat_template(conv, tokenize=False, add_generation_prompt=gen)
            for conv, gen in zip(conversations, generation_prompt)
        ]

    def _batch(
        self, conversations: list[list[dict]], items: Sequence[EmbeddingInput], generation_prompt: list[bool]
    ) -> BatchFeature:
        texts = self._chat_texts(conversations, generation_prompt)
        images = [image for item in items for image in item.images]
        videos = [item.video for item in items if item.video]
        kwargs: dict = {}
        if videos:
            kwargs["videos"] = videos
            kwargs["video_metadata"] = [video_metadata(item) for item in items if item.video]
            kwargs["do_sample_frames"] = False
        return self.hf_processor(
            text=texts,
            images=images or None,
            padding=True,
            return_tensors="pt",
            **kwargs,
        )

    # -- token counts, without preprocessing a pixel ------------------------------------------
    def text_tokens(self, text: str) -> int:
        """How many tokens ``text`` takes on its own."""
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def truncate_text(self, text: str, max_tokens: int) -> tuple[str, int]:
        """``(text, tokens)``: ``text`` cut on a token boundary so that it takes at most
        ``max_tokens`` tokens (unchanged when it fits), and its token count before the cut.
        The cut keeps the original characters (the tokenizer's offsets, not a decode)."""
        if max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
        offsets = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
        if len(offsets) <= max_tokens:
            return text, len(offsets)
        keep = max_tokens
        cut = text[: offsets[keep - 1][1]]
        # A prefix can tokenize into more pieces than it was cut from (BPE merges across the cut).
        while keep > 1 and self.text_tokens(cut) > max_tokens:
            keep -= 1
            cut = text[: offsets[keep - 1][1]]
        return cut, len(offsets)

    def truncated(self, item: EmbeddingInput, max_tokens: int) -> EmbeddingInput:
        """``item`` with its text cut to ``max_tokens`` tokens (``truncate_text``) and its token
        count before the cut in ``text_tokens_original``; the item itself when its text fits.
        Images and video are never touched."""
        if not item.text:
            return item
        text, tokens = self.truncate_text(item.text, max_tokens)
        if text == item.text:
            return item
        original = item.text_tokens_original if item.text_tokens_original is not None else tokens
        return dataclasses.replace(item, text=text, text_tokens_original=original)

    def embedding_row_lengths(self, items: Sequence[EmbeddingInput], instructions: Sequence[str]) -> list[int]:
        """The positions each item's row of ``embedding_batch(items, instructions, no thoughts)``
        takes, query slots included, before padding: its chat tokens with every image and video
        placeholder expanded as the processor expands it. Counted from the image sizes with the
        processor's own grid arithmetic; no pixel is preprocessed and the vision tower never runs."""
        if not items:
            return []
        conversations = [build_conversation(item, system) for item, system in zip(items, instructions)]
        texts = self._chat_texts(conversations, [True] * len(items))
        images = [image for item in items for image in item.images]
        videos = [item for item in items if item.video]
        image_grids = {"image_grid_thw": torch.tensor([self._image_grid(image) for image in images]).reshape(-1, 3)}
        video_grids = {
            "video_grid_thw": torch.tensor([self._video_grid(item.video) for item in videos]).reshape(-1, 3),
            "video_metadata": [video_metadata(item) for item in videos],
        }
        processor = self.hf_processor
        expanded, _ = processor.get_text_with_replacements(
            texts,
            [processor.replace_image_token(image_grids, image_idx=i) for i in range(len(images))],
            [processor.replace_video_token(video_grids, video_idx=i) for i in range(len(videos))],
        )
        return [len(ids) + self.num_queries for ids in self.tokenizer(expanded)["input_ids"]]

    def _image_grid(self, image: Image.Image) -> tuple[int, int, int]:
        """A grid whose product is the image's patch count (all the placeholder needs)."""
        return 1, 1, self.hf_processor.image_processor.get_number_of_image_patches(image.height, image.width, {})

    def _video_grid(self, frames: Sequence[Image.Image]) -> tuple[int, int, int]:
        """``(temporal groups, 1, patches per group)`` for a frame list."""
        video_processor = self.hf_processor.video_processor
        first = frames[0]
        patches = video_processor.get_num_of_video_patches(len(frames), first.height, first.width, {})
        groups = -(-len(frames) // video_processor.temporal_patch_size)
        return groups, 1, patches // groups

    def embedding_batch(
        self,
        items: Sequence[EmbeddingInput],
        instructions: Sequence[str],
        thoughts: Sequence[str | None],
    ) -> BatchFeature:
        """The embedding-pass batch: chat [+ thought] and K placeholder tokens at the end of
        every row, where the model's input embeddings are replaced by the learnable queries."""
        conversations = [build_conversation(i, s, t) for i, s, t in zip(items, instructions, thoughts)]
        batch = self._batch(conversations, items, [t is None for t in thoughts])
        return self._append_query_slots(batch)

    def generation_batch(self, items: Sequence[EmbeddingInput], instructions: Sequence[str]) -> BatchFeature:
        """The reasoning-pass batch: chat ending with the assistant generation prompt."""
        conversations = [build_conversation(i, s) for i, s in zip(items, instructions)]
        return self._batch(conversations, items, [True] * len(items))

    def reasoning_batch(
        self,
        items: Sequence[EmbeddingInput],
        instructions: Sequence[str],
        thought_ids: Sequence[Sequence[int]],
    ) -> tuple[BatchFeature, torch.Tensor]:
        """The reasoning-pass batch followed by each row's thought tokens (right padded), and
        the labels for a next-token loss: ``-100`` everywhere but on the thought tokens.

        ``thought_ids`` are token ids as the reasoning adapter produces them after the
        generation prompt (see ``thought_token_ids`` and ``generated_token_ids``), so the
        labelled tokens are exactly what ``generate`` would emit. Thoughts sit at the end of
        every row, so a loss needs logits only for the last ``labels`` columns.
        """
        if any(len(ids) == 0 for ids in thought_ids):
            raise ValueError("every thought needs at least one token (its end-of-turn token)")
        batch = self.generation_batch(items, instructions)
        rows, width = len(thought_ids), max(len(ids) for ids in thought_ids)
        ids = torch.full((rows, width), self.pad_token_id, dtype=batch["input_ids"].dtype)
        present = torch.zeros((rows, width), dtype=torch.bool)
        for row, tokens in enumerate(thought_ids):
            ids[row, : len(tokens)] = torch.as_tensor(list(tokens), dtype=ids.dtype)
            present[row, : len(tokens)] = True
        prompt_labels = torch.full_like(batch["input_ids"], -100)
        labels = torch.cat([prompt_labels, ids.masked_fill(~present, -100)], dim=1)
        return self._append_columns(batch, ids, present), labels

    def thought_token_ids(self, thought: str) -> list[int]:
        """A reference thought as the reasoning adapter should write it: its tokens, then EOS."""
        return [*self.tokenizer(thought, add_special_tokens=False)["input_ids"], self.tokenizer.eos_token_id]

    @property
    def stop_token_ids(self) -> frozenset[int]:
        """The tokens that end a generated thought: EOS, and pad (what ``generate`` fills in
        after a row has stopped)."""
        return frozenset({self.pad_token_id, self.tokenizer.eos_token_id})

    def generated_token_ids(self, generated: torch.Tensor) -> list[list[int]]:
        """Each generated row up to and including its first stop token (EOS or pad); a row cut
        at the length limit has no stop token."""
        stop_ids = self.stop_token_ids
        rows = []
        for row in generated.tolist():
            end = next((i + 1 for i, tok in enumerate(row) if tok in stop_ids), len(row))
            rows.append(row[:end])
        return rows

    def _append_query_slots(self, batch: BatchFeature) -> BatchFeature:
        rows = batch["input_ids"].shape[0]
        slots = torch.full((rows, self.num_queries), self.pad_token_id, dtype=batch["input_ids"].dtype)
        return self._append_columns(batch, slots, torch.ones(slots.shape, dtype=torch.bool))

    @staticmethod
    def _append_columns(batch: BatchFeature, ids: torch.Tensor, attend: torch.Tensor) -> BatchFeature:
        """Append text positions ``ids`` (attended where ``attend``) to every per-token tensor."""
        input_ids = batch["input_ids"]
        for key, value in list(batch.items()):
            if not torch.is_tensor(value) or value.shape != input_ids.shape:
                continue
            if key == "input_ids":
                extra = ids.to(value.dtype)
            elif key == "attention_mask":
                extra = attend.to(value.dtype)
            else:  # mm_token_type_ids and the like: the appended positions are plain text
                extra = torch.zeros(ids.shape, dtype=value.dtype)
            batch[key] = torch.cat([value, extra], dim=1)
        return batch

    def decode_thoughts(self, generated: torch.Tensor) -> tuple[list[str], list[int]]:
        """Text and token count of each generated row: the tokens of ``generated_token_ids``
        without the stop token that ends them."""
        texts, counts = [], []
        for row in self.generated_token_ids(generated):
            # Only a row's first stop token is kept, and only as its last token.
            body = row[:-1] if row and row[-1] in self.stop_token_ids else row
            counts.append(len(body))
            texts.append(self.tokenizer.decode(body, skip_special_tokens=True).strip())
        return texts, counts
