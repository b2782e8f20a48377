"""Shape templates for living things and characters: creatures, robots, trees, mushrooms.

Each builder adds primitives to a composition, drawing proportions and optional parts from the seeded
generator. Units are roughly metres, Y up, standing on y = 0, facing +Z (glTF's front); paired parts use
`mirror=True`, which keeps the object symmetric about x = 0.
"""

from __future__ import annotations

import numpy as np

from inference.runners.sdf import Box, Capsule, Composition, Cone, Cylinder, Ellipsoid, Sphere

PI = float(np.pi)


def creature(comp: Composition, rng: np.random.Generator, words: set[str]) -> None:
    biped = bool(words & {"bird", "duck", "penguin", "chicken", "owl", "goblin", "alien"}) or rng.random() < 0.25
    leg_len = rng.uniform(0.2, 0.35)
    bx, by, bz = rng.uniform(0.2, 0.3), rng.uniform(0.17, 0.25), rng.uniform(0.28, 0.42)
    if biped:
        bz, by = by * 1.1, bz * 1.0
    body_y = leg_len + by * 0.7
    comp.add(Ellipsoid(c=(0, body_y, 0), radii=(bx, by, bz)))
    head_r = rng.uniform(0.14, 0.22)
    head = (0.0, body_y + by * (0.9 if biped else 0.55) + head_r * 0.6, bz * (0.25 if biped else 0.9))
    comp.add(Capsule(c=(0, body_y + by * 0.3, bz * 0.5), b=head, r=head_r * 0.55, k=0.06))
    comp.add(Sphere(c=head, r=head_r, k=0.05))
    comp.add(
        Ellipsoid(
            c=(0, head[1] - head_r * 0.25, head[2] + head_r * 0.8),
            radii=(head_r * 0.45, head_r * 0.35, head_r * 0.5),
            k=0.04,
        )
    )
    eye = (head_r * 0.42, head[1] + head_r * 0.25, head[2] + head_r * 0.82)
    comp.add(Sphere(c=eye, r=head_r * 0.17, k=0.01), mirror=True)
    ear_kind = int(rng.integers(0, 3))
    ear_c = (head_r * 0.55, head[1] + head_r * 0.85, head[2] - head_r * 0.1)
    if ear_kind == 0:
        comp.add(Ellipsoid(c=ear_c, radii=(head_r * 0.18, head_r * 0.5, head_r * 0.12), k=0.03), mirror=True)
    elif ear_kind == 1:
        comp.add(
            Capsule(c=ear_c, b=(ear_c[0] + 0.08, ear_c[1] + 0.12, ear_c[2] - 0.05), r=0.025, k=0.03),
            mirror=True,
        )
    leg_r = rng.uniform(0.045, 0.07)
    hips = [(bx * 0.55, body_y - by * 0.4, bz * 0.55), (bx * 0.55, body_y - by * 0.4, -bz * 0.55)]
    for hip in hips[:1] if biped else hips:
        foot = (hip[0] * 1.1, leg_r * 0.9, hip[2] + 0.03)
        comp.add(Capsule(c=hip, b=foot, r=leg_r, k=0.04), mirror=True)
        comp.add(
            Ellipsoid(
                c=(foot[0], leg_r * 0.7, foot[2] + leg_r * 0.6),
                radii=(leg_r * 1.3, leg_r * 0.7, leg_r * 1.8),
                k=0.03,
            ),
            mirror=True,
        )
    if words & {"dragon", "bird", "owl", "duck", "chicken", "bat", "griffin", "pegasus"}:
        comp.add(
            Ellipsoid(c=(bx + 0.02, body_y + by * 0.3, -0.02), radii=(0.05, by * 0.7, bz * 0.8), k=0.04),
            mirror=True,
        )
    tail_end = (0.0, body_y + rng.uniform(-0.1, 0.25), -bz - rng.uniform(0.15, 0.35))
    comp.add(Capsule(c=(0, body_y, -bz * 0.7), b=tail_end, r=rng.uniform(0.025, 0.05), k=0.05))


def robot(comp: Composition, rng: np.random.Generator, words: set[str]) -> None:
    leg_h = rng.uniform(0.35, 0.45)
    tw, th, td = rng.uniform(0.18, 0.24), rng.uniform(0.2, 0.26), rng.uniform(0.12, 0.15)
    ty = leg_h + 0.05 + th
    comp.add(Box(c=(0, ty, 0), half=(tw, th, td), round=0.04))
    comp.add(Box(c=(0, leg_h + 0.04, 0), half=(tw * 0.8, 0.05, td * 0.8), round=0.03, k=0.02))
    head_y = ty + th + 0.16
    hs = rng.uniform(0.11, 0.15)
    comp.add(Cylinder(c=(0, ty + th + 0.03, 0), r=0.05, h=0.05, k=0.01))
    comp.add(Box(c=(0, head_y, 0), half=(hs, hs * 0.85, hs * 0.9), round=0.03))
    comp.add(Sphere(c=(hs * 0.45, head_y + 0.01, hs * 0.85), r=0.028), mirror=True)
    comp.add(Capsule(c=(0, head_y + hs * 0.8, 0), b=(0, head_y + hs * 0.8 + 0.1, 0), r=0.01))
    comp.add(Sphere(c=(0, head_y + hs * 0.8 + 0.11, 0), r=0.025))
    sx = tw + 0.06
    sy = ty + th * 0.7
    comp.add(Sphere(c=(sx, sy, 0), r=0.07, k=0.02), mirror=True)
    elbow = (sx + 0.03, sy - 0.22, rng.uniform(0.0, 0.08))
    hand = (sx + 0.02, sy - 0.42, elbow[2] + rng.uniform(0.05, 0.15))
    comp.add(Capsule(c=(sx, sy, 0), b=elbow, r=0.045, k=0.02), mirror=True)
    comp.add(Capsule(c=elbow, b=hand, r=0.04, k=0.02), mirror=True)
    comp.add(Sphere(c=hand, r=0.055, k=0.02), mirror=True)
    lx = tw * 0.5
    comp.add(Box(c=(lx, leg_h / 2 + 0.04, 0), half=(0.055, leg_h / 2, 0.06), round=0.02, k=0.02), mirror=True)
    comp.add(Box(c=(lx, 0.035, 0.04), half=(0.075, 0.035, 0.11), round=0.02, k=0.02), mirror=True)


def tree(comp: Composition, rng: np.random.Generator, words: set[str]) -> None:
    pine_words = {"pine", "fir", "christmas", "spruce", "conifer"}
    leafy_words = {"oak", "maple", "apple", "birch", "willow", "leafy", "deciduous"}
    pine = bool(words & pine_words) or (not words & leafy_words and rng.random() < 0.3)
    trunk_h = rng.uniform(0.45, 0.6) if not pine else rng.uniform(0.2, 0.3)
    comp.add(Cone(c=(0, trunk_h / 2, 0), r1=0.08, r2=0.05, h=trunk_h / 2))
    for i in range(3):
        a = i * 2 * PI / 3 + 0.4
        comp.add(Capsule(c=(0, 0.06, 0), b=(0.16 * np.sin(a), 0.0, 0.16 * np.cos(a)), r=0.03, k=0.04))
    if pine:
        layers = int(rng.integers(3, 5))
        y = trunk_h
        for i in range(layers):
            r = 0.45 * (1 - i / (layers + 0.5))
            h = 0.22 + rng.uniform(-0.02, 0.03)
            comp.add(Cone(c=(0, y + h, 0), r1=r, r2=0.02, h=h, k=0.02))
            y += h * 1.1
        return
    canopy_y = trunk_h + 0.25
    comp.add(Sphere(c=(0, canopy_y, 0), r=rng.uniform(0.26, 0.32), k=0.05))
    for _ in range(int(rng.integers(3, 6))):
        a = rng.uniform(0, PI)
        x, z = 0.24 * np.sin(a) * rng.uniform(0.6, 1.2), 0.24 * np.cos(a)
        y = canopy_y + rng.uniform(-0.1, 0.2)
        comp.add(Capsule(c=(0, trunk_h * 0.8, 0), b=(x * 0.6, y - 0.05, z * 0.6), r=0.035, k=0.04), mirror=True)
        comp.add(Sphere(c=(x, y, z), r=rng.uniform(0.15, 0.22), k=0.08), mirror=True)


def mushroom(comp: Composition, rng: np.random.Generator, words: set[str]) -> None:
    def one(x: float, z: float, s: float, mirror: bool) -> None:
        stem_h = s * rng.uniform(0.45, 0.6)
        comp.add(Cone(c=(x, stem_h / 2, z), r1=s * 0.13, r2=s * 0.09, h=stem_h / 2, k=0.02 * s), mirror=mirror)
        cap_r = s * rng.uniform(0.35, 0.45)
        comp.add(
            Ellipsoid(
                c=(x, stem_h - 0.02 * s, z),
                radii=(cap_r, s * rng.uniform(0.22, 0.3), cap_r),
                clip_below=stem_h - 0.03 * s,
                k=0.03 * s,
            ),
            mirror=mirror,
        )

    one(0.0, 0.0, 1.0, False)
    if rng.random() < 0.7:
        one(0.38, rng.uniform(0.05, 0.25), rng.uniform(0.35, 0.5), True)
    comp.add(Ellipsoid(c=(0, 0.0, 0.05), radii=(0.5, 0.05, 0.35), k=0.04))
