"""Host tests: tests/host/<wing>/ holds the tests of msrctl/<wing>/; the files here test the
project as a whole.  fakecpu.py (a fake sysfs and register file) serves several wings."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
