"""sensor_msgs/Image decoding without cv_bridge: every encoding, row padding, and errors that name the field."""

from __future__ import annotations

import types

import cv2
import numpy as np
import pytest
from sensor_msgs.msg import Image

from openpi_ros.image_messages import SUPPORTED_ENCODINGS, ImageDecodeError, image_to_rgb, rgb_to_image_fields

RGB = np.random.default_rng(0).integers(0, 256, size=(6, 5, 3), dtype=np.uint8)


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8"])
def test_colour_round_trip_is_exact(encoding):
    msg = Image(**rgb_to_image_fields(RGB, encoding))
    np.testing.assert_array_equal(image_to_rgb(msg), RGB)


def test_encodings_agree_with_opencv():
    """Channel orders are checked against OpenCV's own conversions, not against our encoder."""
    bgr = cv2.cvtColor(RGB, cv2.COLOR_RGB2BGR)
    msg = types.SimpleNamespace(encoding="bgr8", height=6, width=5, step=15, data=bgr.tobytes())
    np.testing.assert_array_equal(image_to_rgb(msg), RGB)
    bgra = cv2.cvtColor(RGB, cv2.COLOR_RGB2BGRA)
    msg = types.SimpleNamespace(encoding="bgra8", height=6, width=5, step=20, data=bgra.tobytes())
    np.testing.assert_array_equal(image_to_rgb(msg), RGB)
    gray = cv2.cvtColor(RGB, cv2.COLOR_RGB2GRAY)
    fields = rgb_to_image_fields(RGB, "mono8")
    assert np.abs(np.frombuffer(fields["data"], np.uint8).reshape(6, 5).astype(int) - gray).max() <= 1
    decoded = image_to_rgb(types.SimpleNamespace(**fields))
    assert decoded.shape == (6, 5, 3)
    assert (decoded[..., 0] == decoded[..., 2]).all()


def test_row_padding_is_honoured():
    padded = np.zeros((6, 20), np.uint8)  # step 20 > width*3 = 15
    padded[:, :15] = RGB.reshape(6, 15)
    padded[:, 15:] = 99
    msg = types.SimpleNamespace(encoding="rgb8", height=6, width=5, step=20, data=padded.tobytes())
    np.testing.assert_array_equal(image_to_rgb(msg), RGB)


def test_decoded_array_owns_its_memory():
    data = bytearray(RGB.tobytes())
    out = image_to_rgb(types.SimpleNamespace(encoding="rgb8", height=6, width=5, step=15, data=data))
    data[0] = (data[0] + 1) % 256
    assert out[0, 0, 0] == RGB[0, 0, 0]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"encoding": "yuv422"}, "encoding"),
        ({"step": 10}, "step"),
        ({"data": b"\x00" * 10}, "data"),
        ({"height": 0}, "height"),
    ],
)
def test_bad_images_name_the_field(change, field):
    fields = rgb_to_image_fields(RGB) | change
    with pytest.raises(ImageDecodeError, match=f"cam_high.*'{field}'|'{field}'"):
        image_to_rgb(types.SimpleNamespace(**fields), topic="cam_high")


def test_supported_encodings_listed():
    assert set(SUPPORTED_ENCODINGS) == {"rgb8", "bgr8", "rgba8", "bgra8", "mono8"}
