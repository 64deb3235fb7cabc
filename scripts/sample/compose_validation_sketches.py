"""Composes the validation sketches (benchmarks/validation_sketches/<class>/<n>.json) stroke by stroke.

Six hand-composed aerial sketches for each of ten UC Merced classes, in the style of compose_sketches.py
(whose shapes, placing and hand-drawing helpers this reuses): thin outlines of one pen, drawn top-down as an
analyst would draw what they look for, not quite straight and not quite closed. They are a validation set for
choosing settings (checkpoints, fusion weights, re-ranking); they are never test queries. Nothing here is
traced from an image: each shape is written as points in its own frame and placed with a turn, a size and an
offset. Every sketch has its own fixed seed, so the output is the same on every run.

    .venv/bin/python scripts/sample/compose_validation_sketches.py
    .venv/bin/python scripts/sample/render_sketches.py --folder benchmarks/validation_sketches
"""
from __future__ import annotations

import json
import math
import random
from pathlib import Path

from compose_sketches import (LOGICAL, Points, airliner, boat, car, circle, engines, hand_drawn, light_aircraft,
                              marina, place, rectangle, resample)

OUT = Path(__file__).resolve().parents[2] / "benchmarks" / "validation_sketches"


# ---- small shape helpers (frame: about -0.5..0.5, y down) ------------------------------------------------------
def polygon(points: Points) -> Points:
    return list(points) + [points[0]]


def box(cx, cy, w, h, turn_deg=0.0) -> Points:
    """A rectangle of w x h centred on (cx, cy), turned by turn_deg."""
    a = math.radians(turn_deg)
    c, s = math.cos(a), math.sin(a)
    corners = [(-w / 2, -h / 2), (w / 2, -h / 2), (w / 2, h / 2), (-w / 2, h / 2)]
    return polygon([(cx + x * c - y * s, cy + x * s + y * c) for x, y in corners])


def moved(strokes: list[Points], dx: float, dy: float, k: float = 1.0, turn_deg: float = 0.0) -> list[Points]:
    """Scales by k, turns and shifts shapes inside a scene (place() then puts the scene on the canvas)."""
    a = math.radians(turn_deg)
    c, s = math.cos(a), math.sin(a)
    return [[(dx + k * (x * c - y * s), dy + k * (x * s + y * c)) for x, y in stroke] for stroke in strokes]


def wave_line(x0, x1, y, amp, waves, phase=0.0, n=90) -> Points:
    """A line from x0 to x1 around height y, swinging by amp (a sum of two sines: a meander, a coast)."""
    out = []
    for k in range(n + 1):
        t = k / n
        x = x0 + (x1 - x0) * t
        out.append((x, y + amp * math.sin(2 * math.pi * waves * t + phase)
                    + 0.35 * amp * math.sin(2 * math.pi * 1.7 * waves * t + 2 * phase)))
    return out


def normals(line: Points) -> Points:
    """Unit vectors across the polyline at each point (to the right of the direction of travel, y down)."""
    out = []
    for i in range(len(line)):
        j0, j1 = max(0, i - 1), min(len(line) - 1, i + 1)
        dx, dy = line[j1][0] - line[j0][0], line[j1][1] - line[j0][1]
        norm = math.hypot(dx, dy) or 1.0
        out.append((-dy / norm, dx / norm))
    return out


def offset(line: Points, d: float) -> Points:
    """The polyline moved sideways by d along its normals."""
    return [(x + nx * d, y + ny * d) for (x, y), (nx, ny) in zip(line, normals(line))]


def part(line: Points, t0: float, t1: float) -> Points:
    """The stretch of a polyline between fractions t0 and t1 of its points."""
    n = len(line) - 1
    return line[int(round(t0 * n)):int(round(t1 * n)) + 1]


def dashes(line: Points, on: int, off: int) -> list[Points]:
    """A dashed line: runs of `on` segments with `off` left out."""
    return [line[i:i + on + 1] for i in range(0, len(line) - on, on + off)]


def blob(cx, cy, r, rng: random.Random, rough=0.25, stretch=1.0, tilt: float | None = None) -> Points:
    """An irregular closed loop (a shrub, a sand bar): a circle whose radius swings with a few harmonics."""
    harmonics = [(k, rng.uniform(0, rough / k ** 0.7), rng.uniform(0, 2 * math.pi)) for k in (2, 3, 4, 5)]
    start = rng.uniform(0, 2 * math.pi)
    tilt = rng.uniform(0, math.pi) if tilt is None else tilt
    n = max(10, int(r * 160))
    out = []
    for i in range(n + 1):
        a = start + 2 * math.pi * i / n
        rr = r * (1 + sum(amp * math.sin(k * a + p) for k, amp, p in harmonics))
        x, y = rr * math.cos(a) * stretch, rr * math.sin(a)
        out.append((cx + x * math.cos(tilt) - y * math.sin(tilt), cy + x * math.sin(tilt) + y * math.cos(tilt)))
    return out


def crown(cx, cy, r, rng: random.Random, bumps: int | None = None) -> Points:
    """A tree crown seen from above: a loop of little arcs (a cloud outline)."""
    bumps = bumps or rng.randint(5, 8)
    start = rng.uniform(0, 2 * math.pi)
    n = bumps * 8
    out = []
    for i in range(n + 1):
        a = start + 2 * math.pi * i / n
        rr = r * (0.86 + 0.14 * abs(math.sin(bumps * (a - start) / 2)) * 1.0 + rng.uniform(-0.02, 0.02))
        out.append((cx + rr * math.cos(a), cy + rr * math.sin(a)))
    return out


def scatter(rng: random.Random, count: int, radius: tuple[float, float], gap: float,
            area=(-0.5, -0.5, 0.5, 0.5), avoid=None) -> list[tuple[float, float, float]]:
    """Up to `count` (x, y, r) that keep `gap` between their circles, drawn at random inside `area`."""
    placed: list[tuple[float, float, float]] = []
    for _ in range(count * 60):
        if len(placed) == count:
            break
        r = rng.uniform(*radius)
        x, y = rng.uniform(area[0], area[2]), rng.uniform(area[1], area[3])
        if avoid and avoid(x, y, r):
            continue
        if all(math.hypot(x - px, y - py) > r + pr + gap for px, py, pr in placed):
            placed.append((x, y, r))
    return placed


def clip(p: tuple[float, float], q: tuple[float, float], rect) -> Points | None:
    """The part of segment pq inside the axis-aligned rect (x0, y0, x1, y1) (Liang-Barsky)."""
    t0, t1 = 0.0, 1.0
    dx, dy = q[0] - p[0], q[1] - p[1]
    for den, num in ((-dx, p[0] - rect[0]), (dx, rect[2] - p[0]), (-dy, p[1] - rect[1]), (dy, rect[3] - p[1])):
        if den == 0:
            if num < 0:
                return None
            continue
        t = num / den
        if den < 0:
            t0 = max(t0, t)
        else:
            t1 = min(t1, t)
    if t0 >= t1:
        return None
    return [(p[0] + dx * t0, p[1] + dy * t0), (p[0] + dx * t1, p[1] + dy * t1)]


def furrows(rect, angle_deg: float, spacing: float, outline=True) -> list[Points]:
    """A field: its edge and parallel furrow lines at angle_deg, cut to the field."""
    x0, y0, x1, y1 = rect
    a = math.radians(angle_deg)
    ux, uy = math.cos(a), math.sin(a)  # along the furrows
    nx, ny = -uy, ux
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    reach = math.hypot(x1 - x0, y1 - y0)
    strokes = [rectangle(x0, y0, x1, y1)] if outline else []
    k = -reach / 2 + spacing / 2
    while k < reach / 2:
        p = (cx + nx * k - ux * reach, cy + ny * k - uy * reach)
        q = (cx + nx * k + ux * reach, cy + ny * k + uy * reach)
        seg = clip(p, q, (x0 + 0.012, y0 + 0.012, x1 - 0.012, y1 - 0.012))
        if seg and math.dist(*seg) > 0.04:
            strokes.append(seg)
        k += spacing
    return strokes


def S(what: str, strokes: list[Points], turn: float, size: float, pen: float, amplitude: float = 1.5,
      centre=(0.5, 0.5)) -> dict:
    """One sketch: its description, its shapes in the scene's frame, how they are placed on the canvas
    (turn in degrees, size as a fraction of the canvas, centre), the wobble and the pen width."""
    return dict(what=what, strokes=strokes, turn=turn, size=size, pen=pen, amplitude=amplitude, centre=centre)


# ---- the classes -------------------------------------------------------------------------------------------------
def buildings(rng: random.Random):
    def l_shape(x, y, a, b, t):  # an L of legs a (across) and b (down), t thick, corner at (x, y)
        return polygon([(x, y), (x + a, y), (x + a, y + t), (x + t, y + t), (x + t, y + b), (x, y + b)])

    block = [rectangle(-0.42, -0.4, -0.08, -0.12), rectangle(-0.02, -0.42, 0.4, -0.16),
             rectangle(-0.44, -0.02, -0.2, 0.4), rectangle(-0.14, 0.0, 0.18, 0.22), rectangle(0.24, -0.06, 0.44, 0.4),
             rectangle(-0.12, 0.28, 0.16, 0.42), box(-0.3, -0.3, 0.06, 0.05), box(0.1, -0.3, 0.05, 0.05),
             box(0.3, 0.1, 0.06, 0.08)]
    mixed = [l_shape(-0.44, -0.44, 0.5, 0.46, 0.14), rectangle(0.14, -0.42, 0.44, -0.12),
             rectangle(0.08, 0.0, 0.46, 0.42), rectangle(0.17, 0.1, 0.37, 0.3),  # a courtyard
             rectangle(-0.44, 0.14, -0.02, 0.44), box(-0.25, -0.36, 0.05, 0.04), box(0.29, -0.27, 0.1, 0.07)]
    minimal = [rectangle(-0.45, -0.2, -0.15, 0.2), rectangle(-0.1, -0.28, 0.18, 0.26),
               rectangle(0.22, -0.12, 0.46, 0.2)]
    u_shape = [polygon([(-0.4, -0.4), (0.4, -0.4), (0.4, 0.4), (0.14, 0.4), (0.14, -0.14), (-0.14, -0.14),
                        (-0.14, 0.4), (-0.4, 0.4)]),
               box(-0.27, -0.27, 0.06, 0.06), box(0.27, -0.27, 0.07, 0.05), box(0.27, 0.2, 0.05, 0.08),
               box(0.0, -0.3, 0.12, 0.06)]
    street = [[(-0.8, -0.07), (0.8, -0.07)], [(-0.8, 0.03), (0.8, 0.03)],
              [(0.02, -0.8), (0.02, -0.07)], [(0.12, -0.8), (0.12, -0.07)]]
    roofs = [rectangle(-0.6, -0.42, -0.36, -0.14), rectangle(-0.31, -0.4, -0.04, -0.15),
             rectangle(0.18, -0.45, 0.36, -0.16), rectangle(0.4, -0.34, 0.62, -0.14),
             rectangle(-0.58, 0.1, -0.3, 0.44), rectangle(-0.24, 0.09, 0.0, 0.3), rectangle(0.06, 0.1, 0.44, 0.36),
             rectangle(0.49, 0.08, 0.62, 0.5), box(-0.12, 0.37, 0.2, 0.1), box(0.2, 0.25, 0.08, 0.06)]
    warehouse = [rectangle(-0.45, -0.3, 0.25, 0.3)] + [[(-0.45, y), (0.25, y)] for y in (-0.15, 0.0, 0.15)] + \
        [l_shape(0.3, -0.3, 0.16, 0.5, 0.12), rectangle(-0.3, 0.36, 0.1, 0.48)]
    return [
        S("a block of six flat roofs with rooftop units, turned 15 degrees", block, 15, 0.9, 4.0, 1.2),
        S("an L-shaped building, a courtyard building and two more roofs, turned -30 degrees", mixed, -30, 0.82, 4.0,
          1.2),
        S("three rectangular roofs side by side (three strokes), turned 60 degrees", minimal, 60, 0.8, 5.0, 1.8),
        S("a U-shaped building around a courtyard, with rooftop units", u_shape, 8, 0.8, 4.0, 1.0),
        S("a crossroads with roofs of all sizes on both sides", street + roofs, -5, 0.95, 3.5, 1.2),
        S("a long warehouse roof with ridge lines, an L-shaped annex and a shed, turned 100 degrees", warehouse, 100,
          0.85, 4.0, 1.0),
    ]


def freeways(rng: random.Random):
    def straight(xs, reach=0.9):
        return [[(x, -reach), (x, reach)] for x in xs]

    def cars(spots, w=0.045, h=0.085):
        return [car(x, y, w, h) for x, y in spots]

    curve = wave_line(-0.9, 0.9, 0.0, 0.14, 0.45, 0.4)
    curved = [offset(curve, d) for d in (-0.22, -0.03, 0.03, 0.22)] + \
        dashes(offset(curve, -0.125), 3, 4) + dashes(offset(curve, 0.125), 3, 4)
    curved_cars = []
    for t, d in ((0.3, -0.17), (0.55, -0.08), (0.62, 0.17), (0.8, 0.08), (0.4, 0.08)):
        i = int(t * (len(curve) - 1))
        x, y = offset(curve, d)[i]
        heading = math.degrees(math.atan2(curve[i + 1][1] - curve[i][1], curve[i + 1][0] - curve[i][0]))
        curved_cars.append(box(x, y, 0.085, 0.045, heading))
    # an overpass: the freeway runs down, a bridge crosses it; the freeway's lines stop at the bridge's edges
    under = [s for x in (-0.3, -0.05, 0.05, 0.3) for s in ([(x, -0.9), (x, -0.13)], [(x, 0.13), (x, 0.9)])]
    bridge = [[(-0.9, -0.1), (0.9, -0.1)], [(-0.9, 0.1), (0.9, 0.1)]]
    return [
        S("a freeway as three long lines (edges and median), turned 35 degrees", straight([-0.2, 0.0, 0.2]), 35, 1.0,
          4.0, 1.5),
        S("two carriageways (four lines) with a few cars, left to right",
          straight([-0.3, -0.06, 0.06, 0.3]) + cars([(-0.2, -0.3), (-0.12, 0.35), (0.16, 0.1), (0.22, -0.42)]),
          80, 0.95, 4.0, 1.2),
        S("a freeway on a gentle curve with lane marks and cars", curved + curved_cars, 30, 1.0, 3.5, 1.0),
        S("a freeway under an overpass, with cars",
          under + bridge + cars([(-0.22, -0.5), (-0.12, 0.4), (0.14, -0.35), (0.22, 0.6)]), -12, 0.9, 4.0, 1.2),
        S("a two-lane road with a dashed centre line and cars, turned -20 degrees",
          straight([-0.11, 0.11]) + dashes([(0.0, -0.9 + k * 0.05) for k in range(37)], 1, 1)
          + cars([(-0.055, -0.2), (0.055, 0.28)], 0.06, 0.1), -20, 0.95, 4.0, 1.2),
        S("a wide freeway with a planted median, shoulders and many cars, turned 10 degrees",
          straight([-0.42, -0.36, -0.08, 0.0, 0.08, 0.36, 0.42])
          + cars([(-0.3, -0.4), (-0.22, -0.05), (-0.14, 0.3), (-0.3, 0.55), (-0.14, -0.6), (0.14, -0.3), (0.22, 0.1),
                  (0.3, 0.45), (0.14, 0.62), (0.3, -0.55)]), 10, 0.9, 3.5, 1.0),
    ]


def parking_lots(rng: random.Random):
    def comb(x0, x1, y, depth, stalls):
        """One row of stall lines as one stroke: along the row, up a stall line, back, along to the next."""
        pts, w = [], (x1 - x0) / stalls
        for k in range(stalls + 1):
            x = x0 + k * w
            pts += [(x, y), (x, y - depth), (x, y)]
        return pts

    def rows_of_cars(rows, per_row, pitch, lanes=True, skip=(), tilt=0.0, reach=0.45, w=0.06, h=0.1):
        strokes = []
        for r, cy in enumerate(rows):
            for side in (-1, 1):
                for c in range(per_row):
                    if (r, side, c) in skip:
                        continue
                    x = -reach + c * pitch
                    strokes.append(box(x, cy + side * (h / 2 + 0.02), w, h, tilt))
            if lanes and r < len(rows) - 1:
                mid = (cy + rows[r + 1]) / 2
                strokes.append([(-0.8, mid), (0.8, mid)])
        return strokes

    minimal = [rectangle(-0.45, -0.42, 0.45, 0.42), comb(-0.38, 0.38, -0.12, 0.2, 7), comb(-0.38, 0.38, 0.3, 0.2, 7)]
    stalls = []
    for cy in (-0.3, 0.05, 0.4):
        stalls.append(comb(-0.42, 0.42, cy, 0.15, 8))
    taken = [box(-0.42 + (k + 0.5) * 0.105, cy - 0.075, 0.06, 0.11) for cy, ks in
             ((-0.3, (0, 1, 3, 4, 7)), (0.05, (1, 2, 5, 6)), (0.4, (0, 2, 3, 4, 6, 7))) for k in ks]
    islands = [circle(-0.5, cy, 0.05, 1.0) for cy in (-0.2, 0.2)] + [circle(0.5, cy, 0.05, 2.0) for cy in (-0.2, 0.2)]
    return [
        S("a parking lot drawn as its edge and two rows of stall lines (three strokes)", minimal, 0, 0.85, 4.0, 2.0),
        S("double rows of parked cars between lane lines, turned 25 degrees",
          rows_of_cars((-0.3, 0.0, 0.3), 8, 0.12, skip={(0, 1, 2), (1, -1, 6), (2, 1, 4)}), 25, 0.92, 3.5),
        S("angled parking: rows of tilted cars, turned -10 degrees",
          rows_of_cars((-0.32, 0.04, 0.4), 7, 0.13, tilt=25, skip={(1, 1, 3), (0, -1, 7)}), -10, 0.9, 3.5),
        S("stall lines with cars in most stalls, turned 90 degrees", stalls + taken, 90, 0.88, 3.5),
        S("a lot with tree islands at the row ends, rows running off the edge",
          rows_of_cars((-0.2, 0.2), 9, 0.12, reach=0.48) + islands, 0, 1.0, 3.0, centre=(0.55, 0.5)),
        S("sloppy rows of cars, turned 40 degrees",
          rows_of_cars((-0.36, 0.0, 0.36), 7, 0.14, lanes=False, skip={(1, 1, 1), (2, -1, 5)}, w=0.07, h=0.12),
          40, 0.95, 4.5, 3.0),
    ]


def harbors(rng: random.Random):
    def fingers(count, pitch, length, boats_per_gap, boat_len=0.16):
        """A main jetty along the bottom with finger piers up from it and boats moored between them."""
        x0 = -(count - 1) * pitch / 2
        strokes = [rectangle(x0 - 0.06, 0.36, -x0 + 0.06, 0.42)]
        for k in range(count):
            x = x0 + k * pitch
            strokes.append([(x, 0.36), (x, 0.36 - length)])
            for b in range(boats_per_gap):
                y = 0.3 - b * (length - 0.04) / boats_per_gap
                if k < count - 1 and (k + b) % 4 != 3:
                    strokes.append(boat(x + 0.015, y, boat_len, 0.05, False))
        return strokes

    def slips(count, pitch):
        """A jetty with finger piers on one side and a boat in most slips (bow out); on the other side
        boats tied alongside, end to end."""
        strokes = [[(-0.55, 0.0), (0.55, 0.0)], [(-0.55, 0.04), (0.55, 0.04)]]
        for k in range(count):
            x = -0.5 + k * pitch
            strokes.append([(x, 0.0), (x, -0.32)])
            if k < count - 1 and k % 3 != 1:
                bx = x + pitch / 2
                strokes.append(polygon([(bx - 0.035, -0.02), (bx - 0.035, -0.22), (bx, -0.3), (bx + 0.035, -0.22),
                                        (bx + 0.035, -0.02)]))
        for x in (-0.48, -0.16, 0.2):
            strokes.append(polygon([(x, 0.06), (x + 0.2, 0.06), (x + 0.28, 0.1), (x + 0.2, 0.14), (x, 0.14)]))
        return strokes

    minimal = [[(-0.015, -0.5), (-0.015, 0.5)], [(0.015, -0.5), (0.015, 0.5)],
               polygon(boat(0.03, -0.28, 0.26, 0.09, False)), polygon(boat(0.03, 0.02, 0.28, 0.09, False)),
               polygon(boat(-0.03, 0.3, 0.26, 0.09, True))]
    shore = wave_line(-0.9, 0.9, 0.38, 0.03, 0.6, 1.0)
    two_piers = [shore] + moved(marina(2, 5, 0.12), 0.0, -0.05, 0.8)
    breakwater = [wave_line(-0.7, 0.45, -0.42, 0.04, 0.3, 0.2), wave_line(-0.7, 0.45, -0.38, 0.04, 0.3, 0.2)]
    return [
        S("one long pier with boats moored on both sides, turned 20 degrees", marina(1, 8, 0.2), 20, 0.85, 4.0),
        S("a main jetty with five finger piers and boats between them", fingers(5, 0.2, 0.7, 4), 0, 0.9, 3.5),
        S("a pier and three boats (five strokes), turned -35 degrees", minimal, -35, 0.7, 4.5, 2.0),
        S("a shoreline with two piers and boats, turned 70 degrees", two_piers, 70, 0.95, 3.5),
        S("a jetty with finger piers, boats in most slips and three tied alongside, turned -40 degrees",
          slips(7, 0.15), -40, 0.9, 3.5, 1.0),
        S("a breakwater sheltering three piers of boats, turned 110 degrees",
          breakwater + moved(marina(3, 5, 0.11), 0.0, 0.08, 0.8), 110, 0.95, 3.5),
    ]


def rivers(rng: random.Random):
    def trees_along(bank, side, count, r, step):
        out = []
        for k in range(count):
            i = int((0.06 + k * step) * (len(bank) - 1)) % len(bank)
            x, y = offset(bank, side * (r + 0.03 + 0.04 * (k % 3)))[i]
            out.append(crown(x, y, r * (0.8 + 0.3 * ((k * 7) % 5) / 4), rng))
        return out

    one = wave_line(-0.9, 0.9, 0.0, 0.22, 1.6, 0.3)
    mid = wave_line(-0.9, 0.9, 0.0, 0.2, 1.0, 1.2)
    banks = [offset(mid, -0.09), offset(mid, 0.09)]
    mid2 = wave_line(-0.9, 0.9, 0.0, 0.14, 0.8, 2.4)
    banks2 = [offset(mid2, -0.08), offset(mid2, 0.08)]
    mid3 = wave_line(-0.9, 0.9, 0.0, 0.1, 0.7, 0.8)
    banks3 = [offset(mid3, -0.14), offset(mid3, 0.14)]
    (sx, sy) = offset(mid3, 0.05)[50]
    along = math.atan2(mid3[51][1] - mid3[49][1], mid3[51][0] - mid3[49][0])
    bar = blob(sx, sy, 0.045, rng, 0.1, stretch=3.0, tilt=along)
    loop = wave_line(-0.9, 0.9, 0.0, 0.26, 1.4, 4.0)
    mid5 = wave_line(-0.9, 0.9, 0.05, 0.08, 0.7, 0.1)
    upper = offset(mid5, -0.07)
    mouth = [upper[int(f * (len(upper) - 1))] for f in (0.66, 0.72)]
    tributary = [[(ex - 0.3 * (1 - t) + 0.04 * math.sin(5 * t), -0.9 + (ey + 0.9) * t)
                  for t in (k / 30 for k in range(31))] for ex, ey in mouth]
    return [
        S("a river as one meandering line (one stroke), turned 25 degrees", [one], 25, 0.95, 4.5, 2.0),
        S("a river between two meandering banks, top to bottom", banks, 95, 1.0, 4.0),
        S("a river's two banks with trees along them, turned 30 degrees",
          banks2 + trees_along(banks2[0], -1, 6, 0.05, 0.15) + trees_along(banks2[1], 1, 5, 0.05, 0.17), 30, 1.0,
          3.5, 1.2),
        S("a wide river with a sand bar, turned -60 degrees", banks3 + [bar], -60, 1.0, 4.0),
        S("a river looping through the frame (one stroke) with a few trees",
          [loop] + [crown(x, y, 0.045, rng) for x, y in ((-0.35, -0.3), (-0.28, -0.38), (0.3, 0.32), (0.4, 0.25),
                                                          (0.05, -0.36))], -10, 0.95, 4.0),
        S("a river with a tributary joining it, turned 15 degrees",
          [offset(mid5, 0.07), part(upper, 0.0, 0.66), part(upper, 0.72, 1.0)] + tributary,
          15, 1.0, 4.0),
    ]


def beaches(rng: random.Random):
    def ripple(line, amp, period):
        """A water line: the line with small regular waves along it (period in frame units)."""
        dense = resample(line, period / 8)
        return [(x + nx * amp * math.sin(2 * math.pi * k / 8), y + ny * amp * math.sin(2 * math.pi * k / 8))
                for k, ((x, y), (nx, ny)) in enumerate(zip(dense, normals(dense)))]

    def waves_off(coast, first, gap, count, amp=0.012, period=0.09, dash=None):
        """Wave lines offshore, each a little shorter than the coast; dash=(on, off) breaks them (in points)."""
        out = []
        for k in range(count):
            line = ripple(part(offset(coast, first + k * gap), 0.04 + 0.07 * (k % 2), 0.95 - 0.06 * (k % 3)), amp,
                          period)
            out += dashes(line, *dash) if dash else [line]
        return out

    c0 = wave_line(-0.9, 0.9, 0.0, 0.06, 0.6, 0.5)
    c1 = wave_line(-0.9, 0.9, 0.0, 0.05, 0.8, 2.0)
    bay = [(x, -0.15 + 0.6 * x * x + 0.02 * math.sin(9 * x)) for x in (k / 90 * 1.8 - 0.9 for k in range(91))]
    c3 = wave_line(-0.9, 0.9, 0.0, 0.04, 1.0, 3.0)
    c4 = wave_line(-0.9, 0.9, 0.0, 0.03, 0.5, 0.7)
    c5 = wave_line(-0.9, 0.9, 0.0, 0.07, 0.7, 5.0)
    umbrellas = [circle(x, y, 0.025, k) for k, (x, y) in enumerate(((-0.3, -0.22), (-0.1, -0.28), (0.18, -0.2)))]
    return [
        S("a coastline and two wavy lines of surf (three strokes), turned 30 degrees",
          [c0] + waves_off(c0, 0.1, 0.1, 2, 0.014, 0.1), 30, 1.0, 4.5, 1.5),
        S("a coastline with the wet-sand line and broken waves offshore, turned -45 degrees",
          [c1, offset(c1, 0.04)] + waves_off(c1, 0.12, 0.09, 4, 0.01, 0.07, (24, 10)), -45, 1.0, 3.5, 1.0),
        S("a curved bay with waves following the shore",
          [bay] + waves_off(bay, 0.08, 0.08, 3, 0.012, 0.09), 0, 1.0, 4.0, 1.0, centre=(0.5, 0.42)),
        S("a beach with two rows of breaking surf and three umbrellas on the sand, turned 80 degrees",
          [c3] + waves_off(c3, 0.05, 0.1, 2, 0.015, 0.06, (16, 6)) + umbrellas, 80, 1.0, 3.5, 1.0),
        S("a straight coast with long swell lines, turned 100 degrees",
          [c4] + waves_off(c4, 0.09, 0.09, 4, 0.018, 0.14), 100, 1.0, 4.0, 1.0, centre=(0.45, 0.5)),
        S("a coast with a dune line behind the sand and waves, turned 200 degrees",
          [c5, offset(c5, -0.22)] + waves_off(c5, 0.08, 0.1, 3, 0.012, 0.08, (30, 8)), 200, 1.0, 4.0, 1.2),
    ]


def agriculture(rng: random.Random):
    patchwork = (furrows((-0.5, -0.5, -0.02, -0.05), 90, 0.05) + furrows((0.02, -0.5, 0.5, -0.12), 0, 0.06)
                 + furrows((-0.5, 0.0, -0.12, 0.5), 45, 0.06) + furrows((-0.08, -0.02, 0.5, 0.5), 90, 0.07)
                 + [rectangle(0.02, -0.08, 0.5, -0.02)])
    road = [[(-0.8, -0.04), (0.8, -0.04)], [(-0.8, 0.04), (0.8, 0.04)]]
    beside_road = (furrows((-0.55, -0.55, 0.0, -0.08), 90, 0.045, False) + furrows((0.04, -0.55, 0.55, -0.08), 90, 0.06)
                   + furrows((-0.55, 0.08, 0.55, 0.55), 0, 0.055, False))
    six = []
    for rect, angle, spacing in (((-0.5, -0.5, -0.18, -0.03), 90, 0.05), ((-0.15, -0.5, 0.2, -0.2), 0, 0.05),
                                 ((0.23, -0.5, 0.5, 0.1), 90, 0.06), ((-0.15, -0.17, 0.2, 0.1), 0, 1.0),
                                 ((-0.5, 0.0, -0.18, 0.5), 0, 0.07), ((-0.15, 0.13, 0.5, 0.5), 60, 0.06)):
        six += furrows(rect, angle, spacing)
    track = [[(-0.165, -0.6 + 1.2 * k / 10 + 0.02 * math.sin(k)) for k in range(11)]]
    return [
        S("one field of parallel furrows filling the frame, turned 35 degrees",
          furrows((-0.48, -0.48, 0.48, 0.48), 90, 0.065), 35, 0.92, 3.5),
        S("a patchwork of four fields, furrows running different ways", patchwork, 8, 0.92, 3.5),
        S("two fields, one with three furrows (five strokes), turned -15 degrees",
          furrows((-0.45, -0.3, 0.05, 0.3), 90, 0.125) + [rectangle(0.1, -0.3, 0.45, 0.2)], -15, 0.85, 4.5, 2.5),
        S("a country road between furrowed fields, turned 60 degrees", road + beside_road, 60, 1.0, 3.5),
        S("an irregular field of dense furrows, turned 75 degrees",
          [polygon([(-0.44, -0.4), (0.4, -0.46), (0.46, 0.42), (-0.38, 0.4)])]
          + furrows((-0.4, -0.4, 0.4, 0.38), 0, 0.04, False), 75, 0.95, 3.0, 1.2),
        S("six fields, most furrowed, one bare, with a farm track", six + track, -3, 0.95, 3.5),
    ]


def forests(rng: random.Random):
    def canopy(count, radius, gap, area=(-0.55, -0.55, 0.55, 0.55), plain=False, avoid=None):
        spots = scatter(rng, count, radius, gap, area, avoid)
        return [circle(x, y, r, rng.uniform(0, 6.3)) if plain else crown(x, y, r, rng) for x, y, r in spots]

    def mass(cx, cy, r, lobes):
        """A clump of trees drawn as one irregular cloud outline: a lobe for each tree on its edge."""
        shape = [(k, rng.uniform(0.04, 0.12), rng.uniform(0, 2 * math.pi)) for k in (2, 3)]
        n = lobes * 8
        return [(cx + rr * math.cos(a), cy + rr * math.sin(a)) for a, rr in (
            (2 * math.pi * i / n, r * (1 + sum(h * math.sin(k * 2 * math.pi * i / n + p) for k, h, p in shape))
             * (0.9 + 0.1 * abs(math.sin(math.pi * i / 8)))) for i in range(n + 1))]

    trail = wave_line(-0.9, 0.9, 0.05, 0.08, 0.6, 1.5)
    def near_trail(x, y, r):
        return abs(y - 0.05 - 0.08 * math.sin(2 * math.pi * 0.6 * (x + 0.9) / 1.8 + 1.5)) < r + 0.05

    masses = ((-0.26, -0.26, 0.26, 15), (0.3, -0.28, 0.2, 12), (-0.28, 0.3, 0.22, 13), (0.24, 0.26, 0.26, 15))

    def in_mass(x, y, r):
        return min(math.hypot(x - a, y - b) - c for a, b, c, _ in masses) < r

    return [
        S("a dense forest: many tree crowns", canopy(60, (0.04, 0.075), -0.01), 0, 1.0, 3.0, 1.0),
        S("ten big tree crowns", canopy(10, (0.1, 0.15), 0.0, (-0.4, -0.4, 0.4, 0.4)), 0, 1.0, 4.0),
        S("tree crowns of all sizes, packed, running off the edges", canopy(55, (0.03, 0.1), -0.015), 20, 1.0, 3.0,
          1.0),
        S("a forest drawn as plain round crowns", canopy(40, (0.05, 0.07), 0.0, plain=True), 0, 1.0, 3.5, 1.0),
        S("a trail through the trees, crowns on both sides",
          [trail, offset(trail, 0.04)] + canopy(45, (0.04, 0.07), 0.0, avoid=near_trail), -30, 1.0, 3.0, 1.0),
        S("clumps of forest canopy as big cloud outlines and some single trees",
          [mass(*m) for m in masses] + canopy(25, (0.035, 0.055), 0.005, avoid=in_mass), 0, 1.0, 3.5),
    ]


def chaparral(rng: random.Random):
    def shrubs(count, radius, gap, rough=0.35, area=(-0.5, -0.5, 0.5, 0.5), avoid=None):
        return [blob(x, y, r, rng, rough) for x, y, r in scatter(rng, count, radius, gap, area, avoid)]

    def dots(count, area=(-0.5, -0.5, 0.5, 0.5)):
        """Tiny shrubs as quick scribbles: a short hooked stroke each."""
        out = []
        for _ in range(count):
            x, y = rng.uniform(area[0], area[2]), rng.uniform(area[1], area[3])
            a = rng.uniform(0, 2 * math.pi)
            out.append([(x, y), (x + 0.012 * math.cos(a), y + 0.012 * math.sin(a)),
                        (x + 0.014 * math.cos(a + 1.8), y + 0.014 * math.sin(a + 1.8))])
        return out

    track = wave_line(-0.9, 0.9, -0.1, 0.12, 0.5, 0.7)

    def clumps():
        out = []
        for cx, cy in ((-0.28, -0.25), (0.25, -0.3), (0.0, 0.05), (-0.3, 0.32), (0.32, 0.3)):
            out += shrubs(5, (0.025, 0.045), 0.01, 0.35, (cx - 0.1, cy - 0.1, cx + 0.1, cy + 0.1))
        return out

    def near_track(x, y, r):
        return abs(y + 0.1 - 0.12 * math.sin(2 * math.pi * 0.5 * (x + 0.9) / 1.8 + 0.7)) < r + 0.05

    return [
        S("scattered small shrubs on bare ground", shrubs(28, (0.025, 0.05), 0.06), 0, 1.0, 3.0, 0.8),
        S("scattered shrubs and a dirt track, turned 25 degrees",
          [track] + shrubs(18, (0.03, 0.055), 0.07, avoid=near_track), 25, 1.0, 3.5, 1.0),
        S("nine shrubs, far apart", shrubs(9, (0.04, 0.07), 0.14, 0.3), 0, 1.0, 4.0, 1.2),
        S("many tiny shrubs and scribbles", shrubs(30, (0.015, 0.035), 0.05, 0.4) + dots(25), 0, 1.0, 3.0, 0.6),
        S("shrubs in five loose clumps with bare ground between", clumps(), 10, 1.0, 3.0, 0.8),
        S("ragged shrubs of different sizes", shrubs(20, (0.02, 0.07), 0.06, 0.6), 0, 1.0, 3.5, 1.0),
    ]


def airplanes(rng: random.Random):
    def four_engines(span, sweep):
        pods = []
        for side in (1, -1):
            for f in (0.14, 0.28):
                x = side * span * f
                y = -0.12 + sweep * (abs(x) - 0.05) / (span / 2 - 0.05)
                pods.append(box(x, y - 0.035, 0.04, 0.1))
        return pods

    def business_jet():
        half = [(0.0, -0.5), (0.03, -0.44), (0.045, -0.3), (0.045, -0.05), (0.36, 0.12), (0.36, 0.17), (0.05, 0.08),
                (0.045, 0.3), (0.02, 0.36), (0.16, 0.46), (0.16, 0.5), (0.0, 0.46)]
        return [half, [(-x, y) for x, y in half], box(0.085, 0.25, 0.05, 0.14), box(-0.085, 0.25, 0.05, 0.14)]

    def twin_prop():
        strokes = light_aircraft()
        for side in (1, -1):
            strokes.append(box(side * 0.2, -0.3, 0.07, 0.18))
            strokes.append([(side * 0.2 - 0.06, -0.4), (side * 0.2 + 0.06, -0.4)])  # the propeller
        return strokes

    cross = [polygon([(0.0, -0.5), (0.05, -0.4), (0.05, 0.42), (0.0, 0.5), (-0.05, 0.42), (-0.05, -0.4)]),
             box(0.0, -0.06, 0.95, 0.12), box(0.0, 0.4, 0.34, 0.08)]
    row = []
    for k in range(3):
        row += moved(airliner(0.9, 0.22), -0.36 + k * 0.36, 0.05, 0.32)
    terminal = [rectangle(-0.55, -0.42, 0.55, -0.26)] + [[(x, -0.26), (x, -0.17)] for x in (-0.36, 0.0, 0.36)]
    vehicles = [box(-0.34, 0.1, 0.05, 0.09, 20), box(0.3, -0.25, 0.09, 0.05)]
    small = moved(airliner(0.95, 0.2) + engines(0.95, 0.2), 0.12, -0.14, 0.45, 250) + moved(vehicles, 0.05, 0.05, 0.6)
    return [
        S("a four-engined jumbo, turned 135 degrees", airliner(1.0, 0.24, 0.055, 0.36) + four_engines(1.0, 0.24), 135,
          0.85, 4.5, 1.2),
        S("a business jet with engines at the tail, turned -60 degrees", business_jet(), -60, 0.65, 4.0,
          centre=(0.52, 0.48)),
        S("a twin-propeller aircraft, heading down and to the left", twin_prop(), 200, 0.72, 4.0, 2.0),
        S("a minimal plane: fuselage, wing and tailplane as three outlines, turned 20 degrees", cross, 20, 0.8, 5.0,
          2.5),
        S("three airliners parked nose-in at a terminal, turned 30 degrees", terminal + row, 30, 0.9, 3.5, 1.2),
        S("a small airliner with engines off-centre, two service vehicles near it", small, 0, 1.0, 3.5, 1.2),
    ]


CLASSES = [("buildings", buildings, 101), ("freeway", freeways, 102), ("parkinglot", parking_lots, 103),
           ("harbor", harbors, 104), ("river", rivers, 105), ("beach", beaches, 106),
           ("agricultural", agriculture, 107), ("forest", forests, 108), ("chaparral", chaparral, 109),
           ("airplane", airplanes, 110)]


def write_sketches(classes, out: Path) -> None:
    """Each (folder, compose, seed) of `classes` -> out/<folder>/<n>.json, one per sketch compose returns."""
    for folder, compose, seed in classes:
        rng = random.Random(seed)
        items = compose(rng)
        (out / folder).mkdir(parents=True, exist_ok=True)
        for n, sk in enumerate(items):
            strokes = hand_drawn(place(sk["strokes"], sk["turn"], sk["size"], sk["centre"]), rng, sk["amplitude"], 5.0)
            doc = {"shows": sk["what"], "class": folder, "logical_size": LOGICAL,
                   "strokes": [{"width": sk["pen"], "points": [[round(x, 1), round(y, 1)] for x, y in s]}
                               for s in strokes]}
            (out / folder / f"{n}.json").write_text(json.dumps(doc, separators=(",", ":")) + "\n")
    print(f"wrote the strokes under {out}")


def main() -> None:
    write_sketches(CLASSES, OUT)


if __name__ == "__main__":
    main()
