"""Reports: HTML pages built from result objects."""

from .html import ImageSection, render_index

__all__ = ["ImageSection", "render_index"]
