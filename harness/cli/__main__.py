"""`python -m harness.cli`: the same as `mkh`."""

import sys

from harness.cli import main

sys.exit(main())
