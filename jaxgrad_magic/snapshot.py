"""A still picture of the descent panel, for renderers that have no kernel.

GitHub, nbviewer, ``nbconvert --to html`` and a notebook reopened without its kernel cannot
draw a widget. The panel's display bundle therefore carries, beside the widget view, one PNG:
the readout (function, optimizer, step, loss, gradient norm, parameters) above the plots the
panel shows. :func:`compose` draws it from the plots' own PNGs with Pillow; the text is set in
DejaVu Sans, the font matplotlib ships, so ``‖∇f‖`` and names in any script come out.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Sequence

from PIL import Image, ImageDraw, ImageFont

PAD = 8
"""Pixels around the readout and between the pictures."""

_INK = (33, 33, 33)
_MUTED = (97, 97, 97)
_RULE = (224, 224, 224)


@functools.lru_cache(maxsize=4)
def _font(size: int, bold: bool = False) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """DejaVu Sans from matplotlib at ``size`` pixels (Pillow's own bitmap font if that fails)."""
    try:
        from matplotlib import font_manager

        weight = "bold" if bold else "normal"
        path = font_manager.findfont(font_manager.FontProperties(family="DejaVu Sans", weight=weight))
        return ImageFont.truetype(path, size)
    except (ImportError, OSError):  # no FreeType in this Pillow: the bitmap font still reads
        return ImageFont.load_default()


def compose(heading: str, lines: Sequence[str], pictures: Sequence[bytes]) -> bytes:
    """The panel as one PNG: ``heading`` and ``lines`` above ``pictures`` side by side.

    Args:
      heading: the first line, in bold (e.g. ``Gradient descent on f over x, y``).
      lines: the readout, one string per line.
      pictures: PNG images to set side by side under the text (empty ones are skipped).

    Returns:
      The PNG's bytes.
    """
    images = [Image.open(io.BytesIO(png)).convert("RGB") for png in pictures if png]
    bold, regular = _font(15, bold=True), _font(13)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    rows = [(heading, bold), *((line, regular) for line in lines)]
    heights = [_line_height(probe, text, font) for text, font in rows]
    text_width = max(probe.textbbox((0, 0), text, font=font)[2] for text, font in rows)
    plots_width = sum(im.width for im in images) + PAD * max(len(images) - 1, 0)
    width = max(text_width, plots_width) + 2 * PAD
    text_height = sum(heights) + 2 * PAD
    height = text_height + (max(im.height for im in images) + PAD if images else 0)

    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    y = PAD
    for (text, font), h in zip(rows, heights, strict=True):
        draw.text((PAD, y), text, font=font, fill=_INK if font is bold else _MUTED)
        y += h
    if images:
        draw.line([(PAD, text_height - 1), (width - PAD, text_height - 1)], fill=_RULE)
    x = PAD
    for im in images:
        canvas.paste(im, (x, text_height))
        x += im.width + PAD
    out = io.BytesIO()
    canvas.save(out, format="PNG", optimize=False, compress_level=6)
    return out.getvalue()


def _line_height(draw: ImageDraw.ImageDraw, text: str, font: ImageFont.FreeTypeFont | ImageFont.ImageFont) -> int:
    # The box of "Ag" as well as the text's own: every line of one font gets one height.
    return max(draw.textbbox((0, 0), "Ag" + text, font=font)[3], 1) + 4
