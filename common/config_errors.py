"""Configuration errors that name the file, the line and the entry, for every config file and
setting: ``config/rules.yaml: line 12: rule 'bin_full' (rules[3].for): 'soon' is not a
duration (got 'soon')``.

``load_yaml`` keeps the composed YAML nodes beside the data, so a pydantic error location can
be walked back to the line it came from; ``format_errors`` turns a ``ValidationError`` into the
one-line message, each config file naming its entries its own way through ``describe``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import yaml
from pydantic import ValidationError

Loc = tuple[int | str, ...]
SHOWN = 5  # problems spelled out in one message; the rest are counted


@dataclass(frozen=True, slots=True)
class YamlDocument:
    """A parsed YAML file: its data and the node tree it was built from (None when empty)."""

    data: Any
    root: yaml.Node | None

    def line_of(self, loc: Loc) -> int | None:
        """The 1-based line of the key or list item a validation error location points at.

        Parts that are no key of the file (a union's branch, ``[key]``) are passed over.
        """
        node, line = self.root, None
        for part in loc:
            if isinstance(node, yaml.MappingNode) and isinstance(part, str):
                # The last one wins, as in the data (merged ``<<`` keys come first).
                pairs = [(k, v) for k, v in node.value if getattr(k, "value", None) == part]
                if pairs:
                    key, node = pairs[-1]
                    line = key.start_mark.line + 1
            elif (
                isinstance(node, yaml.SequenceNode)
                and isinstance(part, int)
                and 0 <= part < len(node.value)
            ):
                node = node.value[part]
                line = node.start_mark.line + 1
        return line


def load_yaml(text: str, source: str, error: type[Exception]) -> YamlDocument:
    """Parse YAML text safely, keeping its nodes; raise ``error`` naming the line on bad YAML."""
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        data = loader.construct_document(root) if root is not None else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or " ".join(str(exc).split())
        raise error(f"{source}: invalid YAML{where}: {problem}") from None
    finally:
        loader.dispose()
    return YamlDocument(data, root)


@dataclass(frozen=True, slots=True)
class Problem:
    """One validation error, its message cleaned of pydantic's prefixes."""

    loc: Loc
    type: str
    message: str
    value: object

    @property
    def has_value(self) -> bool:
        """Worth echoing: a scalar the user wrote (not a missing key or a whole mapping)."""
        return self.type != "missing" and isinstance(self.value, str | int | float | bool)


def problems(exc: ValidationError, rename: Mapping[str, str] | None = None) -> Iterator[Problem]:
    """The errors of ``exc``; ``rename`` replaces the message of some error types."""
    for err in exc.errors(include_url=False):
        message = (rename or {}).get(err["type"]) or str(err["msg"])
        message = message.removeprefix("Value error, ")
        yield Problem(tuple(err["loc"]), err["type"], message, err.get("input"))


def join(prefix: str, parts: list[str]) -> str:
    """``prefix`` + ``first; second; ...; ... and N more`` (at most SHOWN spelled out)."""
    shown = parts[:SHOWN]
    if len(parts) > len(shown):
        shown.append(f"... and {len(parts) - len(shown)} more")
    return prefix + "; ".join(shown)


def bracket_path(loc: Loc) -> str:
    """``devices[3].capacity_kg``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def entry_name(
    data: Mapping[str, Any], loc: Loc, labels: Mapping[str, str], key: str = "id"
) -> str:
    """`` (device 'bin-004')`` for an error under ``devices[3]`` when that entry has an ``id``:
    ``labels`` maps each top-level list (``devices``) to what one entry is called (``device``),
    ``key`` names the entry's identifying field. ``""`` when there is nothing to name."""
    if len(loc) < 2 or loc[0] not in labels or not isinstance(loc[1], int):
        return ""
    items = data.get(str(loc[0]))
    if not isinstance(items, list) or not 0 <= loc[1] < len(items):
        return ""
    item = items[loc[1]]
    if not isinstance(item, Mapping) or not isinstance(item.get(key), str):
        return ""
    return f" ({labels[str(loc[0])]} {item[key]!r})"


def format_errors(
    source: str,
    exc: ValidationError,
    document: YamlDocument | None = None,
    *,
    describe: Callable[[Loc], str] = bracket_path,
    entry: Callable[[Loc], str] | None = None,
    rename: Mapping[str, str] | None = None,
) -> str:
    """One line for a config file's validation errors: ``source: line N: where: why (got X)``.

    ``describe`` names the location (default ``a[0].b``), ``entry`` may add the entry's name
    after the message (`` (device 'bin-004')``), ``rename`` rewords some error types.
    """
    parts = []
    for problem in problems(exc, rename):
        line = document.line_of(problem.loc) if document is not None else None
        where = describe(problem.loc)
        text = f"line {line}: " if line else ""
        text += f"{where}: " if where else ""
        text += problem.message
        if problem.has_value:
            text += f" (got {problem.value!r})"
        if entry is not None:
            text += entry(problem.loc)
        parts.append(text)
    return join(f"{source}: ", parts)
