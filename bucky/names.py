"""Graphite path rules exactly as Bucky 2 applied them, so an existing Graphite tree stays the same.

path = [name_prefix] + name_prefix_parts + reversed host labels (after removing the first matching
`name_host_trim` suffix) + name split on "." + name_postfix_parts + [name_postfix]; then "."
inside any part becomes `name_replace_char`; then consecutive duplicate parts collapse
(`cpu.cpu.0` -> `cpu.0`).
A sample whose host is bucky.sample.GRAPHITE_PATH (the carbon input; a kind of host, not a host
name) keeps its name unchanged: it is already the Graphite path its sender chose.
A Graphite 1.1 tag suffix (`;k=v...`, from StatsD tags) is kept out of the rules and re-attached.

`NameRules` is built once from the validated config; the outputs cache its results per (host, name)
(bucky.daemon.outputs.paths.PathCache), since distinct pairs are few compared with the sample rate.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from bucky.config import Config
from bucky.sample import GRAPHITE_PATH


def _as_parts(value: str | Sequence[str] | None) -> list[str]:
    if not value:
        return []
    if isinstance(value, str):
        return [value]
    return [str(p) for p in value]


class NameRules:
    def __init__(
        self,
        prefix: str | None = None,
        prefix_parts: Iterable[str] | None = None,
        postfix: str | None = None,
        postfix_parts: Iterable[str] | None = None,
        replace_char: str | None = "_",
        strip_duplicates: bool = True,
        host_trim: Iterable[str] = (),
    ) -> None:
        self._head = _as_parts(prefix) + _as_parts(tuple(prefix_parts or ()))
        self._tail = _as_parts(tuple(postfix_parts or ())) + _as_parts(postfix)
        self._replace_char = replace_char
        self._strip_duplicates = strip_duplicates
        self._host_trim = [
            [p.strip() for p in reversed(suffix.split("."))] for suffix in host_trim if suffix
        ]

    @classmethod
    def from_config(cls, cfg: Config) -> NameRules:
        return cls(
            prefix=cfg.name_prefix,
            prefix_parts=cfg.name_prefix_parts,
            postfix=cfg.name_postfix,
            postfix_parts=cfg.name_postfix_parts,
            replace_char=cfg.name_replace_char,
            strip_duplicates=cfg.name_strip_duplicates,
            host_trim=cfg.name_host_trim,
        )

    def host_parts(self, host: str) -> list[str]:
        parts = [p.strip() for p in reversed(host.split("."))]
        for suffix in self._host_trim:
            if parts[: len(suffix)] == suffix:
                return parts[len(suffix) :]
        return parts

    def statname(self, host: str | None, name: str) -> str:
        """The Graphite path (callers on a hot path cache it: bucky.daemon.outputs.paths)."""
        if host is GRAPHITE_PATH:
            return name
        name, sep, tags = name.partition(";")
        parts = list(self._head)
        if host:
            parts.extend(self.host_parts(host))
        parts.extend(name.split("."))
        parts.extend(self._tail)
        if self._replace_char is not None:
            parts = [p.replace(".", self._replace_char) for p in parts]
        if self._strip_duplicates:
            parts = [p for i, p in enumerate(parts) if i == 0 or p != parts[i - 1]]
        return ".".join(parts) + sep + tags
