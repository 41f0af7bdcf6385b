"""``python -m seethrough.cli``: the same as the ``seethrough`` command."""

from . import main

main()
