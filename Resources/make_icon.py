#!/usr/bin/env python3
"""Draw the DisAnatDetect icon: an axial brain slice with one detected lesion.

Writes a 128x128 RGBA PNG to ``DisAnatDetect.png`` (extension icon) and
``DisAnatDetect/Resources/Icons/DisAnatDetect.png`` (module icon).

The drawing is fully deterministic: pure geometry, no random numbers. It is
rendered at 8x the final size and downsampled, which gives smooth edges.

Usage, from anywhere:

    python3 Resources/make_icon.py [--size 128] [--preview preview.png]
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from PIL import Image, ImageChops, ImageDraw, ImageFilter

ROOT = Path(__file__).resolve().parent.parent
OUTPUTS = (
    ROOT / "DisAnatDetect.png",
    ROOT / "DisAnatDetect" / "Resources" / "Icons" / "DisAnatDetect.png",
)

SUPERSAMPLE = 8

# Palette
BG_TOP = (40, 52, 72)
BG_BOTTOM = (17, 23, 33)
BG_EDGE = (74, 90, 116)
GREY_MATTER = (150, 158, 172)
WHITE_MATTER = (226, 230, 236)
SULCUS = (58, 66, 82)
CSF = (42, 50, 66)
LESION_RIM = (226, 54, 24)
LESION_CORE = (255, 112, 44)
LESION_HOT = (255, 196, 120)
CONTOUR = (255, 214, 102)


# --------------------------------------------------------------------------- geometry
class Canvas:
    """Unit square [0, 1]^2 mapped onto a supersampled pixel canvas (y downwards)."""

    def __init__(self, size: int):
        self.size = size
        self.px = size * SUPERSAMPLE

    def xy(self, x: float, y: float) -> tuple[float, float]:
        return (x * self.px, y * self.px)

    def pts(self, points):
        return [self.xy(x, y) for x, y in points]

    def w(self, width: float) -> int:
        """A line width given in final-size pixels."""
        return max(1, round(width * SUPERSAMPLE))


CX, CY = 0.5, 0.515            # centre of the brain
HALF_W, HALF_H = 0.345, 0.415  # half width and half height of the slice

# Sulci of the right hemisphere, as angles from the frontal pole (radians,
# clockwise); the left hemisphere mirrors them.
SULCI = (0.30, 0.58, 0.86, 1.14, 1.42, 1.72, 2.02, 2.32, 2.62, 2.88)


def _gauss(d: float, w: float) -> float:
    return math.exp(-((d / w) ** 2))


def _wrap(a: float) -> float:
    return (a + math.pi) % (2 * math.pi) - math.pi


def outer_radius(theta: float) -> float:
    """Radius of the brain surface at angle theta (0 = frontal pole, clockwise)."""
    s, c = math.sin(theta), math.cos(theta)
    a = HALF_W * (1.0 - 0.07 * c)  # frontal lobes a little narrower than parietal
    b = HALF_H
    r = 1.0 / math.sqrt((s / a) ** 2 + (c / b) ** 2)
    # the interhemispheric fissure notches the outline front and back
    r *= 1.0 - 0.075 * _gauss(_wrap(theta), 0.10) - 0.06 * _gauss(_wrap(theta - math.pi), 0.10)
    # small dips where sulci open onto the surface
    for t in SULCI:
        for m in (t, -t):
            r *= 1.0 - 0.018 * _gauss(_wrap(theta - m), 0.045)
    return r


def white_matter_radius(theta: float) -> float:
    """White-matter boundary: fingers reach into each gyrus, retreat at each sulcus."""
    r = outer_radius(theta)
    ang = abs(_wrap(theta))  # mirror the left hemisphere onto the right
    nearest = min(abs(ang - t) for t in SULCI)
    g = 1.0 - _gauss(nearest, 0.075)  # 0 at a sulcus, ~1 over a gyral crown
    frac = 0.72 + 0.15 * g
    # thinner mantle towards the poles, where the fissure cuts in
    frac -= 0.10 * (_gauss(_wrap(theta), 0.22) + _gauss(_wrap(theta - math.pi), 0.22))
    return r * frac


def polar_shape(radius, n: int = 1440):
    pts = []
    for i in range(n):
        t = 2 * math.pi * i / n
        r = radius(t)
        pts.append((CX + r * math.sin(t), CY - r * math.cos(t)))
    return pts


def polar_point(theta: float, r: float):
    return (CX + r * math.sin(theta), CY - r * math.cos(theta))


def scaled(points, f: float, cx: float = CX, cy: float = CY, dx: float = 0.0, dy: float = 0.0):
    return [(cx + (x - cx) * f + dx, cy + (y - cy) * f + dy) for x, y in points]


def bezier(p0, p1, p2, p3, n: int = 40):
    out = []
    for i in range(n + 1):
        t = i / n
        u = 1 - t
        out.append(
            (
                u ** 3 * p0[0] + 3 * u * u * t * p1[0] + 3 * u * t * t * p2[0] + t ** 3 * p3[0],
                u ** 3 * p0[1] + 3 * u * u * t * p1[1] + 3 * u * t * t * p2[1] + t ** 3 * p3[1],
            )
        )
    return out


def dashed(points, dash: float, gap: float, phase: float = 0.0):
    """Split a polyline into dash segments (lengths in unit coordinates)."""
    segments, current = [], []
    period = dash + gap
    pos = phase % period
    for (x0, y0), (x1, y1) in zip(points[:-1], points[1:]):
        seg = math.hypot(x1 - x0, y1 - y0)
        done = 0.0
        while done < seg:
            in_dash = pos < dash
            left = (dash - pos) if in_dash else (period - pos)
            step = min(left, seg - done)
            a = done / seg
            b = (done + step) / seg
            pa = (x0 + (x1 - x0) * a, y0 + (y1 - y0) * a)
            pb = (x0 + (x1 - x0) * b, y0 + (y1 - y0) * b)
            if in_dash:
                if not current:
                    current.append(pa)
                current.append(pb)
            elif current:
                segments.append(current)
                current = []
            done += step
            pos = (pos + step) % period
            if pos == 0.0 and current:
                segments.append(current)
                current = []
    if current:
        segments.append(current)
    return [s for s in segments if len(s) >= 2]


# --------------------------------------------------------------------------- layers
def rounded_mask(cv: Canvas, margin: float, radius: float) -> Image.Image:
    mask = Image.new("L", (cv.px, cv.px), 0)
    d = ImageDraw.Draw(mask)
    m = margin * cv.px
    d.rounded_rectangle([m, m, cv.px - m - 1, cv.px - m - 1], radius=radius * cv.px, fill=255)
    return mask


def background(cv: Canvas) -> Image.Image:
    grad = Image.new("RGBA", (1, cv.px))
    for y in range(cv.px):
        t = y / (cv.px - 1)
        grad.putpixel((0, y), tuple(round(a + (b - a) * t) for a, b in zip(BG_TOP, BG_BOTTOM)) + (255,))
    grad = grad.resize((cv.px, cv.px))
    outer = rounded_mask(cv, 0.03, 0.19)
    inner = rounded_mask(cv, 0.03 + 1.2 / cv.size, 0.19 - 1.2 / cv.size)
    bg = Image.new("RGBA", (cv.px, cv.px), (0, 0, 0, 0))
    bg.paste(grad, (0, 0), inner)
    edge = Image.new("RGBA", (cv.px, cv.px), BG_EDGE + (255,))
    bg.paste(edge, (0, 0), ImageChops.subtract(outer, inner))
    return bg


def _round_line(d: ImageDraw.ImageDraw, cv: Canvas, pts, colour, width: float) -> None:
    d.line(cv.pts(pts), fill=colour, width=cv.w(width), joint="curve")
    rad = cv.w(width) / 2
    for px, py in (pts[0], pts[-1]):
        x, y = cv.xy(px, py)
        d.ellipse([x - rad, y - rad, x + rad, y + rad], fill=colour)


def brain(cv: Canvas) -> Image.Image:
    layer = Image.new("RGBA", (cv.px, cv.px), (0, 0, 0, 0))
    d = ImageDraw.Draw(layer)

    # Cortex (grey matter) and the white matter with its gyral fingers.
    d.polygon(cv.pts(polar_shape(outer_radius)), fill=GREY_MATTER + (255,))
    d.polygon(cv.pts(polar_shape(white_matter_radius)), fill=WHITE_MATTER + (255,))

    # Sulci: from the surface down to the white-matter base, gently curved.
    for side in (1, -1):
        for k, t in enumerate(SULCI):
            th = side * t
            r0 = outer_radius(th)
            bend = 0.035 * (1 if k % 2 else -1) * side
            p0 = polar_point(th, r0 * 1.01)
            p1 = polar_point(th + bend * 0.3, r0 * 0.90)
            p2 = polar_point(th + bend, r0 * 0.82)
            p3 = polar_point(th + bend * 0.8, r0 * 0.74)
            _round_line(d, cv, bezier(p0, p1, p2, p3), SULCUS + (255,), 1.5)

    # Lateral ventricles: two slim crescents, closest to the midline in the
    # middle and diverging towards the frontal and occipital horns.
    for side in (-1, 1):
        horn = bezier((CX + side * 0.058, CY - 0.100), (CX + side * 0.016, CY - 0.050),
                      (CX + side * 0.014, CY + 0.040), (CX + side * 0.066, CY + 0.105), 60)
        _round_line(d, cv, horn, CSF + (255,), 3.0)

    # Interhemispheric fissure: a dark cleft lined with cortex, so the
    # hemispheres read as two.
    top = CY - outer_radius(0.0) - 0.01
    bottom = CY + outer_radius(math.pi) + 0.01
    d.line(cv.pts([(CX, top + 0.03), (CX, CY - 0.10)]), fill=GREY_MATTER + (255,), width=cv.w(5.0))
    d.line(cv.pts([(CX, CY + 0.11), (CX, bottom - 0.03)]), fill=GREY_MATTER + (255,), width=cv.w(5.0))
    d.line(cv.pts([(CX, top), (CX, CY - 0.095)]), fill=SULCUS + (255,), width=cv.w(1.6))
    d.line(cv.pts([(CX, CY + 0.105), (CX, bottom)]), fill=SULCUS + (255,), width=cv.w(1.6))
    return layer


LESION_C = (CX + 0.168, CY - 0.118)


def lesion(cv: Canvas) -> Image.Image:
    layer = Image.new("RGBA", (cv.px, cv.px), (0, 0, 0, 0))

    # Soft glow under the lesion.
    glow = Image.new("RGBA", (cv.px, cv.px), (0, 0, 0, 0))
    gd = ImageDraw.Draw(glow)
    gx, gy = cv.xy(*LESION_C)
    gr = 0.060 * cv.px
    gd.ellipse([gx - gr, gy - gr, gx + gr, gy + gr], fill=LESION_CORE + (120,))
    glow = glow.filter(ImageFilter.GaussianBlur(0.018 * cv.px))
    layer = Image.alpha_composite(layer, glow)

    d = ImageDraw.Draw(layer)
    # An irregular (but deterministic) blob: a radius modulated by low harmonics.
    def blob(r0: float, k: float = 1.0):
        out = []
        for i in range(181):
            a = 2 * math.pi * i / 180
            r = r0 * (1 + k * (0.13 * math.sin(2 * a + 0.9) + 0.08 * math.sin(3 * a + 2.1) + 0.04 * math.cos(5 * a)))
            out.append((LESION_C[0] + r * math.cos(a), LESION_C[1] + r * math.sin(a) * 0.92))
        return out

    d.polygon(cv.pts(blob(0.055)), fill=LESION_RIM + (255,))
    d.polygon(cv.pts(scaled(blob(0.040, 0.8), 1.0, *LESION_C, dx=-0.004, dy=-0.004)), fill=LESION_CORE + (255,))
    hot = scaled(blob(0.017, 0.5), 1.0, *LESION_C, dx=-0.012, dy=-0.012)
    d.polygon(cv.pts(hot), fill=LESION_HOT + (255,))
    return layer


def contour(cv: Canvas) -> Image.Image:
    layer = Image.new("RGBA", (cv.px, cv.px), (0, 0, 0, 0))
    d = ImageDraw.Draw(layer)
    r = 0.092
    ring = []
    for i in range(721):
        a = 2 * math.pi * i / 720
        rr = r * (1 + 0.06 * math.sin(2 * a + 0.9) + 0.03 * math.sin(3 * a + 2.1))
        ring.append((LESION_C[0] + rr * math.cos(a), LESION_C[1] + rr * math.sin(a) * 0.95))
    circumference = sum(math.hypot(b[0] - a[0], b[1] - a[1]) for a, b in zip(ring[:-1], ring[1:]))
    n_dashes = 10
    period = circumference / n_dashes
    # dark halo first, so the dashes stay visible over both white matter and background
    for colour, width in (((16, 20, 28, 200), 3.4), (CONTOUR + (255,), 1.8)):
        for seg in dashed(ring, dash=period * 0.58, gap=period * 0.42, phase=period * 0.2):
            d.line(cv.pts(seg), fill=colour, width=cv.w(width), joint="curve")
            # round caps
            for px, py in (seg[0], seg[-1]):
                cx, cy = cv.xy(px, py)
                rad = cv.w(width) / 2
                d.ellipse([cx - rad, cy - rad, cx + rad, cy + rad], fill=colour)
    return layer


def make_icon(size: int = 128) -> Image.Image:
    cv = Canvas(size)
    img = background(cv)
    # subtle drop shadow under the brain
    shadow = Image.new("RGBA", (cv.px, cv.px), (0, 0, 0, 0))
    sd = ImageDraw.Draw(shadow)
    sd.polygon(cv.pts(scaled(polar_shape(outer_radius), 1.0, dy=0.012)), fill=(0, 0, 0, 140))
    shadow = shadow.filter(ImageFilter.GaussianBlur(0.02 * cv.px))
    img = Image.alpha_composite(img, shadow)
    img = Image.alpha_composite(img, brain(cv))
    img = Image.alpha_composite(img, lesion(cv))
    img = Image.alpha_composite(img, contour(cv))
    # keep everything inside the rounded square
    alpha = ImageChops.multiply(img.getchannel("A"), rounded_mask(cv, 0.03, 0.19))
    img.putalpha(alpha)
    return img.resize((size, size), Image.LANCZOS)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128, help="icon size in pixels (default 128)")
    parser.add_argument("--preview", type=Path, help="also write an enlarged (4x) preview here")
    args = parser.parse_args(argv)

    icon = make_icon(args.size)
    for path in OUTPUTS:
        path.parent.mkdir(parents=True, exist_ok=True)
        icon.save(path, format="PNG", optimize=True)
        print(f"wrote {path.relative_to(ROOT)} ({icon.size[0]}x{icon.size[1]} {icon.mode})")
    if args.preview:
        icon.resize((args.size * 4, args.size * 4), Image.NEAREST).save(args.preview)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
