import pytest
from PIL import Image

from twn_rag.inputs import EmbeddingInput, InvalidInputError, parse_input

LIMITS = dict(max_image_pixels=64 * 64, video_fps=2.0, max_video_frames=4)


def parse(item, index=0):
    return parse_input(item, index, **LIMITS)


def test_accepted_forms(tmp_path, sample_video):
    path = tmp_path / "a.png"
    Image.new("RGB", (300, 300), "red").save(path)
    assert parse("hello").text == "hello"
    assert parse(Image.new("RGB", (5, 5))).modality == "image"
    item = parse({"text": "t", "image": str(path), "images": [path.read_bytes()], "instruction": "find"})
    assert len(item.images) == 2 and item.instruction == "find"
    assert all(i.width * i.height <= 64 * 64 for i in item.images)
    video = parse({"video": str(sample_video)})
    assert len(video.video) == 4 and video.video_fps == 2.0
    frames = parse({"video": [Image.new("RGB", (8, 8))] * 6, "video_fps": 3.0})
    assert len(frames.video) == 4 and frames.video_fps == 3.0
    assert parse(EmbeddingInput(text="x")).text == "x"


@pytest.mark.parametrize(
    ("item", "reason"),
    [
        ("", "empty input"),
        ("   ", "empty input"),
        ({"text": ""}, "empty input"),
        ({"image": "/no/such/file.png"}, "not found"),
        ({"image": b"\x89PNG broken"}, "cannot read image"),
        (3.14, "unsupported input type float"),
        ({"txt": "typo"}, "unknown keys"),
        ({"video": []}, "empty frame list"),
        ({"video": 7}, "'video' must be"),
        ({"text": 5}, "'text' must be a str"),
    ],
)
def test_bad_inputs_name_their_index_and_reason(item, reason):
    with pytest.raises(InvalidInputError, match=reason) as info:
        parse(item, index=7)
    assert info.value.index == 7
    assert str(info.value).startswith(f"input 7 ({info.value.name}): ")


@pytest.mark.parametrize(
    ("item", "name"),
    [
        ("   ", "'   '"),
        ({"image": "/no/such/file.png"}, "image /no/such/file.png"),
        ({"text": "t", "images": [Image.new("RGB", (4, 4)), b"broken"]}, "image of 6 bytes"),  # the bad one
        ({"video": [Image.new("RGB", (4, 4)), b"broken"]}, "video frame 1 of 6 bytes"),
        ({"video": "/no/such/clip.mp4"}, "video /no/such/clip.mp4"),
        ({"text": "x" * 50, "txt": "typo"}, repr("x" * 40 + "...")),
        (3.14, "3.14"),
    ],
)
def test_bad_inputs_are_described_by_the_part_that_failed(item, name):
    with pytest.raises(InvalidInputError) as info:
        parse(item, index=2)
    assert info.value.name == name
    assert str(info.value) == f"input 2 ({name}): {info.value.reason}"


def test_a_callers_name_replaces_the_description():
    with pytest.raises(InvalidInputError) as info:
        parse_input({"image": b"broken"}, 4, name="node page-7", **LIMITS)
    assert str(info.value).startswith("input 4 (node page-7): cannot read image")


def test_video_with_no_decodable_frame(tmp_path):
    bogus = tmp_path / "clip.mp4"
    bogus.write_bytes(b"\x00" * 4096)
    with pytest.raises(InvalidInputError, match=r"input 0 \(video .*clip.mp4\): .*video"):
        parse({"video": str(bogus)})


def test_content_hash_ignores_instruction_and_sees_pixels():
    a = EmbeddingInput(text="x", images=[Image.new("RGB", (4, 4), "red")], instruction="one")
    b = EmbeddingInput(text="x", images=[Image.new("RGB", (4, 4), "red")], instruction="two")
    c = EmbeddingInput(text="x", images=[Image.new("RGB", (4, 4), "blue")])
    assert a.content_hash() == b.content_hash() != c.content_hash()
