"""Reports: what a run leaves on disk.

:mod:`~seethrough.reporting.serialize` writes any result as JSON (``to_jsonable``),
:mod:`~seethrough.reporting.output` holds the output folder (``OutputFolder``: checked before
any work, one run at a time, never half-written) and :mod:`~seethrough.reporting.html` builds
the ``index.html`` page. Import them from their modules: this package does not import
them all (the serialiser imports every analysis package).
"""

from .html import ImageSection, render_index

__all__ = ["ImageSection", "render_index"]
