"""Shape templates for man-made things: chair, table, car, house, sword, cup/mug, and a totem fallback.

Each builder adds primitives to a composition, drawing proportions and optional parts from the seeded
generator. Units are roughly metres, Y up, standing on y = 0, facing +Z (glTF's front); paired parts use
`mirror=True`, which keeps the object symmetric about x = 0.
"""

from __future__ import annotations

import numpy as np

from inference.runners.sdf import Box, Composition, Cone, Cylinder, Ellipsoid, Sphere, Torus

PI = float(np.pi)


def chair(comp: Composition, rng: np.random.Generator, words: set[str], as_table: bool = False) -> None:
    seat_h = rng.uniform(0.42, 0.5) if not as_table else rng.uniform(0.7, 0.78)
    w, d = (rng.uniform(0.2, 0.26), rng.uniform(0.2, 0.25)) if not as_table else (rng.uniform(0.45, 0.6),) * 2
    t = rng.uniform(0.025, 0.035)
    comp.add(Box(c=(0, seat_h, 0), half=(w, t, d), round=0.015))
    round_legs = rng.random() < 0.5
    leg = rng.uniform(0.02, 0.03)
    inset = leg + 0.01
    for z in (d - inset, -(d - inset)):
        c = (w - inset, seat_h / 2, z)
        if round_legs:
            comp.add(Cylinder(c=c, r=leg, h=seat_h / 2, k=0.01), mirror=True)
        else:
            comp.add(Box(c=c, half=(leg, seat_h / 2, leg), round=0.006, k=0.01), mirror=True)
    if as_table:
        comp.add(Box(c=(0, seat_h - 0.08, d - inset), half=(w - inset, 0.04, 0.012), k=0.01))
        comp.add(Box(c=(0, seat_h - 0.08, -(d - inset)), half=(w - inset, 0.04, 0.012), k=0.01))
        return
    back_h = rng.uniform(0.35, 0.5)
    tilt = rng.uniform(-0.18, -0.05)
    zb = -(d - inset)
    top = seat_h + back_h
    # Back posts continue the rear legs up; a rail and either a panel or slats fill the back.
    comp.add(
        Box(
            c=(w - inset, seat_h + back_h / 2, zb),
            half=(leg, back_h / 2, leg),
            round=0.006,
            tilt=tilt,
            k=0.01,
        ),
        mirror=True,
    )
    comp.add(Box(c=(0, top - 0.05, zb - 0.02), half=(w, 0.05, 0.018), round=0.01, tilt=tilt, k=0.01))
    if rng.random() < 0.5:
        comp.add(
            Box(
                c=(0, seat_h + back_h * 0.5, zb - 0.01),
                half=(w - inset, back_h * 0.3, 0.012),
                tilt=tilt,
                k=0.01,
            )
        )
    else:
        n = int(rng.integers(3, 6))
        for i in range(n):
            x = (i - (n - 1) / 2) * (2 * (w - inset) / n)
            if x >= -1e-6:
                comp.add(
                    Box(
                        c=(x, seat_h + back_h * 0.45, zb - 0.01),
                        half=(0.015, back_h * 0.4, 0.01),
                        tilt=tilt,
                        k=0.01,
                    ),
                    mirror=True,
                )
    if "arm" in words or "armchair" in words or rng.random() < 0.25:
        comp.add(Box(c=(w + 0.02, seat_h + 0.22, 0), half=(0.03, 0.02, d), round=0.015, k=0.02), mirror=True)
        comp.add(Box(c=(w + 0.02, seat_h + 0.11, d - inset), half=(0.02, 0.11, 0.02), k=0.02), mirror=True)


def table(comp: Composition, rng: np.random.Generator, words: set[str]) -> None:
    chair(comp, rng, words, as_table=True)


def car(comp: Composition, rng: np.random.Generator, words: set[str]) -> None:
    sporty = bool(words & {"sports", "sport", "race", "racing", "supercar"}) or rng.random() < 0.3
    boxy = bool(words & {"truck", "van", "bus", "jeep", "suv"})
    half_len = rng.uniform(0.48, 0.55)
    half_w = rng.uniform(0.2, 0.24)
    wheel_r = rng.uniform(0.09, 0.11) * (1.2 if boxy else 1.0)
    body_h = 0.07 if sporty else 0.1
    body_y = wheel_r + body_h * 0.8
    comp.add(Box(c=(0, body_y, 0), half=(half_w, body_h, half_len), round=body_h * 0.8))
    top = body_y + body_h
    if sporty:
        # A low bubble canopy reads as "sports car" far better than a box.
        comp.add(
            Ellipsoid(
                c=(0, top - 0.02, -0.05),
                radii=(half_w * 0.8, rng.uniform(0.1, 0.13), half_len * rng.uniform(0.45, 0.55)),
                clip_below=top - 0.03,
                k=0.04,
            )
        )
    else:
        cab_h = 0.15 if boxy else 0.1
        comp.add(
            Box(
                c=(0, top + cab_h * 0.7, -0.1 if boxy else -0.04),
                half=(half_w * 0.85, cab_h, half_len * 0.6),
                round=cab_h * 0.9,
                k=0.06,
            )
        )
    wheel_z = half_len * 0.62
    for z in (wheel_z, -wheel_z):
        # Arch clearance of ~3 voxels: thinner slivers between arch and tyre alias into jagged edges.
        comp.add(
            Cylinder(
                c=(half_w, wheel_r + 0.01, z),
                r=wheel_r + 0.035,
                h=0.08,
                axis=0,
                round=0.015,
                op="subtract",
                k=0.02,
            ),
            mirror=True,
        )
        comp.add(Cylinder(c=(half_w - 0.025, wheel_r, z), r=wheel_r, h=0.045, axis=0, round=0.02), mirror=True)
        comp.add(Cylinder(c=(half_w + 0.02, wheel_r, z), r=wheel_r * 0.45, h=0.01, axis=0), mirror=True)
    comp.add(Sphere(c=(half_w * 0.65, body_y + body_h * 0.2, half_len - 0.02), r=0.035), mirror=True)
    if sporty:
        comp.add(
            Box(
                c=(0, body_y + body_h + 0.07, -half_len + 0.05),
                half=(half_w * 0.95, 0.008, 0.05),
                round=0.006,
            )
        )
        comp.add(
            Box(c=(half_w * 0.6, body_y + body_h + 0.03, -half_len + 0.06), half=(0.012, 0.04, 0.02), k=0.01),
            mirror=True,
        )


def house(comp: Composition, rng: np.random.Generator, words: set[str]) -> None:
    w, d, h = rng.uniform(0.35, 0.45), rng.uniform(0.26, 0.34), rng.uniform(0.26, 0.36)
    comp.add(Box(c=(0, 0.02, 0), half=(w + 0.05, 0.02, d + 0.05), round=0.01))
    comp.add(Box(c=(0, h, 0), half=(w, h, d), round=0.01))
    wall_top = 2 * h
    a = (d + 0.06) / np.sqrt(2)
    comp.add(Box(c=(0, wall_top, 0), half=(w + 0.05, a, a), tilt=PI / 4, round=0.01, clip_below=wall_top))
    # Top the chimney above the ridge so it shows from the front too.
    cz = -d * 0.45
    chimney_top = wall_top + a * np.sqrt(2) + rng.uniform(0.03, 0.08)
    comp.add(
        Box(c=(w * 0.5, (wall_top + chimney_top) / 2, cz), half=(0.045, (chimney_top - wall_top) / 2, 0.045)),
        mirror=rng.random() < 0.3,
    )
    comp.add(Box(c=(0, 0.16, d), half=(0.07, 0.13, 0.03), op="subtract"))
    comp.add(Box(c=(0, 0.045, d + 0.04), half=(0.1, 0.025, 0.04)))
    for x in (w * 0.55,):
        comp.add(Box(c=(x, h * 1.1, d), half=(0.065, 0.06, 0.02), op="subtract"), mirror=True)
        comp.add(Box(c=(x, h * 1.1 - 0.07, d + 0.01), half=(0.08, 0.012, 0.02)), mirror=True)
        comp.add(Box(c=(w, h * 1.1, 0), half=(0.02, 0.06, 0.07), op="subtract"), mirror=True)


def sword(comp: Composition, rng: np.random.Generator, words: set[str]) -> None:
    blade_w, blade_h = rng.uniform(0.035, 0.05), rng.uniform(0.32, 0.4)
    guard_y = rng.uniform(0.26, 0.3)
    comp.add(Box(c=(0, guard_y + blade_h, 0), half=(blade_w, blade_h, 0.012), round=0.008))
    tip = blade_w / np.sqrt(2)
    comp.add(
        Box(
            c=(0, guard_y + 2 * blade_h, 0),
            half=(tip, tip, 0.012),
            round=0.008,
            tilt=PI / 4,
            tilt_axis=2,
            k=0.005,
        )
    )
    gw = rng.uniform(0.14, 0.2)
    comp.add(Box(c=(0, guard_y, 0), half=(gw, 0.022, 0.03), round=0.015, k=0.01))
    comp.add(Sphere(c=(gw, guard_y, 0), r=0.035, k=0.01), mirror=True)
    comp.add(Cylinder(c=(0, guard_y * 0.55, 0), r=0.024, h=guard_y * 0.45, round=0.01, k=0.01))
    for i in range(4):
        comp.add(Torus(c=(0, guard_y * (0.25 + 0.15 * i), 0), R=0.025, r=0.006, k=0.004))
    comp.add(Sphere(c=(0, 0.04, 0), r=0.04, k=0.015))


def cup(comp: Composition, rng: np.random.Generator, words: set[str]) -> None:
    mug = bool(words & {"mug", "tankard"}) or (not words & {"cup", "teacup"} and rng.random() < 0.5)
    h = rng.uniform(0.28, 0.36) if mug else rng.uniform(0.18, 0.24)
    r = rng.uniform(0.22, 0.27)
    base = 0.0 if mug else 0.03
    if mug:
        comp.add(Cylinder(c=(0, h, 0), r=r, h=h, round=0.02))
    else:
        comp.add(Cylinder(c=(0, 0.015, 0), r=r * 1.7, h=0.015, round=0.01))
        comp.add(Cone(c=(0, base + h, 0), r1=r * 0.7, r2=r, h=h, k=0.02))
    hy = base + h * (1.05 if mug else 1.15)
    hr = h * (0.55 if mug else 0.7)
    comp.add(Torus(c=(0, hy, -r - hr * 0.55), R=hr, r=0.03, axis=0, k=0.02))
    wall = 0.035
    if mug:
        comp.add(Cylinder(c=(0, 2 * h + 0.02, 0), r=r - wall, h=2 * h - 0.05, op="subtract", k=0.01))
    else:
        # The cavity follows the taper; a straight one would cut through the narrow lower wall.
        comp.add(
            Cone(
                c=(0, base + h + 0.05, 0),
                r1=r * 0.7 - wall,
                r2=r - wall + 0.3 * 0.05 / (2 * h) * r,
                h=h,
                op="subtract",
                k=0.01,
            )
        )


def sculpture(comp: Composition, rng: np.random.Generator, words: set[str]) -> None:
    """Fallback for prompts no template knows: a stacked totem of blended primitives on a plinth."""
    comp.add(Cylinder(c=(0, 0.05, 0), r=rng.uniform(0.28, 0.36), h=0.05, round=0.02))
    y = 0.1
    for _ in range(int(rng.integers(3, 6))):
        kind = int(rng.integers(0, 4))
        s = rng.uniform(0.1, 0.2)
        if kind == 0:
            comp.add(Sphere(c=(0, y + s, 0), r=s, k=0.05))
        elif kind == 1:
            comp.add(Box(c=(0, y + s, 0), half=(s, s, s * rng.uniform(0.6, 1.0)), round=s * 0.3, k=0.05))
        elif kind == 2:
            comp.add(Torus(c=(0, y + s * 0.4, 0), R=s * 1.1, r=s * 0.35, k=0.05))
            comp.add(Cylinder(c=(0, y + s, 0), r=s * 0.4, h=s, k=0.05))
        else:
            comp.add(Ellipsoid(c=(0, y + s, 0), radii=(s * 1.4, s, s * 0.8), k=0.05))
            comp.add(Sphere(c=(s * 1.3, y + s * 1.2, 0), r=s * 0.4, k=0.04), mirror=True)
        y += 2 * s * 0.85
    comp.add(Cone(c=(0, y + 0.08, 0), r1=0.08, r2=0.0, h=0.08, k=0.04))
