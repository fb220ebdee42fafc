"""``python -m agentdb``: the version and native core report; with arguments, the CLI.

    python -m agentdb              # same as `agentdb --version`
    python -m agentdb demo         # same as `agentdb demo`
"""

from __future__ import annotations

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or ["--version"]))
