import torch


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
