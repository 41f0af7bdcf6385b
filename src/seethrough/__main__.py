"""``python -m seethrough``: the command line, as ``seethrough`` (and what
``torchrun --nproc-per-node N -m seethrough explain-dataset ...`` starts on each rank)."""

from .cli import main

if __name__ == "__main__":
    main()
