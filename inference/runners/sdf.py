"""Signed-distance primitives and a sparse evaluator for the procedural reference runner.

Distances follow the usual convention (negative inside, world units, Y up, +Z is the front as in glTF).
Primitives are evaluated only inside their own padded bounding box: outside it, a smooth union or
subtraction cannot change the field, so a composition of 20-40 primitives on a ~90³ grid costs tens of
milliseconds instead of evaluating every primitive on every voxel. Formulas are the standard ones from
Inigo Quilez's distance-function catalogue, vectorised with numpy broadcasting over the grid axes.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import mcubes
import numpy as np

# An (x, y, z) triple of broadcastable arrays: (nx,1,1), (1,ny,1), (1,1,nz) slices of the grid axes.
Coords = tuple[np.ndarray, np.ndarray, np.ndarray]


def _length(*parts: np.ndarray) -> np.ndarray:
    return np.sqrt(sum(p * p for p in parts))


@dataclass
class Shape:
    """One primitive in a composition.

    `op` is "union" or "subtract"; `k` is the smooth-blend radius (0 = hard). `clip_below` cuts everything
    under that height (mushroom caps, roofs). Subclasses give `_sdf` and `_extent` (half size around `c`).
    """

    c: tuple[float, float, float]
    op: str = "union"
    k: float = 0.0
    clip_below: float | None = None

    def sdf(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        d = self._sdf(x - self.c[0], y - self.c[1], z - self.c[2])
        if self.clip_below is not None:
            d = np.maximum(d, self.clip_below - y)
        return d

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        e = np.asarray(self._extent(), dtype=float)
        c = np.asarray(self.c, dtype=float)
        return c - e, c + e

    def mirrored(self) -> Shape:
        """The same primitive reflected in the x = 0 plane (subclasses with direction vectors override)."""
        return replace(self, c=(-self.c[0], self.c[1], self.c[2]))

    def _sdf(self, x, y, z):  # pragma: no cover - abstract
        raise NotImplementedError

    def _extent(self):  # pragma: no cover - abstract
        raise NotImplementedError


@dataclass
class Sphere(Shape):
    r: float = 0.5

    def _sdf(self, x, y, z):
        return _length(x, y, z) - self.r

    def _extent(self):
        return (self.r,) * 3


@dataclass
class Ellipsoid(Shape):
    radii: tuple[float, float, float] = (0.5, 0.5, 0.5)

    def _sdf(self, x, y, z):
        # Quilez's bound: exact on the surface, a good-enough distance near it for marching cubes.
        rx, ry, rz = self.radii
        k0 = _length(x / rx, y / ry, z / rz)
        k1 = _length(x / (rx * rx), y / (ry * ry), z / (rz * rz))
        return k0 * (k0 - 1.0) / np.maximum(k1, 1e-9)

    def _extent(self):
        return self.radii


@dataclass
class Box(Shape):
    """Rounded box, rotated by `tilt` radians about the x axis (`tilt_axis` 0: chair backs, roofs) or the
    z axis (`tilt_axis` 2: diamond sword tips)."""

    half: tuple[float, float, float] = (0.5, 0.5, 0.5)
    round: float = 0.0
    tilt: float = 0.0
    tilt_axis: int = 0

    def _sdf(self, x, y, z):
        if self.tilt:
            ct, st = np.cos(self.tilt), np.sin(self.tilt)
            if self.tilt_axis == 0:
                y, z = ct * y + st * z, -st * y + ct * z
            else:
                x, y = ct * x + st * y, -st * x + ct * y
        qx = np.abs(x) - (self.half[0] - self.round)
        qy = np.abs(y) - (self.half[1] - self.round)
        qz = np.abs(z) - (self.half[2] - self.round)
        outside = _length(np.maximum(qx, 0.0), np.maximum(qy, 0.0), np.maximum(qz, 0.0))
        inside = np.minimum(np.maximum(qx, np.maximum(qy, qz)), 0.0)
        return outside + inside - self.round

    def _extent(self):
        if not self.tilt:
            return self.half
        if self.tilt_axis == 0:
            r = float(np.hypot(self.half[1], self.half[2]))
            return (self.half[0], r, r)
        r = float(np.hypot(self.half[0], self.half[1]))
        return (r, r, self.half[2])

    def mirrored(self):
        # A tilt about z changes sign in the mirror; a tilt about x does not.
        clone = super().mirrored()
        return replace(clone, tilt=-self.tilt) if self.tilt_axis == 2 else clone


@dataclass
class Capsule(Shape):
    """Segment from `c` to `b` with radius `r` (limbs, handles, antennae)."""

    b: tuple[float, float, float] = (0.0, 1.0, 0.0)
    r: float = 0.1

    def _sdf(self, x, y, z):
        ba = np.subtract(self.b, self.c)
        h = (x * ba[0] + y * ba[1] + z * ba[2]) / max(float(ba @ ba), 1e-12)
        h = np.clip(h, 0.0, 1.0)
        return _length(x - h * ba[0], y - h * ba[1], z - h * ba[2]) - self.r

    def bounds(self):
        a, b = np.asarray(self.c, float), np.asarray(self.b, float)
        return np.minimum(a, b) - self.r, np.maximum(a, b) + self.r

    def mirrored(self):
        return replace(super().mirrored(), b=(-self.b[0], self.b[1], self.b[2]))


@dataclass
class Cylinder(Shape):
    """Capped cylinder along `axis` (0, 1 or 2) with radius `r` and half length `h`, rounded by `round`."""

    r: float = 0.2
    h: float = 0.5
    axis: int = 1
    round: float = 0.0

    def _sdf(self, x, y, z):
        p = (x, y, z)
        radial = _length(*(p[i] for i in range(3) if i != self.axis)) - (self.r - self.round)
        along = np.abs(p[self.axis]) - (self.h - self.round)
        outside = _length(np.maximum(radial, 0.0), np.maximum(along, 0.0))
        return outside + np.minimum(np.maximum(radial, along), 0.0) - self.round

    def _extent(self):
        e = [self.r] * 3
        e[self.axis] = self.h
        return tuple(e)


@dataclass
class Cone(Shape):
    """Vertical capped cone: radius `r1` at the bottom, `r2` at the top, half height `h` (trees, blades)."""

    r1: float = 0.5
    r2: float = 0.0
    h: float = 0.5

    def _sdf(self, x, y, z):
        qx = _length(x, z)
        qy = y
        k2x, k2y = self.r2 - self.r1, 2.0 * self.h
        ca_x = qx - np.minimum(qx, np.where(qy < 0.0, self.r1, self.r2))
        ca_y = np.abs(qy) - self.h
        t = np.clip(((self.r2 - qx) * k2x + (self.h - qy) * k2y) / (k2x * k2x + k2y * k2y), 0.0, 1.0)
        cb_x = qx - self.r2 + k2x * t
        cb_y = qy - self.h + k2y * t
        sign = np.where((cb_x < 0.0) & (ca_y < 0.0), -1.0, 1.0)
        return sign * np.sqrt(np.minimum(ca_x * ca_x + ca_y * ca_y, cb_x * cb_x + cb_y * cb_y))

    def _extent(self):
        r = max(self.r1, self.r2)
        return (r, self.h, r)


@dataclass
class Torus(Shape):
    """Torus with major radius `R`, tube radius `r`, its hole along `axis` (0, 1 or 2)."""

    R: float = 0.4
    r: float = 0.1
    axis: int = 1

    def _sdf(self, x, y, z):
        p = (x, y, z)
        ring = _length(*(p[i] for i in range(3) if i != self.axis)) - self.R
        return _length(ring, p[self.axis]) - self.r

    def _extent(self):
        e = [self.R + self.r] * 3
        e[self.axis] = self.r
        return tuple(e)


@dataclass
class Composition:
    """An ordered list of primitives; mirrored pairs are added for symmetric compositions."""

    shapes: list[Shape] = field(default_factory=list)
    # With symmetry off, mirrored copies are nudged by this generator so the two sides differ a little.
    jitter: np.random.Generator | None = None

    def add(self, shape: Shape, mirror: bool = False) -> None:
        self.shapes.append(shape)
        lo, hi = shape.bounds()
        if not mirror or abs(lo[0] + hi[0]) < 1e-9:
            return  # already centred on x = 0: its own mirror image
        clone = shape.mirrored()
        if self.jitter is not None:
            size = float(np.max(hi - lo))
            d = self.jitter.normal(0.0, 0.08 * size, 3)
            clone = replace(clone, c=tuple(np.add(clone.c, d).tolist()))
            if isinstance(clone, Capsule):
                clone = replace(clone, b=tuple(np.add(clone.b, d).tolist()))
        self.shapes.append(clone)

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        los, his = zip(*(s.bounds() for s in self.shapes if s.op == "union"), strict=True)
        return np.min(los, axis=0), np.max(his, axis=0)


def _smooth_min(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    if k <= 0.0:
        return np.minimum(a, b)
    h = np.clip(0.5 + 0.5 * (b - a) / k, 0.0, 1.0)
    return b + (a - b) * h - k * h * (1.0 - h)


def polygonise(comp: Composition, resolution: int, symmetric: bool) -> tuple[np.ndarray, np.ndarray]:
    """Sample `comp` on a grid whose longest side has `resolution` cells and run marching cubes.

    Returns (vertices in world units, faces) with outward winding. With `symmetric`, the grid is centred on
    x = 0 and the field is made exactly mirror-symmetric, so both halves of the mesh match to rounding.
    """
    lo, hi = comp.bounds()
    pad_cells = 3
    step = float(np.max(hi - lo)) / (resolution - 2 * pad_cells)
    if symmetric:
        half = max(abs(lo[0]), abs(hi[0]))
        lo[0], hi[0] = -half, half
    counts = np.ceil((hi - lo) / step).astype(int) + 2 * pad_cells + 1
    origin = (lo + hi) / 2 - (counts - 1) * step / 2
    axes = [(origin[i] + step * np.arange(counts[i])).astype(np.float32) for i in range(3)]
    # The field starts well outside everything so that untouched voxels read as empty space.
    outside = np.float32(4 * step + 1e-3)
    grid = np.full(counts, outside, dtype=np.float32)
    for shape in comp.shapes:
        margin = shape.k + 2 * step
        s_lo, s_hi = shape.bounds()
        i0 = np.clip(np.floor((s_lo - margin - origin) / step).astype(int), 0, counts - 1)
        i1 = np.clip(np.ceil((s_hi + margin - origin) / step).astype(int) + 1, 0, counts)
        if np.any(i1 <= i0):
            continue
        sl = tuple(slice(i0[a], i1[a]) for a in range(3))
        x = axes[0][sl[0]][:, None, None]
        y = axes[1][sl[1]][None, :, None]
        z = axes[2][sl[2]][None, None, :]
        d = np.broadcast_to(shape.sdf(x, y, z), grid[sl].shape).astype(np.float32)
        if shape.op == "subtract":
            grid[sl] = -_smooth_min(-grid[sl], d, shape.k)
        else:
            grid[sl] = _smooth_min(grid[sl], d, shape.k)
    if symmetric:
        grid = np.minimum(grid, grid[::-1])
    # Values at or very near zero put several edge vertices on (almost) the same grid point: zero-area
    # triangles that vertex welding later turns into non-manifold edges. Push them a little outside.
    eps = np.float32(2e-3 * step)
    grid[np.abs(grid) < eps] = eps
    grid[[0, -1], :, :] = outside
    grid[:, [0, -1], :] = outside
    grid[:, :, [0, -1]] = outside
    verts, faces = mcubes.marching_cubes(-grid, 0.0)
    verts = verts * step + origin
    if symmetric:
        # Snap the centre line so mirrored vertices agree exactly in |x|.
        verts[np.abs(verts[:, 0]) < 1e-7, 0] = 0.0
    return verts, faces.astype(np.int64)
