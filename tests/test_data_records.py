"""RLHF-V record parsing and validation: every bad row is named by its reason."""

import base64
import io
import json

import pytest
from PIL import Image

from rlhfv_ray.data.records import RowError, image_bytes, make_record, parse_text, validate_row


def png(size=(8, 8), color=(255, 0, 0)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


def noise_png(size=64) -> bytes:
    """A PNG whose pixel data is incompressible, so cutting it in half truncates the pixels."""
    buffer = io.BytesIO()
    Image.frombytes("RGB", (size, size), bytes((i * 7919) % 251 for i in range(size * size * 3))).save(buffer, "PNG")
    return buffer.getvalue()


def text(question="Q?", chosen="good", rejected="bad") -> str:
    return json.dumps({"question": question, "chosen": chosen, "rejected": rejected})


def test_record_round_trip():
    record = make_record(7, png(), "Describe.", "A red car.", "A blue car.", ds_name="w", origin_dataset="w",
                         origin_split={"model": "m"}, image_path="scene_7.png")
    row = validate_row(record)
    assert (row.idx, row.question, row.chosen, row.rejected) == (7, "Describe.", "A red car.", "A blue car.")
    assert row.image_png == record["image"]["bytes"]


@pytest.mark.parametrize("value, reason", [
    (None, "missing_text"),
    ("", "missing_text"),
    ("{not json", "malformed_text_json"),
    ("[1, 2]", "malformed_text_json"),
    (json.dumps({"chosen": "a", "rejected": "b"}), "missing_question"),
    (text(chosen="  "), "missing_chosen"),
    (text(rejected=None), "missing_rejected"),
    (text(chosen="same", rejected="same"), "identical_answers"),
])
def test_bad_text_reasons(value, reason):
    with pytest.raises(RowError) as error:
        parse_text(value)
    assert error.value.reason == reason


def test_image_forms(tmp_path):
    data = png()
    (tmp_path / "a.png").write_bytes(data)
    assert image_bytes({"bytes": data, "path": "x"}) == data
    assert image_bytes(base64.b64encode(data).decode()) == data
    assert image_bytes("a.png", base_dir=str(tmp_path)) == data
    assert image_bytes({"bytes": None, "path": str(tmp_path / "a.png")}) == data


@pytest.mark.parametrize("image, reason", [
    (None, "missing_image"),
    ({"bytes": None, "path": None}, "missing_image"),
    ({"bytes": b"this is not an image", "path": None}, "not_an_image"),
    ({"bytes": noise_png()[: len(noise_png()) // 2], "path": None}, "corrupt_image"),  # truncated
    ("no such file and not base64!", "missing_image"),
])
def test_bad_image_reasons(image, reason):
    with pytest.raises(RowError) as error:
        validate_row({"text": text(), "image": image, "idx": 1})
    assert error.value.reason == reason


def test_decompression_bomb_is_refused_before_decoding():
    big = png(size=(3000, 3000))
    with pytest.raises(RowError) as error:
        validate_row({"text": text(), "image": {"bytes": big}, "idx": 1}, max_pixels=1_000_000)
    assert error.value.reason == "too_many_pixels"
