"""`python -m demo` (what `make demo` runs); `--help` explains the options."""

import sys

from demo.main import main

sys.exit(main())
