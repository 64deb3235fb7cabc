"""Composes the sample sketches (samples/sketches/<what>/<n>.json) stroke by stroke.

Each sketch is drawn as a person draws on the plugin's canvas: a few outlines and lines of one felt
pen, in whatever orientation, not quite straight and not quite closed. A shape is written down as
point lists in its own frame (length 1, centred, nose or long side up), placed on the canvas with a
turn, a size and an offset, resampled every few units as a mouse would report it, and moved off the
ideal line by a slow wobble. The strokes are stored in the canvas's logical units (0..512, y down),
which SketchCanvas.add_stroke(points, width, normalized=False) takes as they are;
render_sketches.py turns them into the PNGs.

    .venv/bin/python scripts/sample/compose_sketches.py   # rewrites samples/sketches/*/*.json
"""
from __future__ import annotations

import json
import math
import random
from pathlib import Path

LOGICAL = 512.0  # the canvas's logical side (sketch_search_plugin/sketch_canvas.py)
OUT = Path(__file__).resolve().parents[2] / "samples" / "sketches"
Points = list[tuple[float, float]]


# ---- shapes in their own frame (x right, y down, nose/top at negative y, length about 1) ------------
def mirrored(half: Points) -> tuple[Points, Points]:
    """A symmetric outline as two strokes from nose to tail: the right side and its mirror image."""
    return half, [(-x, y) for x, y in half]


def airliner(span=0.95, sweep=0.22, body=0.05, tail=0.36) -> list[Points]:
    """Swept wings and tailplane, drawn as two half outlines from the nose."""
    half = [(0.0, -0.5), (0.03, -0.47), (body, -0.41), (body, -0.12),
            (span / 2, -0.12 + sweep), (span / 2, -0.07 + sweep), (body + 0.02, 0.06),
            (body * 0.8, 0.33), (tail / 2, 0.43), (tail / 2, 0.47), (0.02, 0.45), (0.0, 0.5)]
    return list(mirrored(half))


def engines(span=0.95, sweep=0.22) -> list[Points]:
    """Two engine pods under the wings (small closed loops ahead of the leading edge)."""
    pods = []
    for side in (1, -1):
        x = side * span * 0.17
        y = -0.12 + sweep * (abs(x) - 0.05) / (span / 2 - 0.05)  # the leading edge there
        pods.append([(x - 0.02, y - 0.09), (x + 0.02, y - 0.09), (x + 0.02, y + 0.01), (x - 0.02, y + 0.01),
                     (x - 0.02, y - 0.09)])
    return pods


def light_aircraft() -> list[Points]:
    """Straight high wing, slim tapering body, straight tailplane."""
    half = [(0.0, -0.5), (0.04, -0.46), (0.05, -0.3), (0.48, -0.3), (0.48, -0.17), (0.05, -0.17),
            (0.025, 0.35), (0.17, 0.36), (0.17, 0.45), (0.02, 0.45), (0.0, 0.5)]
    return list(mirrored(half))


def stick_plane(span=0.9, sweep=0.25) -> list[Points]:
    """A hurried plane: a fuselage line, a wing chevron and a tail chevron."""
    return [[(0.0, -0.5), (0.0, 0.5)],
            [(-span / 2, -0.1 + sweep), (0.0, -0.12), (span / 2, -0.1 + sweep)],
            [(-0.17, 0.5), (0.0, 0.38), (0.17, 0.5)]]


def rectangle(x0, y0, x1, y1) -> Points:
    return [(x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0)]


def boat(x, y, length, width, towards_left: bool) -> Points:
    """A moored boat seen from above: a square stern and a pointed bow."""
    d = -1 if towards_left else 1
    return [(x, y - width / 2), (x + d * length * 0.7, y - width / 2), (x + d * length, y),
            (x + d * length * 0.7, y + width / 2), (x, y + width / 2)]


def marina(piers=2, boats=7, boat_length=0.17) -> list[Points]:
    """Long piers with boats moored on both sides."""
    strokes = []
    gap = 2 * boat_length + 0.14
    for p in range(piers):
        cx = (p - (piers - 1) / 2) * gap
        strokes.append([(cx - 0.015, -0.5), (cx - 0.015, 0.5)])
        strokes.append([(cx + 0.015, -0.5), (cx + 0.015, 0.5)])
        for b in range(boats):
            y = -0.44 + b * 0.88 / (boats - 1)
            strokes.append(boat(cx - 0.02, y, boat_length, 0.06, True))
            strokes.append(boat(cx + 0.02, y, boat_length, 0.06, False))
    return strokes


def car(x, y, w=0.05, h=0.1) -> Points:
    return rectangle(x - w / 2, y - h / 2, x + w / 2, y + h / 2)


def freeway(cars: list[tuple[float, float]]) -> list[Points]:
    """Two carriageways (edges and a median strip), dashed lane lines and a few cars."""
    strokes = [[(x, -0.5), (x, 0.5)] for x in (-0.42, -0.06, 0.06, 0.42)]
    for lane in (-0.3, -0.18, 0.18, 0.3):
        strokes += [[(lane, y), (lane, y + 0.07)] for y in (-0.46, -0.26, -0.06, 0.14, 0.34)]
    strokes += [car(x, y, 0.05, 0.09) for x, y in cars]
    return strokes


def parking_lot(rows=3, per_row=7, empty=()) -> list[Points]:
    """A lot outline with double rows of parked cars (some bays empty)."""
    strokes = [rectangle(-0.5, -0.5, 0.5, 0.5)]
    for r in range(rows):
        cy = -0.33 + r * 0.33
        for side in (-1, 1):
            for c in range(per_row):
                if (r, side, c) in empty:
                    continue
                strokes.append(car(-0.39 + c * 0.13, cy + side * 0.065, 0.07, 0.11))
    return strokes


def tennis_courts(count=2) -> list[Points]:
    """Side-by-side courts (doubles and singles lines, service boxes, net) inside a fence."""
    w, h, gap = 0.46, 1.0, 0.12
    total = count * w + (count - 1) * gap
    strokes = [rectangle(-total / 2 - 0.06, -0.56, total / 2 + 0.06, 0.56)]
    for i in range(count):
        x0 = -total / 2 + i * (w + gap)
        x1 = x0 + w
        inset = w * 0.125
        service = 0.27
        strokes += [rectangle(x0, -h / 2, x1, h / 2),
                    [(x0 + inset, -h / 2), (x0 + inset, h / 2)], [(x1 - inset, -h / 2), (x1 - inset, h / 2)],
                    [(x0 + inset, -service), (x1 - inset, -service)], [(x0 + inset, service), (x1 - inset, service)],
                    [((x0 + x1) / 2, -service), ((x0 + x1) / 2, service)],
                    [(x0 - 0.03, 0.0), (x1 + 0.03, 0.0)]]
    return strokes


def circle(cx, cy, r, start=0.0) -> Points:
    n = max(12, int(r * 120))
    return [(cx + r * math.cos(start + 2 * math.pi * k / n), cy + r * math.sin(start + 2 * math.pi * k / n))
            for k in range(n + 1)]


def storage_tanks(tanks: list[tuple[float, float, float]]) -> list[Points]:
    """Round tanks, each with the ring of its floating roof."""
    strokes = []
    for cx, cy, r in tanks:
        strokes.append(circle(cx, cy, r, start=random.uniform(0, 6.3)))
        strokes.append(circle(cx, cy, r * 0.72, start=random.uniform(0, 6.3)))
    return strokes


# ---- placing and hand-drawing ---------------------------------------------------------------------------
def place(strokes: list[Points], turn_deg: float, size: float, centre=(0.5, 0.5)) -> list[Points]:
    """Turns the shape, scales it to `size` of the canvas, moves it to `centre` (0..1): logical units."""
    a = math.radians(turn_deg)
    c, s = math.cos(a), math.sin(a)
    return [[((centre[0] + size * (x * c - y * s)) * LOGICAL, (centre[1] + size * (x * s + y * c)) * LOGICAL)
             for x, y in stroke] for stroke in strokes]


def resample(stroke: Points, step: float) -> Points:
    """Points every `step` units along the polyline (a mouse reports positions, not corners)."""
    out = [stroke[0]]
    for (x0, y0), (x1, y1) in zip(stroke, stroke[1:]):
        n = max(1, int(math.hypot(x1 - x0, y1 - y0) / step))
        out += [(x0 + (x1 - x0) * k / n, y0 + (y1 - y0) * k / n) for k in range(1, n + 1)]
    return out


def wobble(stroke: Points, rng: random.Random, amplitude: float) -> Points:
    """A slow sideways drift (a sum of three waves along the stroke) and an end that misses its mark."""
    waves = [(rng.uniform(0.002, 0.01), rng.uniform(0, 2 * math.pi), amplitude * rng.uniform(0.4, 1.0))
             for _ in range(3)]
    out, walked = [], 0.0
    for i, (x, y) in enumerate(stroke):
        if i:
            walked += math.hypot(x - stroke[i - 1][0], y - stroke[i - 1][1])
        j0, j1 = max(0, i - 1), min(len(stroke) - 1, i + 1)
        dx, dy = stroke[j1][0] - stroke[j0][0], stroke[j1][1] - stroke[j0][1]
        norm = math.hypot(dx, dy) or 1.0
        shift = sum(a * math.sin(2 * math.pi * f * walked + p) for f, p, a in waves)
        out.append((x - dy / norm * shift, y + dx / norm * shift))
    miss = (rng.uniform(-1.5, 1.5), rng.uniform(-1.5, 1.5))
    tail = min(6, len(out))
    for k in range(tail):  # ease the miss into the last few points
        x, y = out[-tail + k]
        out[-tail + k] = (x + miss[0] * (k + 1) / tail, y + miss[1] * (k + 1) / tail)
    return out


def crossing(inside: tuple[float, float], outside: tuple[float, float]) -> tuple[float, float]:
    """Where the segment from a point on the canvas to one off it meets the canvas's edge."""
    t = 1.0
    for a, b in zip(inside, outside):
        if b < 0:
            t = min(t, a / (a - b))
        elif b > LOGICAL:
            t = min(t, (LOGICAL - a) / (b - a))
    return tuple(a + (b - a) * t for a, b in zip(inside, outside))


def on_canvas(stroke: Points) -> list[Points]:
    """The parts of a stroke on the canvas, each ending at the edge where it runs off (as a line
    drawn off the paper; the canvas itself never reports a point outside)."""
    def inside(p):
        return 0 <= p[0] <= LOGICAL and 0 <= p[1] <= LOGICAL

    parts, current = [], []
    for i, p in enumerate(stroke):
        if inside(p):
            if not current and i and not inside(stroke[i - 1]):
                current.append(crossing(p, stroke[i - 1]))
            current.append(p)
        elif current:
            current.append(crossing(current[-1], p))
            parts.append(current)
            current = []
    if current:
        parts.append(current)
    return [part for part in parts if len(part) > 1]


def hand_drawn(strokes: list[Points], rng: random.Random, amplitude: float = 2.0, step: float = 3.0) -> list[Points]:
    return [part for s in strokes for part in on_canvas(wobble(resample(s, step), rng, amplitude))]


# ---- the sample sketches -------------------------------------------------------------------------------
def sketches(rng: random.Random) -> dict[str, list[tuple[str, list[Points], float]]]:
    """{folder: [(description, strokes in logical units, pen width)]}; folders are the truth classes
    of samples/ucm_truth.geojson where the sample has them."""
    def two_planes() -> list[Points]:
        a = place(airliner(0.9, 0.2), 90, 0.42, (0.5, 0.3))
        b = place(airliner(0.9, 0.2), 90, 0.42, (0.5, 0.72))
        return a + b

    planes = [
        ("an airliner, nose up", place(airliner(), 0, 0.8), 5.0),
        ("an airliner with engines, turned 40 degrees",
         place(airliner(1.0, 0.24) + engines(1.0, 0.24), 40, 0.78), 5.0),
        ("a wide-bodied airliner heading left", place(airliner(1.05, 0.18, 0.065, 0.4), -95, 0.8), 6.0),
        ("a small airliner, turned 150 degrees", place(airliner(0.85, 0.26), 150, 0.6, (0.46, 0.52)), 4.0),
        ("a light aircraft with a straight wing, turned -30 degrees", place(light_aircraft(), -30, 0.75), 5.0),
        ("a quick stick-figure plane, turned 70 degrees", place(stick_plane(), 70, 0.75), 6.0),
        ("an airliner with engines, heading down", place(airliner(0.92, 0.25) + engines(0.92, 0.25), 180, 0.85), 5.0),
        ("two airliners parked side by side, heading right", two_planes(), 4.0),
    ]
    harbours = [
        ("two piers with boats on both sides", place(marina(2, 7), 0, 0.85), 4.0),
        ("three piers with boats, turned 60 degrees", place(marina(3, 6, 0.13), 60, 0.72), 4.0),
    ]
    freeways = [
        ("a divided freeway with lanes and cars, turned 30 degrees",
         place(freeway([(-0.24, -0.2), (-0.12, 0.25), (0.24, 0.05), (0.36, -0.35)]), 30, 0.9), 4.0),
        ("a divided freeway, left to right", place(freeway([(0.12, -0.3), (-0.36, 0.1), (0.24, 0.32)]), 90, 0.92), 5.0),
    ]
    lots = [
        ("a parking lot with three double rows of cars",
         place(parking_lot(3, 7, {(0, 1, 2), (1, -1, 5), (2, 1, 0), (2, 1, 6)}), 0, 0.85), 4.0),
        ("a parking lot, turned 20 degrees", place(parking_lot(3, 7, {(1, 1, 3), (0, -1, 6)}), 20, 0.75), 4.0),
    ]
    courts = [
        ("two tennis courts inside a fence", place(tennis_courts(2), 0, 0.78), 4.0),
        ("one tennis court, turned 35 degrees", place(tennis_courts(1), 35, 0.72), 4.0),
    ]
    tanks = [
        ("four storage tanks", place(storage_tanks([(-0.22, -0.22, 0.2), (0.23, -0.2, 0.2), (-0.2, 0.25, 0.2),
                                                     (0.25, 0.26, 0.16)]), 0, 0.85), 5.0),
        ("a row of three tanks and a small one", place(storage_tanks([(-0.33, 0, 0.15), (0, 0, 0.15), (0.33, 0, 0.15),
                                                                      (0.1, 0.3, 0.08)]), -20, 0.9), 5.0),
    ]
    groups = dict(airplane=planes, harbor=harbours, freeway=freeways, parkinglot=lots, tenniscourt=courts,
                  storagetanks=tanks)
    return {folder: [(what, hand_drawn(strokes, rng), pen) for what, strokes, pen in items]
            for folder, items in groups.items()}


def main() -> None:
    rng = random.Random(15)
    random.seed(15)  # the tanks' roof rings start at random points
    for folder, items in sketches(rng).items():
        (OUT / folder).mkdir(parents=True, exist_ok=True)
        for n, (what, strokes, pen) in enumerate(items):
            doc = {"shows": what, "class": folder, "logical_size": LOGICAL,
                   "strokes": [{"width": pen, "points": [[round(x, 1), round(y, 1)] for x, y in s]} for s in strokes]}
            (OUT / folder / f"{n}.json").write_text(json.dumps(doc, separators=(",", ":")) + "\n")
    print(f"wrote the strokes under {OUT}")


if __name__ == "__main__":
    main()
