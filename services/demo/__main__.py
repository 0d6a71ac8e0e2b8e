"""`python -m services.demo` (what `make demo` runs); `--help` explains the options."""

import sys

from services.demo.main import main

sys.exit(main())
