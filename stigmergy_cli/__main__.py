from __future__ import annotations

import sys

from stigmergy_cli.cli import main

sys.exit(main())
