"""Render a scene graph to a PIL image, deterministically (same scene, same bytes).

The image is a 3x3 grid of cells on the scene type's background color; a group of `count`
objects fills fixed slots of its cell. Each class has its own silhouette (drawn in the group's
color, with dark details), drawn 4x larger and box-filtered down, which keeps edges smooth and the
output identical across runs. With a 32 px vision patch at 96 px, one patch sees one cell.
"""

from __future__ import annotations

import io
from typing import Callable

from PIL import Image, ImageDraw

from rlhfv_ray.scene_world.scene import Scene
from rlhfv_ray.scene_world.spec import COLORS, DETAIL_RGB, SCENE_TYPE_BY_NAME

SUPERSAMPLE = 4
# Slot centers (fractions of the cell) by count; the glyph box is GLYPH_FRACTION of the cell.
SLOTS: dict[int, tuple[tuple[float, float], ...]] = {
    1: ((0.5, 0.5),),
    2: ((0.25, 0.5), (0.75, 0.5)),
    3: ((0.25, 0.25), (0.75, 0.25), (0.5, 0.75)),
    4: ((0.25, 0.25), (0.75, 0.25), (0.25, 0.75), (0.75, 0.75)),
}
GLYPH_FRACTION = 0.44

Box = tuple[float, float, float]  # (left, top, size) in pixels
GlyphFn = Callable[[ImageDraw.ImageDraw, Callable, tuple, tuple], None]


def _mapper(box: Box) -> Callable[[float, float], tuple[float, float]]:
    left, top, size = box
    return lambda x, y: (left + x * size, top + y * size)


def _rect(p, x0, y0, x1, y1):
    return [p(x0, y0), p(x1, y1)]


def _car(d, p, fill, detail):
    d.rectangle(_rect(p, 0.0, 0.3, 1.0, 0.72), fill=fill)
    d.rectangle(_rect(p, 0.2, 0.1, 0.8, 0.3), fill=fill)
    d.ellipse(_rect(p, 0.1, 0.6, 0.38, 0.88), fill=detail)
    d.ellipse(_rect(p, 0.62, 0.6, 0.9, 0.88), fill=detail)


def _bus(d, p, fill, detail):
    d.rectangle(_rect(p, 0.0, 0.1, 1.0, 0.85), fill=fill)
    for x in (0.08, 0.4, 0.72):
        d.rectangle(_rect(p, x, 0.22, x + 0.2, 0.45), fill=detail)


def _sign(d, p, fill, detail):
    d.rectangle(_rect(p, 0.43, 0.5, 0.57, 1.0), fill=detail)
    d.ellipse(_rect(p, 0.15, 0.0, 0.85, 0.7), fill=fill)


def _cup(d, p, fill, detail):
    d.ellipse(_rect(p, 0.5, 0.3, 0.95, 0.7), outline=fill, width=max(1, int(p(0.12, 0)[0] - p(0, 0)[0])))
    d.rectangle(_rect(p, 0.08, 0.15, 0.68, 0.95), fill=fill)


def _plate(d, p, fill, detail):
    d.ellipse(_rect(p, 0.0, 0.28, 1.0, 0.78), fill=fill)
    d.ellipse(_rect(p, 0.25, 0.4, 0.75, 0.66), fill=detail)


def _bottle(d, p, fill, detail):
    d.rectangle(_rect(p, 0.4, 0.0, 0.6, 0.35), fill=fill)
    d.rectangle(_rect(p, 0.22, 0.32, 0.78, 1.0), fill=fill)
    d.rectangle(_rect(p, 0.22, 0.55, 0.78, 0.7), fill=detail)


def _boat(d, p, fill, detail):
    d.polygon([p(0.0, 0.65), p(1.0, 0.65), p(0.8, 0.95), p(0.2, 0.95)], fill=fill)
    d.rectangle(_rect(p, 0.47, 0.0, 0.55, 0.65), fill=detail)
    d.polygon([p(0.55, 0.05), p(0.55, 0.55), p(0.95, 0.55)], fill=fill)


def _umbrella(d, p, fill, detail):
    d.pieslice(_rect(p, 0.0, 0.05, 1.0, 0.95), 180, 360, fill=fill)
    d.rectangle(_rect(p, 0.45, 0.5, 0.55, 1.0), fill=detail)


def _ball(d, p, fill, detail):
    d.ellipse(_rect(p, 0.08, 0.08, 0.92, 0.92), fill=fill)


def _chair(d, p, fill, detail):
    d.rectangle(_rect(p, 0.15, 0.0, 0.32, 1.0), fill=fill)
    d.rectangle(_rect(p, 0.15, 0.5, 0.85, 0.64), fill=fill)
    d.rectangle(_rect(p, 0.7, 0.5, 0.85, 1.0), fill=fill)


def _lamp(d, p, fill, detail):
    d.polygon([p(0.25, 0.0), p(0.75, 0.0), p(1.0, 0.45), p(0.0, 0.45)], fill=fill)
    d.rectangle(_rect(p, 0.45, 0.45, 0.55, 0.9), fill=detail)
    d.rectangle(_rect(p, 0.2, 0.88, 0.8, 1.0), fill=detail)


def _book(d, p, fill, detail):
    d.rectangle(_rect(p, 0.12, 0.0, 0.88, 1.0), fill=fill)
    d.rectangle(_rect(p, 0.12, 0.0, 0.28, 1.0), fill=detail)


def _kite(d, p, fill, detail):
    d.polygon([p(0.5, 0.0), p(0.9, 0.35), p(0.5, 0.75), p(0.1, 0.35)], fill=fill)
    d.line([p(0.5, 0.75), p(0.35, 0.9), p(0.55, 1.0)], fill=detail, width=SUPERSAMPLE)


def _bench(d, p, fill, detail):
    d.rectangle(_rect(p, 0.0, 0.2, 1.0, 0.35), fill=fill)
    d.rectangle(_rect(p, 0.0, 0.48, 1.0, 0.62), fill=fill)
    d.rectangle(_rect(p, 0.08, 0.62, 0.2, 0.95), fill=detail)
    d.rectangle(_rect(p, 0.8, 0.62, 0.92, 0.95), fill=detail)


def _tree(d, p, fill, detail):
    d.rectangle(_rect(p, 0.42, 0.65, 0.58, 1.0), fill=detail)
    d.polygon([p(0.5, 0.0), p(0.95, 0.72), p(0.05, 0.72)], fill=fill)


GLYPHS: dict[str, GlyphFn] = {
    "car": _car, "bus": _bus, "sign": _sign, "cup": _cup, "plate": _plate, "bottle": _bottle,
    "boat": _boat, "umbrella": _umbrella, "ball": _ball, "chair": _chair, "lamp": _lamp,
    "book": _book, "kite": _kite, "bench": _bench, "tree": _tree,
}


def render_scene(scene: Scene, image_size: int = 96) -> Image.Image:
    """Draw `scene` as an RGB image of `image_size` pixels square."""
    big = image_size * SUPERSAMPLE
    cell = big / 3
    image = Image.new("RGB", (big, big), SCENE_TYPE_BY_NAME[scene.scene_type].background)
    draw = ImageDraw.Draw(image)
    glyph_size = cell * GLYPH_FRACTION
    for group in scene.groups:
        glyph = GLYPHS[group.cls]
        for fx, fy in SLOTS[group.count]:
            cx = (group.col + fx) * cell
            cy = (group.row + fy) * cell
            box = (cx - glyph_size / 2, cy - glyph_size / 2, glyph_size)
            glyph(draw, _mapper(box), COLORS[group.color], DETAIL_RGB)
    return image.resize((image_size, image_size), Image.Resampling.BOX)


def image_to_png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    # optimize=False and no metadata keep the bytes a pure function of the pixels.
    image.save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()
