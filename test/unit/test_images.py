"""Image preprocessing: dtype/layout handling, openpi geometry, in-place writes (pi05_spec.md 1e)."""

import cv2
import numpy as np
import pytest

from flash_rt.errors import InputError
from flash_rt.io.images import (CAMERA_NAMES, padded_geometry, prepare_image, resize_with_pad, to_uint8_rgb,
                                uint8_to_model)


def _img(h, w, seed=0):
    return np.random.default_rng(seed).integers(1, 256, (h, w, 3), dtype=np.uint8)  # no zeros: pad is visible


def test_camera_names_order():
    assert CAMERA_NAMES == ("base_0_rgb", "left_wrist_0_rgb", "right_wrist_0_rgb")


def test_uint8_hwc_returned_as_is():
    img = _img(10, 12)
    assert to_uint8_rgb(img) is img


def test_float_truncates_like_openpi():
    img = np.array([[[0.0, 0.5, 1.0], [0.999, 0.0039, 0.00393]]], np.float32)
    u8 = to_uint8_rgb(img)
    assert u8.dtype == np.uint8
    np.testing.assert_array_equal(u8, (255 * img).astype(np.uint8))
    assert u8[0, 0].tolist() == [0, 127, 255]  # 127.5 truncates to 127
    assert u8[0, 1].tolist() == [254, 0, 1]  # 254.745 -> 254, 0.99 -> 0, 1.002 -> 1
    f64 = np.full((2, 2, 3), 0.5)
    assert (to_uint8_rgb(f64) == 127).all()


def test_chw_transposed():
    chw = _img(3, 20).reshape(-1)[: 3 * 4 * 5].reshape(3, 4, 5)
    hwc = to_uint8_rgb(chw)
    assert hwc.shape == (4, 5, 3)
    np.testing.assert_array_equal(hwc[:, :, 1], chw[1])
    chw_f = np.random.default_rng(1).random((3, 6, 8)).astype(np.float32)
    np.testing.assert_array_equal(to_uint8_rgb(chw_f), (255 * chw_f.transpose(1, 2, 0)).astype(np.uint8))


@pytest.mark.parametrize("bad, msg", [
    (np.zeros((4, 4), np.uint8), "dims"),
    (np.zeros((1, 4, 4, 3), np.uint8), "dims"),
    (np.zeros((4, 4, 1), np.uint8), "3 \\(RGB\\) channels"),
    (np.zeros((4, 4, 4), np.uint8), "3 \\(RGB\\) channels"),
    (np.zeros((4, 4, 3), np.int32), "dtype int32"),
    (np.zeros((4, 4, 3), np.float16), "dtype float16"),
    (np.zeros((4, 4, 3), bool), "dtype bool"),
    (np.zeros((0, 4, 3), np.uint8), "empty"),
    (np.full((4, 4, 3), np.nan, np.float32), "NaN"),
    (np.full((4, 4, 3), 200.0, np.float32), "\\[0, 1\\]"),
    (np.full((4, 4, 3), -0.5), "\\[0, 1\\]"),
    ("not an image", "dims"),
])
def test_bad_inputs_rejected(bad, msg):
    with pytest.raises(InputError, match=msg):
        to_uint8_rgb(bad)


def test_message_says_what_was_given():
    with pytest.raises(InputError) as e:
        to_uint8_rgb(np.zeros((4, 4, 4), np.uint8))
    assert "(4, 4, 4)" in str(e.value) and "uint8" in str(e.value)


def test_openpi_geometry():
    assert padded_geometry(480, 640) == (168, 224, 28, 0)
    assert padded_geometry(640, 480) == (224, 168, 0, 28)
    assert padded_geometry(100, 100) == (224, 224, 0, 0)  # upscale
    assert padded_geometry(480, 641) == (167, 224, 28, 0)  # int() rounds down, offset floor((224-167)/2)


@pytest.mark.parametrize("interp", ["area", "linear"])
def test_landscape_640x480_band(interp):
    img = _img(480, 640)
    out = resize_with_pad(img, 224, interpolation=interp)
    assert out.shape == (224, 224, 3) and out.dtype == np.uint8
    assert (out[:28] == 0).all() and (out[196:] == 0).all()
    assert (out[28:196] > 0).all()  # the content band: rows 28..195, full width
    flag = cv2.INTER_AREA if interp == "area" else cv2.INTER_LINEAR
    np.testing.assert_array_equal(out[28:196], cv2.resize(img, (224, 168), interpolation=flag))


def test_portrait_band_and_content():
    img = _img(640, 480)
    out = resize_with_pad(img)
    assert (out[:, :28] == 0).all() and (out[:, 196:] == 0).all()
    assert (out[:, 28:196] > 0).all()


def test_out_buffer_written_in_place():
    out = np.full((224, 224, 3), 77, np.uint8)  # poison
    img = _img(480, 640)
    res = prepare_image(img, out=out)
    assert res is out
    assert (out[:28] == 0).all() and (out[196:] == 0).all()
    np.testing.assert_array_equal(out, resize_with_pad(img))
    # Reusing the buffer with the other orientation re-zeroes the new pad region.
    resize_with_pad(_img(640, 480), out=out)
    assert (out[:, :28] == 0).all() and (out[:, 196:] == 0).all()


def test_out_view_into_batch_buffer():
    batch = np.full((3, 224, 224, 3), 9, np.uint8)
    prepare_image(_img(480, 640), out=batch[1])
    assert (batch[0] == 9).all() and (batch[2] == 9).all()
    np.testing.assert_array_equal(batch[1], resize_with_pad(_img(480, 640)))


def test_already_224_copied_unchanged():
    img = _img(224, 224)
    out = np.full((224, 224, 3), 5, np.uint8)
    resize_with_pad(img, out=out)
    np.testing.assert_array_equal(out, img)
    assert not np.shares_memory(out, img)


def test_bad_out_and_interpolation():
    with pytest.raises(InputError, match="out must be"):
        resize_with_pad(_img(10, 10), out=np.zeros((224, 224, 3), np.float32))
    with pytest.raises(InputError, match="out must be"):
        resize_with_pad(_img(10, 10), out=np.zeros((100, 100, 3), np.uint8))
    with pytest.raises(InputError, match="interpolation"):
        resize_with_pad(_img(10, 10), interpolation="cubic")
    with pytest.raises(InputError, match="elongated"):
        resize_with_pad(_img(1, 1000))


def test_float_image_end_to_end():
    f = np.random.default_rng(3).random((480, 640, 3))
    np.testing.assert_array_equal(prepare_image(f), resize_with_pad((255 * f).astype(np.uint8)))


def test_uint8_to_model():
    u8 = np.array([0, 1, 127, 128, 255], np.uint8)
    x = uint8_to_model(u8)
    assert x.dtype == np.float32
    np.testing.assert_array_equal(x, u8.astype(np.float32) / 255.0 * 2.0 - 1.0)
    assert x[0] == -1.0 and x[-1] == 1.0
    out = np.full(5, 7.0, np.float32)
    assert uint8_to_model(u8, out=out) is out
    np.testing.assert_array_equal(out, x)
    with pytest.raises(InputError):
        uint8_to_model(np.zeros(3, np.float32))
