"""``python -m qaev.cli``."""
import sys

from qaev.cli.main import main

sys.exit(main())
