"""`python -m s5lra.data` is the `s5lra-data` command."""

import sys

from s5lra.data.cli import main

sys.exit(main())
