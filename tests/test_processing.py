import pytest
import torch
from PIL import Image
from support.long_text import long_page_text

from twn_rag.processing import TWNProcessor
from twn_rag.samples import make_sample_image


def test_decoded_thoughts_end_where_the_generated_token_ids_stop(embedder):
    processor = embedder.processor
    tokens = processor.tokenizer("red square blue circle", add_special_tokens=False)["input_ids"][:3]
    eos, pad = processor.tokenizer.eos_token_id, processor.pad_token_id
    generated = torch.tensor(
        [
            [*tokens[:2], eos, pad],  # stopped, then padded by generate
            [tokens[0], pad, pad, pad],
            [*tokens, tokens[0]],  # cut at the length limit: no stop token
        ]
    )
    rows = processor.generated_token_ids(generated)
    assert rows == [[*tokens[:2], eos], [tokens[0], pad], [*tokens, tokens[0]]]
    texts, counts = processor.decode_thoughts(generated)
    assert counts == [2, 1, 4]
    assert texts == [processor.tokenizer.decode(row[:count]).strip() for row, count in zip(rows, counts)]


LONG_PAGE = long_page_text(40_000)


@pytest.fixture
def varied_items(embedder, sample_video):
    """Inputs of every kind and size: short and long text, odd image sizes, two videos."""
    frames = [make_sample_image((50, 50), seed=i) for i in range(3)]
    return embedder.prepare(
        [
            "hi",
            LONG_PAGE[:3000],
            make_sample_image(seed=1),
            make_sample_image((300, 40), seed=2),
            {"text": "a clip", "video": str(sample_video)},
            {"images": [make_sample_image(seed=3), make_sample_image((40, 70), seed=4)], "text": "two images"},
            {"video": frames, "video_fps": 3.0},
            Image.new("RGB", (5, 900)),
        ]
    )


def _rows_of(processor, items, instructions):
    return [int(processor.embedding_batch([i], [s], [None])["input_ids"].shape[1]) for i, s in zip(items, instructions)]


def test_row_lengths_are_what_the_processor_produces(embedder, varied_items):
    instructions, _ = embedder.prompts(varied_items, "document")
    estimated = embedder.processor.embedding_row_lengths(varied_items, instructions)
    assert estimated == _rows_of(embedder.processor, varied_items, instructions)
    batch = embedder.processor.embedding_batch(varied_items, instructions, [None] * len(varied_items))
    assert estimated == batch["attention_mask"].sum(dim=1).tolist()  # padding is left out
    assert embedder.processor.embedding_row_lengths([], []) == []


@pytest.mark.parametrize("arch", ["qwen2_5_vl", "qwen2_vl"])
def test_row_lengths_for_other_qwen_vl_processors(arch, tmp_path, embedder, varied_items):
    from transformers import AutoProcessor

    from twn_rag.testing import build_tiny_backbone

    processor = TWNProcessor(AutoProcessor.from_pretrained(build_tiny_backbone(tmp_path / arch, arch)), num_queries=3)
    instructions, _ = embedder.prompts(varied_items, "query")
    assert processor.embedding_row_lengths(varied_items, instructions) == _rows_of(
        processor, varied_items, instructions
    )


def test_text_is_cut_on_a_token_boundary_and_its_length_kept(embedder):
    processor = embedder.processor
    text = LONG_PAGE[:40_000]
    total = processor.text_tokens(text)
    cut, tokens = processor.truncate_text(text, 500)
    assert tokens == total > 500
    assert text.startswith(cut) and 490 <= processor.text_tokens(cut) <= 500
    ids = processor.tokenizer(text, add_special_tokens=False)["input_ids"]
    assert processor.tokenizer(cut, add_special_tokens=False)["input_ids"] == ids[: processor.text_tokens(cut)]
    assert processor.truncate_text("short text", 500) == ("short text", processor.text_tokens("short text"))
    with pytest.raises(ValueError, match="max_tokens"):
        processor.truncate_text(text, 0)


def test_truncated_item_keeps_its_pixels_and_original_length(embedder):
    image = make_sample_image(seed=5)
    [item] = embedder.prepare([{"text": LONG_PAGE, "image": image}], max_input_tokens=None)
    cut = embedder.processor.truncated(item, 64)
    assert cut.images == item.images and cut.text_truncated and not item.text_truncated
    assert cut.text_tokens_original == embedder.processor.text_tokens(LONG_PAGE)
    assert embedder.processor.truncated(cut, 64) is cut  # already within the cap
    assert embedder.processor.truncated(cut, 32).text_tokens_original == cut.text_tokens_original  # the first length
    [only_image] = embedder.prepare([image])
    assert embedder.processor.truncated(only_image, 1) is only_image
