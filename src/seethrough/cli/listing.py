"""``seethrough layers`` and ``seethrough methods``: what there is to choose from."""

from __future__ import annotations

from typing import Any

import click

from ._shared import ModelChoice, load_net, model_options

__all__ = ["layers_command", "methods_command"]


@click.command("layers")
@model_options()
def layers_command(*, model: ModelChoice) -> None:
    """List the model's layers in execution order, with output shapes."""
    from ..core.layers import model_layers

    net = load_net(model)
    infos = model_layers(net.module, net.preprocess.channels, net.preprocess.size)
    click.echo(f"{'layer':<40} {'type':<20} output shape")
    for info in infos:
        calls = f"  (runs {info.calls}×)" if info.calls > 1 else ""
        shape = "×".join(str(s) for s in info.shape)
        click.echo(f"{info.name:<40} {info.kind:<20} {shape}{calls}")


@click.command("methods")
def methods_command() -> None:
    """List the attribution methods and their options."""
    import dataclasses

    from ..attribution import method_names
    from ..attribution.method import METHODS
    from ..jobs.explain import method_summary

    for name in method_names():
        cls = METHODS[name]
        fields = ", ".join(f"{f.name}={_default(f)!r}" for f in dataclasses.fields(cls))
        click.echo(f"{name:<22} {method_summary(cls)}")
        if fields:
            click.echo(f"{'':<22} options: {fields}")


def _default(field: Any) -> Any:
    import dataclasses

    if field.default is not dataclasses.MISSING:
        return field.default
    return field.default_factory() if field.default_factory is not dataclasses.MISSING else "?"
