"""Query expansion: a second stage-1 pass with the sketch's vector moved toward its own best matches.

A sketch and an aerial tile are far apart; two tiles of the same kind of thing are close. So the
best few distinct matches of the sketch are taken as if the analyst had liked them (the same update
and weights as refining a search, engine/query_update.py), and stage 1 runs again with that vector.
The model card's `query_expansion` says how many matches (0: none); SearchOptions.expansion turns it
off for one search. Chosen on our own validation sketches (BENCHMARKS.md, "Query expansion").

When the best matches are wrong the expanded query follows them; the sketch keeps a third of the
vector's weight, and a refined search (places marked right or wrong) is not expanded.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .query_update import background_vector, expanded_vector
from .ranking import Hit, distinct_best
from .search_types import SearchOptions


def expand_query(query: np.ndarray, hits: Sequence[Hit], layers: Sequence, options: SearchOptions,
                 count: int) -> np.ndarray:
    """The sketch's stage-1 vector (D,) moved toward the tile vectors of its `count` best distinct
    matches among `hits` (the first stage-1 pass, best first); `query` itself when there are none."""
    best = distinct_best(hits, layers, options, count)
    if not best:
        return query
    vectors = np.stack([np.asarray(layers[h.layer].entry.cls[h.tile], np.float32) for h in best])
    return expanded_vector(np.asarray(query, np.float32), vectors, background_vector(layers))
