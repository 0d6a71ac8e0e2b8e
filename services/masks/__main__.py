"""`python -m services.masks`: run the service until SIGTERM (see `--help`)."""

import sys

from services.masks.server import main

sys.exit(main())
