"""Pillow rendering of one pedestrian image: street background, a figure, occluder, camera effects.

The figure is laid out in body units (fractions of its height ``hf``) so proportions stay the same
at every image size. Everything random about an image is in ``Variation`` or drawn from the RNG
seeded by ``Variation.seed``, so an image is a pure function of (identity, variation, size).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageChops, ImageDraw

from training.synthetic.attributes import (
    COLOURS,
    HAIR_COLOURS,
    RGB,
    SHORT_SLEEVED,
    SKIN_TONES,
    Identity,
)

VIEWS = ("front", "back", "side")


@dataclass(frozen=True)
class Variation:
    """What differs between two images of the same person."""

    view: str  # front | back | side
    facing: int  # +1 faces screen-right, -1 screen-left (side view only)
    scale: float  # figure height as a fraction of min(H, 3W)
    x_shift: float  # figure centre offset, fraction of the width
    y_place: float  # 0 = figure at the top, 1 = at the bottom of the free space
    arm_angles: tuple[float, float]  # degrees away from the body (front/back) or forward (side)
    elbow_bend: float  # degrees
    stride: float  # leg swing in degrees
    occluder: str  # none | bottom | pole | edge
    occluder_side: int  # -1 left, +1 right of the screen, for edge occluders
    downscale: float  # 1 for none; 1.3-3 blurs like a soft or low-resolution camera
    jpeg_quality: int
    gain: tuple[float, float, float]  # per-channel illumination and colour cast
    noise: float  # sensor noise std in grey levels
    seed: int  # clutter, colour jitter and noise


def bag_screen_side(identity: Identity, view: str) -> int:
    """Screen side (-1 left, +1 right) of a side-carried bag: the person's right is screen-left
    when they face the camera."""
    own = 1 if identity.bag_side == "right" else -1
    return -own if view == "front" else own


def sample_variation(rng: random.Random, identity: Identity) -> Variation:
    view = rng.choices(VIEWS, weights=(0.4, 0.35, 0.25))[0]
    occluder = rng.choices(("none", "bottom", "pole", "edge"), weights=(0.7, 0.1, 0.1, 0.1))[0]
    side = rng.choice((-1, 1))
    if identity.bag in ("handbag", "shoulder bag") and view != "side":
        side = -bag_screen_side(identity, view)  # keep the bag visible: captions mention it
    cast = rng.uniform(-0.08, 0.08), rng.uniform(-0.08, 0.08), rng.uniform(-0.08, 0.08)
    light = rng.uniform(0.7, 1.25)
    spread = 25 if view == "side" else 7
    return Variation(
        view=view,
        facing=rng.choice((-1, 1)),
        scale=rng.uniform(0.74, 0.95),
        x_shift=rng.uniform(-0.08, 0.08),
        y_place=rng.uniform(0.15, 0.85),
        arm_angles=(rng.uniform(2, spread), rng.uniform(2, spread)),
        elbow_bend=rng.uniform(0, 30),
        stride=rng.uniform(6, 20) if view == "side" else rng.uniform(0, 4),
        occluder=occluder,
        occluder_side=side,
        downscale=rng.uniform(1.3, 3.0) if rng.random() < 0.45 else 1.0,
        jpeg_quality=rng.randint(55, 95),
        gain=(light * (1 + cast[0]), light * (1 + cast[1]), light * (1 + cast[2])),
        noise=rng.uniform(1.5, 7.0),
        seed=rng.getrandbits(63),
    )


def hidden_items(variation: Variation) -> frozenset[str]:
    """Items an occluder hides completely, so captions leave them out."""
    return frozenset({"shoes"}) if variation.occluder == "bottom" else frozenset()


def _clip(v: float) -> int:
    return 0 if v < 0 else 255 if v > 255 else int(v)


def _shade(rgb: RGB, f: float) -> RGB:
    return (_clip(rgb[0] * f), _clip(rgb[1] * f), _clip(rgb[2] * f))


def _jitter(rgb: RGB, rng: random.Random, amount: int = 14) -> RGB:
    f = rng.uniform(0.9, 1.08)
    return tuple(_clip(c * f + rng.randint(-amount, amount)) for c in rgb)  # type: ignore[return-value]


def _muted(rng: random.Random) -> RGB:
    """A desaturated street colour (walls, asphalt, cars) that rarely reads as a named colour."""
    base = [rng.randint(40, 220) for _ in range(3)]
    grey = sum(base) / 3
    keep = rng.uniform(0.1, 0.45)
    return tuple(_clip(grey + (c - grey) * keep) for c in base)  # type: ignore[return-value]


class _Canvas:
    """ImageDraw in body units: (u, v) is an offset from the top centre, in figure heights."""

    def __init__(self, img: Image.Image, cx: float, top: float, hf: float) -> None:
        self.draw = ImageDraw.Draw(img)
        self.img = img
        self.cx, self.top, self.hf = cx, top, hf

    def p(self, u: float, v: float) -> tuple[float, float]:
        return (self.cx + u * self.hf, self.top + v * self.hf)

    def ellipse(self, u: float, v: float, ru: float, rv: float, fill: RGB) -> None:
        x0, y0 = self.p(u - ru, v - rv)
        x1, y1 = self.p(u + ru, v + rv)
        self.draw.ellipse((x0, y0, max(x1, x0 + 1), max(y1, y0 + 1)), fill=fill)

    def chord(self, u: float, v: float, ru: float, rv: float, a0: float, a1: float, fill: RGB):
        x0, y0 = self.p(u - ru, v - rv)
        x1, y1 = self.p(u + ru, v + rv)
        self.draw.chord((x0, y0, x1, y1), a0, a1, fill=fill)

    def poly(self, pts: list[tuple[float, float]], fill: RGB) -> None:
        self.draw.polygon([self.p(u, v) for u, v in pts], fill=fill)

    def rect(
        self, u0: float, v0: float, u1: float, v1: float, fill: RGB, radius: float = 0
    ) -> None:
        x0, y0 = self.p(min(u0, u1), min(v0, v1))
        x1, y1 = self.p(max(u0, u1), max(v0, v1))
        box = (x0, y0, max(x1, x0 + 1), max(y1, y0 + 1))
        self.draw.rounded_rectangle(box, radius=radius * self.hf, fill=fill)

    def limb(self, a: tuple[float, float], b: tuple[float, float], wa: float, wb: float, fill: RGB):
        """A tapered segment with rounded ends, half-widths ``wa`` at ``a`` and ``wb`` at ``b``."""
        du, dv = b[0] - a[0], b[1] - a[1]
        n = math.hypot(du, dv) or 1.0
        nu, nv = -dv / n, du / n
        self.poly(
            [
                (a[0] + nu * wa, a[1] + nv * wa),
                (b[0] + nu * wb, b[1] + nv * wb),
                (b[0] - nu * wb, b[1] - nv * wb),
                (a[0] - nu * wa, a[1] - nv * wa),
            ],
            fill,
        )
        self.ellipse(b[0], b[1], wb, wb, fill)
        self.ellipse(a[0], a[1], wa, wa, fill)


def _lerp(a: tuple[float, float], b: tuple[float, float], t: float) -> tuple[float, float]:
    return (a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t)


@dataclass(frozen=True)
class _Body:
    """Body measurements in figure heights for one identity and view."""

    shoulder: float  # half-width (or half-depth in side view)
    waist: float
    hip: float
    leg_gap: float
    leg_w: float
    arm_w: float
    head_ru: float
    head_rv: float


def _body(identity: Identity, view: str) -> _Body:
    heavy = identity.build == "heavy"
    man = identity.gender == "man"
    shoulder = (0.112 if man else 0.097) + (0.022 if heavy else 0.0)
    waist = (0.088 if man else 0.072) + (0.03 if heavy else 0.0)
    hip = (0.09 if man else 0.098) + (0.028 if heavy else 0.0)
    if view == "side":
        shoulder, waist, hip = shoulder * 0.58, waist * 0.7, hip * 0.7
    return _Body(
        shoulder=shoulder,
        waist=waist,
        hip=hip,
        leg_gap=0.0 if view == "side" else hip * 0.5,
        leg_w=0.037 + (0.012 if heavy else 0.0),
        arm_w=0.027 + (0.008 if heavy else 0.0),
        head_ru=0.044 if man else 0.041,
        head_rv=0.058,
    )


class _Figure:
    """Draws one identity in one view; methods are drawn in back-to-front order by ``draw``."""

    def __init__(self, c: _Canvas, who: Identity, var: Variation, rng: random.Random) -> None:
        self.c, self.who, self.var = c, who, var
        self.b = _body(who, var.view)
        self.f = var.facing if var.view == "side" else 1
        self.skin = _jitter(SKIN_TONES[who.skin], rng, 6)
        self.hair = _jitter(HAIR_COLOURS[who.hair_colour], rng, 8) if who.hair_colour else None
        self.upper = _jitter(COLOURS[who.upper_colour], rng)
        self.second = _jitter(COLOURS[who.pattern_colour], rng) if who.pattern_colour else None
        self.lower = _jitter(COLOURS[who.lower_colour], rng)
        self.shoes = _jitter(COLOURS[who.shoes_colour], rng)
        self.bag = _jitter(COLOURS[who.bag_colour], rng) if who.bag_colour else None
        self.hat = _jitter(COLOURS[who.hat_colour], rng) if who.hat_colour else None
        self.torso_bottom = {"coat": 0.64, "jacket": 0.5, "hoodie": 0.5}.get(who.upper_type, 0.48)

    # ---- geometry -------------------------------------------------------------------------
    def torso_outline(self) -> list[tuple[float, float]]:
        """(v, half-width) pairs from shoulders to hem."""
        b = self.b
        shoulder = b.shoulder * (0.8 if self.who.upper_type == "vest" else 1.0)
        hem = b.hip * (1.25 if self.who.upper_type == "coat" else 1.0)
        return [
            (0.145, shoulder * 0.75),
            (0.165, shoulder),
            (0.32, b.waist),
            (0.46, b.hip),
            (self.torso_bottom, hem),
        ]

    def torso_poly(self) -> list[tuple[float, float]]:
        out = self.torso_outline()
        lean = 0.012 * self.f if self.var.view == "side" else 0.0
        right = [(hw + (lean if v < 0.3 else 0.0), v) for v, hw in out]
        left = [(-hw + (lean if v < 0.3 else 0.0), v) for v, hw in reversed(out)]
        return right + left

    def arm_points(self, side: int, angle: float) -> tuple[tuple[float, float], ...]:
        """Shoulder, elbow and hand of the arm on screen side ``side`` (side view: swing sign)."""
        b, var = self.b, self.var
        if var.view == "side":
            shoulder = (0.0, 0.175)
            a1 = math.radians(angle * side)
            a2 = a1 + math.radians(var.elbow_bend)  # elbows bend forward
            d1 = (math.sin(a1) * self.f, math.cos(a1))
            d2 = (math.sin(a2) * self.f, math.cos(a2))
        else:
            shoulder = (side * (b.shoulder - b.arm_w * 0.6), 0.175)
            a1 = math.radians(angle)
            a2 = a1 - math.radians(var.elbow_bend * 0.3)
            d1 = (math.sin(a1) * side, math.cos(a1))
            d2 = (math.sin(a2) * side, math.cos(a2))
        elbow = (shoulder[0] + d1[0] * 0.165, shoulder[1] + d1[1] * 0.165)
        hand = (elbow[0] + d2[0] * 0.15, elbow[1] + d2[1] * 0.15)
        return shoulder, elbow, hand

    def leg_points(self, side: int) -> tuple[tuple[float, float], ...]:
        b, var = self.b, self.var
        swing = math.radians(var.stride) * side
        hip = (side * b.leg_gap, 0.47)
        knee = (hip[0] + math.sin(swing) * 0.24 * self.f, hip[1] + math.cos(swing) * 0.24)
        back = var.view == "side" and side < 0
        shin = swing - (math.radians(var.stride) * 0.8 if back else 0.0)
        if var.view != "side":
            shin = -swing * 0.5
        ankle = (knee[0] + math.sin(shin) * 0.23 * self.f, knee[1] + math.cos(shin) * 0.23)
        return hip, knee, ankle

    # ---- parts ----------------------------------------------------------------------------
    def leg(self, side: int, darken: float = 1.0) -> None:
        c, b, who = self.c, self.b, self.who
        hip, knee, ankle = self.leg_points(side)
        skin, lower = _shade(self.skin, darken), _shade(self.lower, darken)
        wide = 1.1 if who.lower_type == "trousers" else 1.0
        bare = who.lower_type in ("shorts", "skirt")
        c.limb(hip, knee, b.leg_w * (1.0 if bare else wide), b.leg_w * 0.8, skin if bare else lower)
        c.limb(knee, ankle, b.leg_w * 0.8, b.leg_w * 0.62, skin if bare else lower)
        if who.lower_type == "shorts":
            end = _lerp(hip, knee, 0.75)
            c.limb(hip, end, b.leg_w * 1.25, b.leg_w * 1.1, lower)
        if who.lower_type == "jeans":  # a light outer seam is the one cue that tells jeans apart
            seam = _shade(lower, 1.35)
            off = b.leg_w * 0.55 * (side if self.var.view != "side" else 0)
            c.draw.line(
                [
                    c.p(hip[0] + off, hip[1] + 0.02),
                    c.p(knee[0] + off, knee[1]),
                    c.p(ankle[0] + off * 0.7, ankle[1] - 0.01),
                ],
                fill=seam,
                width=1,
            )
        foot_u = ankle[0] + (0.02 * self.f if self.var.view == "side" else 0.0)
        c.ellipse(
            foot_u,
            ankle[1] + 0.022,
            b.leg_w * (1.3 if self.var.view == "side" else 0.95),
            0.022,
            _shade(self.shoes, darken),
        )

    def pelvis(self) -> None:
        if self.who.lower_type == "skirt":
            return
        b = self.b
        self.c.poly(
            [(-b.hip, 0.44), (b.hip, 0.44), (b.hip * 0.9, 0.55), (-b.hip * 0.9, 0.55)], self.lower
        )

    def skirt(self) -> None:
        if self.who.lower_type != "skirt":
            return
        b = self.b
        flare = b.hip * (1.55 if self.var.view != "side" else 1.5)
        self.c.poly([(-b.hip, 0.44), (b.hip, 0.44), (flare, 0.72), (-flare, 0.72)], self.lower)

    def torso(self) -> None:
        c, who, view = self.c, self.who, self.var.view
        poly = self.torso_poly()
        c.poly(poly, self.upper)
        if self.second is not None:
            self.pattern(poly)
        dark = _shade(self.upper, 0.7)
        if view == "front":
            if who.upper_type in ("jacket", "coat"):
                c.rect(-0.004, 0.15, 0.004, self.torso_bottom, dark)
            if who.upper_type == "coat":
                for v in (0.24, 0.33, 0.42, 0.51):
                    c.ellipse(0.018, v, 0.006, 0.005, dark)
            if who.upper_type == "shirt":
                c.poly([(-0.03, 0.14), (0.0, 0.185), (-0.012, 0.19)], dark)
                c.poly([(0.03, 0.14), (0.0, 0.185), (0.012, 0.19)], dark)
            if who.upper_type == "hoodie":
                c.rect(-self.b.waist * 0.6, 0.38, self.b.waist * 0.6, 0.46, dark, 0.01)
        if who.upper_type == "hoodie" and view != "front":
            u = -0.03 * self.f if view == "side" else 0.0
            c.ellipse(u, 0.175, 0.05, 0.04, dark)
        if who.upper_type == "sweater":
            out = self.torso_outline()
            hw = out[-1][1]
            c.rect(-hw, self.torso_bottom - 0.025, hw, self.torso_bottom, dark)

    def pattern(self, poly: list[tuple[float, float]]) -> None:
        """Stripes or checks clipped to the torso, via a small mask the size of its bounding box."""
        c = self.c
        pts = [c.p(u, v) for u, v in poly]
        x0, y0 = (math.floor(min(p[i] for p in pts)) for i in (0, 1))
        x1, y1 = (math.ceil(max(p[i] for p in pts)) + 1 for i in (0, 1))
        size = (max(x1 - x0, 1), max(y1 - y0, 1))
        body = Image.new("L", size, 0)
        ImageDraw.Draw(body).polygon([(x - x0, y - y0) for x, y in pts], fill=255)
        marks = Image.new("L", size, 0)
        d = ImageDraw.Draw(marks)
        period = max(0.036 * c.hf, 4.0)
        thick = period * (0.5 if self.who.upper_pattern == "striped" else 0.3)
        y = 0.175 * c.hf + self.c.top - y0
        while y < size[1]:
            d.rectangle((0, y, size[0], y + thick - 1), fill=255)
            y += period
        if self.who.upper_pattern == "checked":
            x = (size[0] / 2) % period
            while x < size[0]:
                d.rectangle((x, 0, x + thick - 1, size[1]), fill=255)
                x += period
        mask = ImageChops.multiply(body, marks)
        c.img.paste(self.second, (x0, y0, x0 + size[0], y0 + size[1]), mask)

    def arm(self, side: int, angle: float, darken: float = 1.0) -> None:
        c, b, who = self.c, self.b, self.who
        shoulder, elbow, hand = self.arm_points(side, angle)
        skin, upper = _shade(self.skin, darken), _shade(self.upper, darken)
        w0, w1, w2 = b.arm_w * 1.15, b.arm_w * 0.9, b.arm_w * 0.75
        if who.upper_type == "vest":
            c.limb(shoulder, elbow, w0 * 0.9, w1, skin)
            c.limb(elbow, hand, w1, w2, skin)
        elif who.upper_type in SHORT_SLEEVED:
            c.limb(shoulder, elbow, w0 * 0.9, w1, skin)
            c.limb(elbow, hand, w1, w2, skin)
            c.limb(shoulder, _lerp(shoulder, elbow, 0.5), w0 * 1.05, w1 * 1.1, upper)
        else:
            c.limb(shoulder, elbow, w0, w1, upper)
            c.limb(elbow, _lerp(elbow, hand, 0.85), w1, w2, upper)
        c.ellipse(hand[0], hand[1] + 0.008, w2 * 0.95, w2 * 1.25, skin)

    def neck_and_head(self) -> None:
        c, b = self.c, self.b
        c.rect(-0.018, 0.1, 0.018, 0.16, _shade(self.skin, 0.9))
        c.ellipse(
            0.004 * self.f if self.var.view == "side" else 0, 0.066, b.head_ru, b.head_rv, self.skin
        )
        if self.var.view == "side":
            c.poly(
                [(0.04 * self.f, 0.06), (0.056 * self.f, 0.078), (0.038 * self.f, 0.083)],
                _shade(self.skin, 0.92),
            )

    def face(self) -> None:
        c, view = self.c, self.var.view
        eye = (40, 30, 28)
        if view == "front":
            for s in (-1, 1):
                c.ellipse(s * 0.016, 0.062, 0.0055, 0.004, eye)
            c.rect(-0.01, 0.092, 0.01, 0.095, _shade(self.skin, 0.7))
            if self.who.glasses:
                for s in (-1, 1):
                    x0, y0 = c.p(s * 0.016 - 0.012, 0.054)
                    x1, y1 = c.p(s * 0.016 + 0.012, 0.071)
                    c.draw.rectangle((x0, y0, x1, y1), outline=(15, 15, 15), width=1)
                c.draw.line([c.p(-0.004, 0.06), c.p(0.004, 0.06)], fill=(15, 15, 15))
        elif view == "side":
            c.ellipse(0.024 * self.f, 0.062, 0.005, 0.004, eye)
            if self.who.glasses:
                x0, y0 = c.p(0.024 * self.f - 0.012, 0.054)
                x1, y1 = c.p(0.024 * self.f + 0.012, 0.071)
                box = (min(x0, x1), y0, max(x0, x1), y1)
                c.draw.rectangle(box, outline=(15, 15, 15), width=1)
                c.draw.line(
                    [c.p(0.01 * self.f, 0.06), c.p(-0.03 * self.f, 0.062)], fill=(15, 15, 15)
                )

    def hair_behind(self) -> None:
        """Long hair seen behind the shoulders (front view)."""
        if self.hair is None or self.who.hair_length != "long" or self.var.view != "front":
            return
        b = self.b
        self.c.rect(-b.head_ru * 1.2, 0.03, b.head_ru * 1.2, 0.23, self.hair, 0.03)

    def hair_front(self) -> None:
        c, b, who, view = self.c, self.b, self.who, self.var.view
        if self.hair is None:
            return
        ru, rv = b.head_ru * 1.08, b.head_rv * 1.05
        long = who.hair_length == "long"
        if view == "front":
            c.chord(0, 0.062, ru, rv, 185, 355, self.hair)
            if long:
                for s in (-1, 1):
                    c.poly(
                        [
                            (s * ru, 0.05),
                            (s * ru * 0.7, 0.05),
                            (s * ru * 0.75, 0.2),
                            (s * ru * 1.25, 0.22),
                        ],
                        self.hair,
                    )
        elif view == "back":
            c.chord(0, 0.064, ru, rv, 140, 400, self.hair)
            if long:
                c.rect(-ru, 0.03, ru, 0.25, self.hair, 0.035)
        else:
            a0, a1 = (140, 330) if self.f > 0 else (210, 400)
            c.chord(0, 0.064, ru, rv, a0, a1, self.hair)
            if long:
                u0 = -self.f * ru
                c.poly(
                    [
                        (u0, 0.05),
                        (u0 + self.f * ru, 0.05),
                        (u0 + self.f * 0.03, 0.24),
                        (u0 - self.f * 0.025, 0.24),
                    ],
                    self.hair,
                )

    def hat_part(self) -> None:
        c, b, who, view = self.c, self.b, self.who, self.var.view
        if self.hat is None:
            return
        ru, rv = b.head_ru * 1.1, b.head_rv * 1.05
        if who.hat == "beanie":
            c.chord(0, 0.056, ru, rv * 1.05, 172, 368, self.hat)
            c.rect(-ru, 0.04, ru, 0.055, _shade(self.hat, 0.82))
            return
        c.chord(0, 0.06, ru, rv, 180, 360, self.hat)
        if view == "front":
            c.ellipse(0, 0.058, ru * 1.05, 0.012, _shade(self.hat, 0.8))
        elif view == "side":
            c.rect(0, 0.053, self.f * (ru + 0.035), 0.062, _shade(self.hat, 0.8))

    def backpack(self) -> None:
        if self.bag is None or self.who.bag != "backpack":
            return
        c, b, view = self.c, self.b, self.var.view
        dark = _shade(self.bag, 0.72)
        if view == "back":
            w = b.shoulder * 0.78
            c.rect(-w, 0.17, w, 0.43, self.bag, 0.03)
            c.rect(-w * 0.7, 0.33, w * 0.7, 0.41, dark, 0.015)
            c.rect(-0.02, 0.155, 0.02, 0.175, dark)
        elif view == "front":
            for s in (-1, 1):
                c.limb(
                    (s * b.shoulder * 0.55, 0.15),
                    (s * b.shoulder * 0.62, 0.36),
                    0.011,
                    0.01,
                    self.bag,
                )
        else:
            u0 = -self.f * (b.shoulder * 0.8)
            c.rect(u0, 0.175, u0 - self.f * 0.085, 0.43, self.bag, 0.025)
            c.limb((self.f * 0.012, 0.16), (self.f * 0.01, 0.33), 0.011, 0.01, dark)

    def side_bag(self, hand: tuple[float, float], near: int) -> None:
        """Handbag in the hand, or a shoulder bag on the hip, on screen side ``near``."""
        c, b, who = self.c, self.b, self.who
        if self.bag is None or who.bag not in ("handbag", "shoulder bag"):
            return
        dark = _shade(self.bag, 0.72)
        if who.bag == "handbag":
            u, v = hand[0], hand[1] + 0.015
            c.rect(u - 0.04, v + 0.02, u + 0.04, v + 0.1, self.bag, 0.01)
            c.draw.arc(
                (*c.p(u - 0.025, v - 0.01), *c.p(u + 0.025, v + 0.045)),
                180,
                360,
                fill=dark,
                width=max(1, round(0.006 * c.hf)),
            )
            return
        if self.var.view == "side":
            top, hip_u = (0.0, 0.155), 0.0
        else:
            top, hip_u = (-near * b.shoulder * 0.55, 0.155), near * (b.hip + 0.02)
        c.limb(top, (hip_u, 0.44), 0.008, 0.008, dark)
        c.rect(hip_u - 0.045, 0.43, hip_u + 0.045, 0.53, self.bag, 0.012)

    def draw(self) -> None:
        var = self.var
        if var.view == "side":
            self.draw_side()
            return
        self.hair_behind()
        for s in (-1, 1):
            self.leg(s)
        self.pelvis()
        self.skirt()
        self.torso()
        if var.view == "back":
            self.backpack()
        near = bag_screen_side(self.who, var.view)
        hand = (0.0, 0.0)
        for s, angle in zip((-1, 1), var.arm_angles, strict=True):
            self.arm(s, angle)
            if s == near:
                hand = self.arm_points(s, angle)[2]
        self.neck_and_head()
        self.face()
        self.hair_front()
        self.hat_part()
        if var.view == "front":
            self.backpack()
        self.side_bag(hand, near)

    def draw_side(self) -> None:
        var = self.var
        self.arm(-1, var.arm_angles[1], darken=0.8)
        self.leg(-1, darken=0.8)
        self.leg(1)
        self.pelvis()
        self.skirt()
        self.backpack()
        self.torso()
        self.neck_and_head()
        self.face()
        self.hair_front()
        self.hat_part()
        self.arm(1, var.arm_angles[0])
        self.side_bag(self.arm_points(1, var.arm_angles[0])[2], 1)


def _background(size: tuple[int, int], rng: random.Random) -> Image.Image:
    """Wall-over-pavement gradient with boxes, poles, bushes and signs as street clutter."""
    h, w = size
    horizon = int(h * rng.uniform(0.35, 0.75))
    wall_a, wall_b = np.array(_muted(rng), np.float32), np.array(_muted(rng), np.float32)
    ground = np.array(_muted(rng), np.float32)
    rows = np.empty((h, 3), np.float32)
    t = np.linspace(0.0, 1.0, horizon, dtype=np.float32)[:, None]
    rows[:horizon] = wall_a * (1 - t) + wall_b * t
    t = np.linspace(0.0, 1.0, h - horizon, dtype=np.float32)[:, None]
    rows[horizon:] = ground * (0.8 + 0.35 * t)
    column = Image.fromarray(rows.clip(0, 255).astype(np.uint8)[:, None, :])
    img = column.resize((w, h), Image.Resampling.NEAREST)
    d = ImageDraw.Draw(img)
    for _ in range(rng.randint(3, 9)):
        colour = _muted(rng)
        if rng.random() < 0.2:  # a vivid patch now and then, so colour alone is not a giveaway
            colour = _jitter(rng.choice(tuple(COLOURS.values())), rng, 20)
        kind = rng.random()
        x0 = rng.uniform(-0.2, 1.0) * w
        if kind < 0.35:  # window, door or shop front
            y0 = rng.uniform(0, horizon)
            x1, y1 = x0 + rng.uniform(0.1, 0.6) * w, y0 + rng.uniform(0.05, 0.35) * h
            d.rectangle((x0, y0, x1, min(y1, horizon)), fill=colour)
            if rng.random() < 0.5:
                d.line(
                    [((x0 + x1) / 2, y0), ((x0 + x1) / 2, min(y1, horizon))],
                    fill=_shade(colour, 0.6),
                    width=2,
                )
        elif kind < 0.5:  # pole
            pw = rng.uniform(0.02, 0.06) * w
            d.rectangle(
                (x0, rng.uniform(0, horizon * 0.5), x0 + pw, horizon + rng.uniform(0, 0.2) * h),
                fill=colour,
            )
        elif kind < 0.7:  # bush or tree crown
            r = rng.uniform(0.1, 0.35) * w
            y = horizon - rng.uniform(-0.05, 0.4) * h
            d.ellipse((x0 - r, y - r * 0.8, x0 + r, y + r * 0.8), fill=colour)
        elif kind < 0.85:  # parked car or bench at the kerb
            y1 = horizon + rng.uniform(0.0, 0.25) * h
            cw = rng.uniform(0.3, 0.9) * w
            d.rounded_rectangle((x0, y1 - 0.12 * h, x0 + cw, y1), radius=6, fill=colour)
            for wx in (x0 + cw * 0.2, x0 + cw * 0.8):
                d.ellipse((wx - 6, y1 - 6, wx + 6, y1 + 6), fill=(25, 25, 25))
        else:  # road marking
            y = horizon + rng.uniform(0.1, 0.9) * (h - horizon)
            d.polygon(
                [(x0, y), (x0 + 0.4 * w, y - 3), (x0 + 0.45 * w, y + 4), (x0, y + 7)],
                fill=_shade((230, 230, 220), rng.uniform(0.6, 1.0)),
            )
    return img


def _occlude(img: Image.Image, var: Variation, top: float, hf: float, rng: random.Random) -> None:
    h, w = img.height, img.width
    d = ImageDraw.Draw(img)
    colour = _muted(rng)
    if var.occluder == "bottom":  # bench, bin or car bonnet in front of the legs
        y = top + hf * rng.uniform(0.8, 0.9)
        d.rounded_rectangle(
            (rng.uniform(-0.3, 0.1) * w, y, rng.uniform(0.9, 1.3) * w, h + 10),
            radius=5,
            fill=colour,
        )
    elif var.occluder == "pole":
        x = rng.uniform(0.3, 0.7) * w
        d.rectangle((x, -1, x + rng.uniform(0.04, 0.1) * w, h), fill=colour)
    elif var.occluder == "edge":  # someone or something passing at the image edge
        cw = rng.uniform(0.15, 0.3) * w
        y0 = top + hf * rng.uniform(0.0, 0.5)
        box = (
            (-10, y0, cw, y0 + hf * 0.5)
            if var.occluder_side < 0
            else (w - cw, y0, w + 10, y0 + hf * 0.5)
        )
        d.rounded_rectangle(box, radius=8, fill=colour)


def _camera(img: Image.Image, var: Variation, rng: random.Random) -> Image.Image:
    """Illumination and colour cast, a lighting ramp, sensor noise, blur or low resolution.

    Gains go through a lookup table and the ramp plus noise is one added grey image: whole-image
    float arithmetic would cost more than drawing the scene.
    """
    h, w = img.height, img.width
    lut = [_clip(i * g) for g in var.gain for i in range(256)]
    out = img.point(lut)
    nrng = np.random.default_rng(var.seed)
    ramp = np.linspace(rng.uniform(-30, 30), rng.uniform(-30, 30), w, dtype=np.float32)
    shift = nrng.standard_normal((h, w), dtype=np.float32) * var.noise + (ramp + 128.0)
    grey = Image.fromarray(shift.clip(0, 255).astype(np.uint8)).convert("RGB")
    out = ImageChops.add(out, grey, scale=1.0, offset=-128)
    if var.downscale > 1.0:  # a soft or low-resolution camera: shrink, then enlarge back
        small = (max(1, round(w / var.downscale)), max(1, round(h / var.downscale)))
        out = out.resize(small, Image.Resampling.BOX).resize((w, h), Image.Resampling.BILINEAR)
    return out


def render(identity: Identity, variation: Variation, size: tuple[int, int]) -> Image.Image:
    """One RGB image of ``identity`` with height and width ``size``."""
    h, w = size
    rng = random.Random(variation.seed)
    img = _background(size, rng)
    hf = variation.scale * min(h, 3.0 * w)
    top = (h - hf) * variation.y_place
    cx = w * (0.5 + variation.x_shift)
    _Figure(_Canvas(img, cx, top, hf), identity, variation, rng).draw()
    _occlude(img, variation, top, hf, rng)
    return _camera(img, variation, rng)
