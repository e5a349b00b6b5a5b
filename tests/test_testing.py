from twn_rag.testing import build_tiny_tokenizer, tiny_checkpoint


def test_tiny_checkpoint_is_built_once_and_reused(tmp_path):
    first = tiny_checkpoint(tmp_path)
    stamp = (first / "gate_mlp.pt").stat().st_mtime_ns
    assert tiny_checkpoint(tmp_path) == first
    assert (first / "gate_mlp.pt").stat().st_mtime_ns == stamp


def test_tiny_tokenizer_has_the_qwen_special_tokens_and_template():
    tokenizer = build_tiny_tokenizer()
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "hi"}]}],
        tokenize=False,
        add_generation_prompt=True,
    )
    assert text == "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>hi<|im_end|>\n<|im_start|>assistant\n"
    ids = tokenizer(text)["input_ids"]
    assert tokenizer.convert_tokens_to_ids("<|image_pad|>") in ids
