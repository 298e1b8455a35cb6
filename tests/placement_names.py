"""Deterministic metric names for the placement tests (carbon's routers, carbon-c-relay, Bucky).

`varied_names()` mixes plain dotted names, unicode (accents, Greek, CJK, Arabic, emoji, combining
marks), Graphite 1.1 tagged names (tags out of order, repeated keys, keys that sort differently as
strings than as keys, invalid segments carbon refuses to normalize), OpenMetrics-style names,
names starting with '~', the empty name and very long names. `ascii_names()` are the plain ones
carbon-c-relay relays unchanged (it rewrites other characters and hashes tagged names its own way).
"""

from __future__ import annotations

import random

_ASCII = "abcdefghijklmnopqrstuvwxyz0123456789_-"
_UNICODE = (
    "éüßçøåñ"  # Latin-1
    "αβγδλΩ"  # Greek
    "метрика"  # Cyrillic
    "指标服务器"  # CJK
    "مقياس"  # Arabic (right to left)
    "\u0301\u0308"  # combining marks
    "😀🚀𝔘"  # astral plane
)


def _segment(rng: random.Random, alphabet: str, lo: int = 1, hi: int = 12) -> str:
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(lo, hi)))


def _dotted(rng: random.Random, alphabet: str, parts: tuple[int, int] = (1, 8)) -> str:
    return ".".join(_segment(rng, alphabet) for _ in range(rng.randint(*parts)))


def _tagged(rng: random.Random) -> str:
    base = _dotted(rng, _ASCII + "é指")
    keys = ["a", "b", "a.b", "host", "dc", "name", "z_1", "k-2", "ünï"]
    tags = [f"{rng.choice(keys)}={_segment(rng, _ASCII + '.:', 1, 6)}"
            for _ in range(rng.randint(1, 5))]
    roll = rng.random()
    if roll < 0.05:
        tags.append(rng.choice(["bad", "=v", "k=", "k=~v", "k!x=v", "k^=v"]))  # carbon: unparseable
    elif roll < 0.08:
        base = "~" + base
    elif roll < 0.10:
        base = ""
    return ";".join([base, *tags])


def _openmetrics(rng: random.Random) -> str:
    base = _dotted(rng, _ASCII, (1, 3))
    tags = [f'{rng.choice(["a", "b", "job", "le"])}="{_segment(rng, _ASCII + " ,", 1, 6)}"'
            for _ in range(rng.randint(0, 3))]
    if rng.random() < 0.1:
        tags.append('q="x\\"y"')
    return base + "{" + ",".join(tags) + "}"


def varied_names(count: int = 10_000, seed: int = 20261206) -> list[str]:
    rng = random.Random(seed)
    names: list[str] = []
    while len(names) < count:
        roll = rng.random()
        if roll < 0.45:
            name = _dotted(rng, _ASCII)
        elif roll < 0.65:
            name = _dotted(rng, _ASCII + _UNICODE)
        elif roll < 0.85:
            name = _tagged(rng)
        elif roll < 0.90:
            name = _openmetrics(rng)
        elif roll < 0.93:
            name = "~" * rng.randint(1, 3) + _dotted(rng, _ASCII)
        elif roll < 0.96:  # odd but possible: spaces, empty components, '=' and ';' in odd places
            name = rng.choice(["", ";", "~", "a..b", ".a.", "a b", "=", "a;;b=1", "a;b=1;",
                               "a;b=c=d", "{}", 'x{a="1"}', "a;name=zz"]) + _segment(rng, _ASCII)
        else:  # very long: 300 to 4,000 characters
            name = ".".join(_segment(rng, _ASCII + "é", 20, 60)
                            for _ in range(rng.randint(10, 70)))
        names.append(name)
    names[:4] = ["", "a", "~a;b=2;a=1", "carbon.agents.host-a.cpuUsage"]
    return names


def ascii_names(count: int = 3_000, seed: int = 20261207) -> list[str]:
    """Plain names carbon-c-relay relays as they are: [a-z0-9_-] components joined by single
    dots, up to ~1,000 characters."""
    rng = random.Random(seed)
    names = set()
    while len(names) < count:
        if rng.random() < 0.03:
            names.add(".".join(_segment(rng, _ASCII, 20, 40) for _ in range(rng.randint(5, 25))))
        else:
            names.add(_dotted(rng, _ASCII))
    return sorted(names)
