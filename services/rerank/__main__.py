"""`python -m services.rerank`: run the service until SIGTERM (see `--help`)."""

import sys

from services.rerank.server import main

sys.exit(main())
