"""`python -m model_packages.serving [serve]`: the container entry point."""

import sys

from model_packages.serving.launch import main

sys.exit(main())
