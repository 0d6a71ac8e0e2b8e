"""`python -m services.dialogue`: run the service until SIGTERM (see `--help`)."""

import sys

from services.dialogue.server import main

sys.exit(main())
