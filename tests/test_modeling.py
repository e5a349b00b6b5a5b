import json
import shutil

import numpy as np
import pytest
import torch
from transformers import AutoModelForImageTextToText

from twn_rag import CheckpointError, ReasoningBudget, TWNEmbedder, UnsupportedArchitectureError
from twn_rag.samples import make_sample_image
from twn_rag.testing import build_tiny_twn_checkpoint

ALWAYS = dict(mode="always", max_thought_tokens=5)


def sample_inputs(video):
    return ["seven plus five", make_sample_image(seed=5), {"text": "clip", "video": str(video)}]


def encode_all(embedder, video):
    return embedder.encode(sample_inputs(video), budget=ReasoningBudget(**ALWAYS))


def test_released_layout_is_written(tiny_ckpt):
    for name in ("reasoning", "embedding"):
        assert (tiny_ckpt / name / "adapter_config.json").is_file()
        assert (tiny_ckpt / name / "adapter_model.safetensors").is_file()
    for name in ("gate_mlp.pt", "queries.pt", "twn_config.json"):
        assert (tiny_ckpt / name).is_file()
    queries = torch.load(tiny_ckpt / "queries.pt", weights_only=True)
    assert queries.shape == (4, 64)


def test_save_load_round_trip_gives_identical_vectors(embedder, tmp_path, sample_video):
    before = encode_all(embedder, sample_video)
    saved = embedder.save_pretrained(tmp_path / "copy")
    again = TWNEmbedder.from_pretrained(saved, device="cpu", dtype="float32")
    after = encode_all(again, sample_video)
    for a, b in zip(before, after):
        np.testing.assert_array_equal(a.vector, b.vector)
        assert a.thought == b.thought and a.gate_score == b.gate_score


def test_one_backbone_in_memory(embedder, tiny_ckpt):
    base = AutoModelForImageTextToText.from_pretrained(str(tiny_ckpt / "backbone"))
    base_count = sum(p.numel() for p in base.parameters())
    params = dict(embedder.model.named_parameters())
    lora = sum(p.numel() for n, p in params.items() if "lora_" in n)
    assert {n.split(".lora_")[1].split(".")[1] for n in params if "lora_" in n} == {"reasoning", "embedding"}
    extras = embedder.model.queries.numel() + sum(p.numel() for p in embedder.model.gate.parameters())
    total = sum(p.numel() for p in embedder.model.parameters())
    assert total == base_count + lora + extras
    assert lora < base_count  # adapters, not a second backbone


def test_base_model_override_for_offline_machines(tiny_ckpt, tmp_path, embedder):
    moved = tmp_path / "ckpt"
    shutil.copytree(tiny_ckpt, moved, ignore=shutil.ignore_patterns("backbone"))
    for adapter in ("reasoning", "embedding"):
        cfg_path = moved / adapter / "adapter_config.json"
        cfg = json.loads(cfg_path.read_text())
        cfg["base_model_name_or_path"] = "someone/not-on-this-machine"
        cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(OSError):
        TWNEmbedder.from_pretrained(moved, device="cpu", dtype="float32")
    loaded = TWNEmbedder.from_pretrained(moved, base_model=tiny_ckpt / "backbone", device="cpu", dtype="float32")
    never = ReasoningBudget(mode="never")
    np.testing.assert_array_equal(
        loaded.encode(["x"], budget=never)[0].vector, embedder.encode(["x"], budget=never)[0].vector
    )


def test_optional_config_and_3d_queries(tiny_ckpt, tmp_path):
    ckpt = tmp_path / "ckpt"
    shutil.copytree(tiny_ckpt, ckpt, ignore=shutil.ignore_patterns("backbone"))
    (ckpt / "twn_config.json").unlink()
    queries = torch.load(ckpt / "queries.pt", weights_only=True)
    torch.save(queries.unsqueeze(0), ckpt / "queries.pt")
    loaded = TWNEmbedder.from_pretrained(ckpt, base_model=tiny_ckpt / "backbone", device="cpu", dtype="float32")
    assert loaded.model.num_queries == 4
    assert loaded.config.max_thought_tokens == 128  # the default, since twn_config.json is gone


class NotATensor:
    pass


def test_pickles_are_loaded_weights_only(tiny_ckpt, tmp_path):
    ckpt = tmp_path / "ckpt"
    shutil.copytree(tiny_ckpt, ckpt, ignore=shutil.ignore_patterns("backbone"))
    torch.save({"0.weight": NotATensor()}, ckpt / "gate_mlp.pt")
    with pytest.raises(Exception, match="[Ww]eights only|weights_only"):
        TWNEmbedder.from_pretrained(ckpt, base_model=tiny_ckpt / "backbone", device="cpu", dtype="float32")


def test_missing_pieces_are_named(tiny_ckpt, tmp_path):
    ckpt = tmp_path / "ckpt"
    shutil.copytree(tiny_ckpt, ckpt, ignore=shutil.ignore_patterns("backbone"))
    (ckpt / "queries.pt").unlink()
    with pytest.raises(CheckpointError, match="queries.pt"):
        TWNEmbedder.from_pretrained(ckpt, base_model=tiny_ckpt / "backbone", device="cpu", dtype="float32")
    shutil.rmtree(ckpt / "reasoning")
    with pytest.raises(CheckpointError, match="reasoning"):
        TWNEmbedder.from_pretrained(ckpt, base_model=tiny_ckpt / "backbone")
    with pytest.raises(FileNotFoundError, match="neither a checkpoint directory nor a hub id"):
        TWNEmbedder.from_pretrained(tmp_path / "does" / "not" / "exist")


def test_hub_id_offline_says_what_to_do():
    with pytest.raises(FileNotFoundError, match="local directory"):
        TWNEmbedder.from_pretrained("zhanglx/TWN-4B")


def test_unsupported_architecture_fails_at_load(tiny_ckpt, tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    llama_dir = tmp_path / "llama"
    LlamaForCausalLM(
        LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2)
    ).save_pretrained(llama_dir)
    with pytest.raises(UnsupportedArchitectureError, match="'llama'.*qwen3_vl"):
        TWNEmbedder.from_pretrained(tiny_ckpt, base_model=llama_dir)


@pytest.mark.parametrize("arch", ["qwen2_vl", "qwen2_5_vl"])
def test_other_qwen_vl_backbones(arch, tmp_path, sample_video):
    ckpt = build_tiny_twn_checkpoint(tmp_path / arch, arch)
    embedder = TWNEmbedder.from_pretrained(ckpt, device="cpu", dtype="float32")
    batched = encode_all(embedder, sample_video)
    embedder.thought_cache.clear()
    single = [embedder.encode([x], budget=ReasoningBudget(**ALWAYS))[0] for x in sample_inputs(sample_video)]
    for a, b in zip(batched, single):
        np.testing.assert_allclose(a.vector, b.vector, atol=1e-4)
        assert a.thought is not None


def test_bfloat16_runs(tiny_ckpt):
    embedder = TWNEmbedder.from_pretrained(tiny_ckpt, device="cpu", dtype="bfloat16")
    assert embedder.model.dtype == torch.bfloat16
    result = embedder.encode(["bf16"], budget=ReasoningBudget(**ALWAYS))[0]
    assert result.vector.dtype == np.float32 and abs(np.linalg.norm(result.vector) - 1) < 1e-3


def test_a_checkpoint_can_ship_its_backbone_inside(tiny_ckpt, tmp_path, embedder):
    bundled = tmp_path / "bundled"
    shutil.copytree(tiny_ckpt, bundled)  # the backbone comes along as bundled/backbone
    for adapter in ("reasoning", "embedding"):
        cfg_path = bundled / adapter / "adapter_config.json"
        cfg = json.loads(cfg_path.read_text())
        cfg["base_model_name_or_path"] = "backbone"  # relative: resolved inside the checkpoint
        cfg_path.write_text(json.dumps(cfg))
    loaded = TWNEmbedder.from_pretrained(bundled, device="cpu", dtype="float32")
    never = ReasoningBudget(mode="never")
    np.testing.assert_array_equal(
        loaded.encode(["x"], budget=never)[0].vector, embedder.encode(["x"], budget=never)[0].vector
    )
