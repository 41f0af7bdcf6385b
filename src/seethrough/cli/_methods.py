"""``--methods``, ``--target``, ``--layer`` and ``--set`` as text → what the library takes.

Parsing only: the library routes and validates the options
(:func:`seethrough.attribution.api.route_options` sends each to the methods that have it;
:func:`seethrough.attribution.make_method` is the one validator of method options).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import click

from ..errors import InvalidOptionError, suggest
from ._shared import Decorator, option_group

if TYPE_CHECKING:
    from ..attribution import Method

_INTEGER = re.compile(r"[+-]?\d+")


@dataclass(frozen=True)
class MethodChoice:
    """``--methods``, ``--target``, ``--layer`` and ``--set`` of one command."""

    methods: str
    target: str | None
    layer: str | None
    settings: tuple[str, ...]

    def resolve(self, given: Mapping[str, Mapping[str, Any]] | None = None) -> Chosen:
        """The configured methods and the target, checked before anything is loaded.
        ``given``: options the command supplies itself, per method name (used for the
        chosen methods only; they replace ``--set``'s)."""
        from ..attribution import make_method

        names = method_names(self.methods)
        options = method_options(self.settings, names, self.layer)
        for name, extra in (given or {}).items():
            if name in options:
                options[name].update(extra)
        methods = tuple(make_method(n, **options[n]) for n in names)
        return Chosen(methods, options, target(self.target), layer_names(self.layer))


@dataclass(frozen=True)
class Chosen:
    """What :class:`MethodChoice` stands for: the methods (with their options, also per
    method name), the target (as ``parse_target`` takes it) and the ``--layer`` names."""

    methods: tuple[Method, ...]
    options: dict[str, dict[str, Any]]
    target: Any
    layers: list[str]


def method_choice(default: str, text: str) -> Decorator:
    """``--methods`` (default ``default``, help ``text``), ``--target``, ``--layer`` and
    ``--set``, handed to the command as ``methods: MethodChoice``."""
    return option_group(
        MethodChoice,
        "methods",
        click.option("--methods", default=default, show_default=True, help=text),
        click.option(
            "--target",
            default=None,
            help="'predicted' (default), a class index or name, 'top3', or one per image "
            "separated by commas.",
        ),
        click.option(
            "--layer",
            default=None,
            help="Layer for CAM methods (dotted name, see 'seethrough layers'); several, "
            "separated by commas, are fused into one map (each scaled to max |value| 1, "
            "then averaged).",
        ),
        click.option(
            "--set",
            "settings",
            multiple=True,
            metavar="[METHOD.]KEY=VALUE",
            help="A method option, e.g. --set samples=20 or --set smoothgrad.samples=20 "
            "(values are Python literals; anything else is a string).",
        ),
    )


def method_names(text: str) -> list[str]:
    """``--methods`` → method names; ``all`` means every method (the controls
    ``edge_detector`` and ``random_noise`` only when named)."""
    from ..attribution import method_names as registered
    from ..trust import controls  # noqa: F401  (registers the controls)

    valid = registered(include_controls=True)
    names = [n.strip() for n in text.split(",") if n.strip()]
    if names == ["all"]:
        return list(registered())
    if not names:
        raise InvalidOptionError("--methods is empty; name at least one method, or 'all'")
    for name in names:
        if name not in valid:
            raise InvalidOptionError(
                f"unknown method {name!r}{suggest(name, valid)} "
                f"(valid: {', '.join(valid)}, or 'all'; see 'seethrough methods')"
            )
        if names.count(name) > 1:
            raise InvalidOptionError(f"--methods names {name!r} twice; give each method once")
    return names


def parse_value(text: str) -> Any:
    """A ``--set`` value as a Python literal (``true``/``false``/``none`` in any case too);
    anything else stays a string, for the method's validator to judge."""
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered == "none":
        return None
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return text


def method_options(
    settings: Sequence[str], names: Sequence[str], layer: str | None = None
) -> dict[str, dict[str, Any]]:
    """``--set KEY=VALUE`` (to every chosen method that has the option), ``--set
    METHOD.KEY=VALUE`` and ``--layer`` (to the chosen methods that take a layer; several,
    separated by commas, as a list) → the options of each method."""
    per_method: dict[str, dict[str, Any]] = {name: {} for name in names}
    for item in settings:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise InvalidOptionError(
                f"--set {item!r}: expected KEY=VALUE or METHOD.KEY=VALUE, e.g. --set steps=64"
            )
        scope, dot, option = key.rpartition(".")
        if dot and scope not in per_method:
            raise InvalidOptionError(
                f"--set {item!r}: method {scope!r} is not among --methods"
                f"{suggest(scope, names)} (chosen: {', '.join(names)})"
            )
        value = parse_value(text.strip())
        if dot:
            per_method[scope][option] = value  # the method's validator judges the name
            continue
        try:
            _route(per_method, option, value)
        except InvalidOptionError as error:
            raise InvalidOptionError(f"--set {item!r}: {error}") from None
    if layer is not None:
        _add_layer(per_method, layer_names(layer))
    return per_method


def _route(per_method: dict[str, dict[str, Any]], option: str, value: Any) -> None:
    """``option=value`` to every method of ``per_method`` that has the option."""
    from ..attribution.api import route_options

    for name, routed in zip(per_method, route_options(list(per_method), {option: value})):
        per_method[name].update(routed)


def _add_layer(per_method: dict[str, dict[str, Any]], layers: list[str]) -> None:
    try:
        _route(per_method, "layer", layers if len(layers) > 1 else layers[0])
    except InvalidOptionError:
        from ..attribution import method_names
        from ..attribution.api import route_options

        every = method_names()
        cams = [m for m, o in zip(every, route_options(every, {"layer": layers})) if o]
        raise InvalidOptionError(
            f"--layer is only used by CAM methods ({', '.join(cams)}), and none is among --methods"
        ) from None


def layer_names(layer: str | None) -> list[str]:
    """``--layer`` → its layer names (none when not given)."""
    return [] if layer is None else [part.strip() for part in layer.split(",")]


def target(text: str | None) -> Any:
    """``--target`` text → what ``parse_target`` takes (checked once the model is loaded)."""
    if text is None or text.strip() == "predicted":
        return None
    values: list[Any] = [
        int(p) if _INTEGER.fullmatch(p) else p for p in (part.strip() for part in text.split(","))
    ]
    if any(v == "" for v in values):
        raise InvalidOptionError(f"--target {text!r} has an empty item; separate classes by commas")
    return values[0] if len(values) == 1 else values
