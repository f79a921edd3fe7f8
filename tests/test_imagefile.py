"""Decoding: every kind of file ends as upright RGB or a clear ImageReadError."""

import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from guiapp.core.errors import ImageReadError
from guiapp.core.data.imagefile import open_rgb


def test_exif_rotated_jpeg_comes_out_upright(tmp_path):
    # Stored landscape 40x20 with the left half white; EXIF 6 = rotate 90 CW for display.
    arr = np.zeros((20, 40, 3), np.uint8)
    arr[:, :20] = 255
    img = Image.fromarray(arr)
    exif = Image.Exif()
    exif[0x0112] = 6
    p = tmp_path / "rotated.jpg"
    img.save(p, exif=exif, quality=95)
    out = np.asarray(open_rgb(p))
    assert out.shape == (40, 20, 3)  # portrait after rotation
    assert out[:15].mean() > 200 and out[25:].mean() < 50  # the white half is now on top


def test_rgba_is_composited_on_black(tmp_path):
    arr = np.zeros((4, 4, 4), np.uint8)
    arr[..., :3] = 200
    arr[..., 3] = 128  # half transparent
    p = tmp_path / "a.png"
    Image.fromarray(arr, "RGBA").save(p)
    out = np.asarray(open_rgb(p))
    assert out.shape == (4, 4, 3)
    assert abs(int(out[0, 0, 0]) - 100) <= 1  # 200 * 128/255 over black


def test_la_and_palette_with_transparency(tmp_path):
    la = Image.new("LA", (3, 3), (255, 0))  # fully transparent white
    la.save(tmp_path / "la.png")
    assert np.asarray(open_rgb(tmp_path / "la.png")).max() == 0
    pal = Image.new("P", (3, 3), 1)
    pal.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    pal.save(tmp_path / "p.png")
    np.testing.assert_array_equal(np.asarray(open_rgb(tmp_path / "p.png"))[0, 0], [10, 200, 30])
    pal.info["transparency"] = 1
    pal.save(tmp_path / "pt.png", transparency=1)
    assert np.asarray(open_rgb(tmp_path / "pt.png")).max() == 0


def test_16bit_png_maps_to_8bit(tmp_path):
    arr = np.full((3, 3), 65535, np.uint16)
    arr[0, 0] = 257 * 100
    p = tmp_path / "deep.png"
    Image.fromarray(arr).save(p)
    out = np.asarray(open_rgb(p))
    assert out[1, 1].tolist() == [255, 255, 255] and out[0, 0].tolist() == [100, 100, 100]


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    p = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (8, 8), (0, 255, 255, 0)).save(p)  # pure red in CMYK
    out = np.asarray(open_rgb(p)).astype(int)
    assert out.shape == (8, 8, 3)
    assert out[4, 4, 0] > 200 and out[4, 4, 1] < 60 and out[4, 4, 2] < 60


def test_animated_gif_gives_first_frame(tmp_path):
    frames = [Image.new("RGB", (4, 4), c) for c in ((255, 0, 0), (0, 0, 255))]
    p = tmp_path / "anim.gif"
    frames[0].save(p, save_all=True, append_images=frames[1:])
    out = np.asarray(open_rgb(p))
    assert out[0, 0, 0] > 200 and out[0, 0, 2] < 50


def _png_declaring(path, width, height):
    Image.new("L", (1, 1)).save(path)
    data = bytearray(path.read_bytes())
    ihdr = data.index(b"IHDR")
    data[ihdr + 4 : ihdr + 12] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[ihdr : ihdr + 17])) & 0xFFFFFFFF
    data[ihdr + 17 : ihdr + 21] = struct.pack(">I", crc)
    path.write_bytes(bytes(data))


def test_decompression_bomb_is_refused_without_decoding(tmp_path):
    p = tmp_path / "bomb.png"
    _png_declaring(p, 30000, 30000)
    with pytest.raises(ImageReadError, match="900 MP.*not decoded"):
        open_rgb(p)
    _png_declaring(p, 12000, 9000)  # 108 MP: under Pillow's error threshold, over ours
    with pytest.raises(ImageReadError, match="12000x9000.*not decoded"):
        open_rgb(p)


def test_broken_files_raise_image_read_errors(tmp_path):
    good = tmp_path / "good.jpg"
    Image.new("RGB", (64, 64), (9, 9, 9)).save(good)
    cases = {
        "empty.jpg": b"",
        "text.png": b"this is not an image\n" * 10,
        "truncated.jpg": good.read_bytes()[: len(good.read_bytes()) // 2],
    }
    png = tmp_path / "crc.png"
    Image.new("RGB", (8, 8)).save(png)
    data = bytearray(png.read_bytes())
    data[data.index(b"IHDR") + 14] ^= 0xFF  # header changed, checksum not
    cases["crc.png"] = bytes(data)
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(ImageReadError) as err:
            open_rgb(tmp_path / name)
        assert name in str(err.value)
    with pytest.raises(ImageReadError, match="not found"):
        open_rgb(tmp_path / "missing.png")
