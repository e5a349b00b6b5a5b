import io

import pytest
from PIL import Image

from twn_rag.media import MediaError, cap_pixels, iter_video_frames, load_image, read_video_frames


def test_load_image_from_pil_path_and_bytes(tmp_path):
    image = Image.new("RGBA", (10, 8), (1, 2, 3, 4))
    path = tmp_path / "x.png"
    image.save(path)
    data = path.read_bytes()
    for source in (image, path, str(path), data, io.BytesIO(data)):
        loaded = load_image(source)
        assert loaded.mode == "RGB" and loaded.size == (10, 8)


def test_missing_and_corrupt_images_say_why(tmp_path):
    with pytest.raises(MediaError, match="not found"):
        load_image(tmp_path / "nope.png")
    with pytest.raises(MediaError, match="cannot read image"):
        load_image(b"definitely not an image")
    with pytest.raises(MediaError, match="unsupported image type"):
        load_image(42)


def test_cap_pixels_keeps_aspect_ratio():
    image = Image.new("RGB", (400, 200))
    capped = cap_pixels(image, 100 * 50)
    assert capped.width * capped.height <= 100 * 50
    assert abs(capped.width / capped.height - 2.0) < 0.05
    assert cap_pixels(image, 10**6) is image


def test_video_frames_sampled_at_rate_and_capped(sample_video):
    frames = read_video_frames(sample_video, fps=2.0, max_frames=3)
    assert len(frames) == 3
    assert [round(f.timestamp, 2) for f in frames] == [0.0, 0.5, 1.0]
    assert all(f.image.size == (64, 48) for f in frames)


def test_video_is_decoded_as_a_stream(sample_video):
    stream = iter_video_frames(sample_video, fps=100.0, max_frames=100)
    first = next(stream)
    assert first.timestamp == 0.0  # a generator: frames come before the file is read whole
    assert len([first, *stream]) == 16


def test_non_video_and_truncated_videos(tmp_path, sample_video):
    fake = tmp_path / "fake.mp4"
    fake.write_bytes(b"not a video at all" * 100)
    with pytest.raises(MediaError, match="video"):
        read_video_frames(fake, 1.0, 4)
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(sample_video.read_bytes()[:200])
    with pytest.raises(MediaError):
        read_video_frames(truncated, 1.0, 4)
    with pytest.raises(MediaError, match="not found"):
        read_video_frames(tmp_path / "missing.mp4", 1.0, 4)
