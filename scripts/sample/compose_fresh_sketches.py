"""Composes the fresh check sketches (benchmarks/fresh_sketches/<class>/<n>.json), three for each of the ten
UC Merced classes of the validation sketches.

They were composed after sketch centering was chosen on the validation sketches, and before anyone measured
anything on them, to check that choice on sketches it was not tuned on (BENCHMARKS.md, "Sketch centering").
Like the validation sketches (whose helpers this reuses) they are thin outlines of one pen drawn top-down,
written as points in their own frame, never traced from an image; mostly quicker sketches with fewer strokes,
as an analyst in a hurry draws. Never test queries and never used to choose a setting: a later choice made on
them would need another fresh set. Every sketch has its own fixed seed.

    .venv/bin/python scripts/sample/compose_fresh_sketches.py
    .venv/bin/python scripts/sample/render_sketches.py --folder benchmarks/fresh_sketches
"""
from __future__ import annotations

import math
import random
from pathlib import Path

from compose_sketches import airliner, boat, car, circle, light_aircraft, marina, rectangle, stick_plane
from compose_validation_sketches import S, blob, box, crown, dashes, furrows, moved, offset, polygon, scatter, \
    wave_line, write_sketches

OUT = Path(__file__).resolve().parents[2] / "benchmarks" / "fresh_sketches"


def airplanes(rng: random.Random):
    taxiway = [[(0.42, -0.9), (0.42, 0.9)], [(0.5, -0.9), (0.5, 0.9)]]
    return [
        S("a hurried plane: body, wing and tail strokes, turned 50 degrees", stick_plane(0.85, 0.2), 50, 0.8, 4.5, 2.0),
        S("two airliners parked nose to the same side, turned -20 degrees",
          moved(airliner(), -0.26, 0.0, 0.5) + moved(airliner(), 0.26, 0.05, 0.5), -20, 0.95, 3.5),
        S("a small plane beside a taxiway, turned 130 degrees", moved(light_aircraft(), -0.15, 0.0, 0.8) + taxiway,
          130, 0.9, 4.0),
    ]


def buildings(rng: random.Random):
    grid = [box(x, y, 0.34, 0.3) for x in (-0.21, 0.21) for y in (-0.2, 0.2)]
    slabs = [rectangle(-0.45, -0.4, 0.45, -0.15), rectangle(-0.45, 0.15, 0.45, 0.4)] + \
        [box(x, 0.0, 0.08, 0.06) for x in (-0.3, 0.0, 0.25)]
    odd = [polygon([(-0.4, -0.35), (0.1, -0.42), (0.42, -0.1), (0.3, 0.38), (-0.2, 0.42), (-0.44, 0.05)]),
           box(-0.1, -0.15, 0.1, 0.08), box(0.15, 0.05, 0.08, 0.08), box(-0.15, 0.2, 0.12, 0.07)]
    return [
        S("four square roofs in two rows, turned 10 degrees", grid, 10, 0.85, 4.0, 1.5),
        S("two long slab buildings with a few sheds between them, turned -50 degrees", slabs, -50, 0.9, 4.0),
        S("one large irregular roof with rooftop units", odd, 20, 0.85, 4.0, 1.2),
    ]


def freeways(rng: random.Random):
    lanes = [[(-0.15, -0.9), (-0.15, 0.9)], [(0.15, -0.9), (0.15, 0.9)]] + dashes([(0.0, -0.9 + k * 0.05)
                                                                                     for k in range(37)], 2, 2)
    ramp = [[(-0.2, -0.9), (-0.2, 0.9)], [(0.0, -0.9), (0.0, 0.9)], [(0.2, -0.9), (0.2, 0.9)],
            [(0.2 + 0.5 * (1 - math.cos(t)), 0.6 - 0.9 * math.sin(t))
             for t in (k / 20 * math.pi / 2 for k in range(21))]]
    carriageways = [[(x, -0.9), (x, 0.9)] for x in (-0.3, -0.08, 0.08, 0.3)] + \
        [car(x, y, 0.06, 0.11) for x, y in ((-0.19, -0.4), (-0.2, 0.25), (0.19, -0.1), (0.2, 0.5))]
    return [
        S("a road's two edges and its dashed centre line, turned 70 degrees", lanes, 70, 1.0, 4.0, 1.5),
        S("a freeway with an exit ramp curving off, turned -25 degrees", ramp, -25, 1.0, 4.0),
        S("two carriageways with four cars on them, turned 15 degrees", carriageways, 15, 1.0, 3.5),
    ]


def parking_lots(rng: random.Random):
    cars_only = [box(-0.4 + c * 0.16, r, 0.1, 0.17) for r in (-0.3, 0.0, 0.3) for c in range(6) if (r, c) != (0.0, 2)]
    stalls = [rectangle(-0.45, -0.4, 0.45, 0.4)]
    for y in (-0.1, 0.4):
        stalls += [[(-0.4 + k * 0.1, y), (-0.4 + k * 0.1, y - 0.22)] for k in range(9)]
    diagonal = [rectangle(-0.46, -0.44, 0.46, 0.44)] + \
        [box(-0.35 + c * 0.14, y, 0.07, 0.14, 35) for y in (-0.22, 0.2) for c in range(6)]
    return [
        S("three rows of cars, no lines, turned 15 degrees", cars_only, 15, 0.9, 3.5),
        S("a lot's edge and two rows of stall lines, turned -40 degrees", stalls, -40, 0.9, 3.5, 1.5),
        S("a lot with two rows of cars parked at an angle", diagonal, 5, 0.9, 3.5),
    ]


def harbors(rng: random.Random):
    quay = [[(-0.9, 0.2), (0.9, 0.2)]] + [boat(-0.55 + k * 0.27, 0.12, 0.22, 0.07, k % 2 == 0) for k in range(5)]
    tee = [[(-0.02, 0.5), (-0.02, -0.2)], [(0.02, 0.5), (0.02, -0.2)], [(-0.4, -0.2), (0.4, -0.2)],
           [(-0.4, -0.24), (0.4, -0.24)]] + \
        [polygon([(x + px, -0.26 - py) for px, py in ((-0.028, 0.0), (-0.028, 0.11), (0.0, 0.16), (0.028, 0.11),
                                                      (0.028, 0.0))]) for x in (-0.3, -0.1, 0.12, 0.32)] + \
        [polygon(boat(-0.04, y, 0.18, 0.06, True)) for y in (0.05, 0.3)]
    return [
        S("two piers with boats on both sides, turned 45 degrees", marina(2, 6, 0.15), 45, 0.9, 4.0),
        S("a quay with five boats tied along it, turned -15 degrees", quay, -15, 0.95, 4.0, 1.5),
        S("a T-shaped pier with boats at its head and along its side, turned 160 degrees", tee, 160, 0.85, 3.5),
    ]


def rivers(rng: random.Random):
    mid = wave_line(-0.9, 0.9, 0.0, 0.18, 0.9, 0.7)
    wide = [offset(mid, -0.12), offset(mid, 0.12)]
    meander = wave_line(-0.9, 0.9, 0.0, 0.3, 1.3, 1.9)
    oxbow = blob(0.1, 0.35, 0.12, rng, 0.15, stretch=1.8, tilt=0.3)
    mid3 = wave_line(-0.9, 0.9, 0.0, 0.12, 0.6, 2.8)
    banks = [offset(mid3, -0.1), offset(mid3, 0.1)]
    bridge = [[(-0.05, -0.5), (-0.05, 0.5)], [(0.05, -0.5), (0.05, 0.5)]]
    return [
        S("a wide river between two banks, turned 120 degrees", wide, 120, 1.0, 4.0),
        S("a meander (one stroke) and an oxbow lake beside it, turned -30 degrees", [meander, oxbow], -30, 1.0, 4.5,
          1.5),
        S("a river's two banks with a bridge across, turned 60 degrees", banks + bridge, 60, 1.0, 4.0),
    ]


def beaches(rng: random.Random):
    coast = wave_line(-0.9, 0.9, -0.05, 0.05, 0.7, 1.1)
    waves = [offset(wave_line(-0.8, 0.85, 0.0, 0.05, 0.7, 1.1), d) for d in (0.12, 0.22, 0.32)]
    coast2 = wave_line(-0.9, 0.9, 0.0, 0.04, 0.5, 2.2)
    sand = [coast2, offset(coast2, -0.15)] + [circle(x, -0.3, 0.03, k) for k, x in enumerate((-0.4, -0.05, 0.3))]
    arc = [(0.9 * math.sin(t), -0.3 + 0.55 * math.cos(t)) for t in (k / 40 * 2.2 - 1.1 for k in range(41))]
    return [
        S("a coastline and three lines of waves, turned 10 degrees", [coast] + waves, 10, 1.0, 4.0, 1.5),
        S("the water's edge, the back of the sand and three umbrellas, turned -70 degrees", sand, -70, 1.0, 4.0),
        S("a curved beach with its surf line", [arc, offset(arc, 0.08), offset(arc, 0.16)], 180, 1.0, 4.0, 1.2),
    ]


def agriculture(rng: random.Random):
    three = furrows((-0.5, -0.5, 0.0, 0.5), 0, 0.08) + furrows((0.04, -0.5, 0.5, 0.0), 90, 0.08) + \
        furrows((0.04, 0.04, 0.5, 0.5), 45, 0.08)
    two = furrows((-0.48, -0.45, 0.1, 0.45), 90, 0.06) + [rectangle(0.14, -0.45, 0.48, 0.45)]
    strips = []
    for k, x0 in enumerate((-0.5, -0.25, 0.0, 0.25)):
        strips += furrows((x0, -0.5, x0 + 0.23, 0.5), 90 if k % 2 else 0, 0.07 if k % 2 else 0.09)
    return [
        S("three fields with furrows three ways, turned 25 degrees", three, 25, 0.92, 3.5),
        S("a furrowed field beside a bare one, turned -10 degrees", two, -10, 0.9, 3.5),
        S("four long strips, furrowed across and along in turn, turned 50 degrees", strips, 50, 0.95, 3.5),
    ]


def forests(rng: random.Random):
    dense = [crown(x, y, r, rng) for x, y, r in scatter(rng, 26, (0.06, 0.1), 0.0)]
    track = [[(-0.9 + 1.8 * k / 20, 0.05 + 0.06 * math.sin(k / 3)) for k in range(21)]]
    beside = [crown(x, y, r, rng) for x, y, r in scatter(rng, 22, (0.05, 0.09), 0.0,
                                                           avoid=lambda x, y, r: abs(y - 0.05) < r + 0.08)]
    groups = [crown(cx + dx, cy + dy, 0.07, rng) for cx, cy in ((-0.25, -0.22), (0.25, -0.1), (-0.05, 0.28))
              for dx, dy in ((0.0, 0.0), (0.1, 0.04), (-0.08, 0.08), (0.05, -0.1), (0.12, 0.12))]
    return [
        S("tree crowns filling the frame, turned 0 degrees", dense, 0, 0.95, 3.5),
        S("crowns on both sides of a forest track, turned 35 degrees", beside + track, 35, 0.95, 3.5),
        S("three clumps of overlapping crowns, turned -20 degrees", groups, -20, 0.9, 3.5),
    ]


def chaparral(rng: random.Random):
    shrubs = [blob(x, y, r, rng, 0.3) for x, y, r in scatter(rng, 14, (0.03, 0.08), 0.06)]
    trail = [wave_line(-0.9, 0.9, 0.1, 0.12, 0.8, 0.5)]
    along = [blob(x, y, r, rng, 0.3) for x, y, r in scatter(rng, 10, (0.03, 0.06), 0.08)]
    dots = [circle(x, y, r, k) for k, (x, y, r) in enumerate(scatter(rng, 24, (0.012, 0.03), 0.05))]
    return [
        S("scattered shrubs of all sizes on bare ground, turned 15 degrees", shrubs, 15, 0.95, 3.5),
        S("a dirt trail through scattered shrubs, turned -45 degrees", trail + along, -45, 1.0, 3.5),
        S("many small bushes as little circles", dots, 0, 0.95, 3.5),
    ]


CLASSES = [("buildings", buildings, 201), ("freeway", freeways, 202), ("parkinglot", parking_lots, 203),
           ("harbor", harbors, 204), ("river", rivers, 205), ("beach", beaches, 206),
           ("agricultural", agriculture, 207), ("forest", forests, 208), ("chaparral", chaparral, 209),
           ("airplane", airplanes, 210)]


def main() -> None:
    write_sketches(CLASSES, OUT)


if __name__ == "__main__":
    main()
