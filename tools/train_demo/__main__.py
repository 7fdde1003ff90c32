"""``python -m tools.train_demo``: see ``tools.train_demo.cli``."""

from tools.train_demo.cli import main

if __name__ == "__main__":
    main()
