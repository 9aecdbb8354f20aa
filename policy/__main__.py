"""Entry point of the policy pack: `pulumi preview --policy-pack policy` runs this file.

The pack's modules sit next to it and are imported as top-level names (the pack is
published and run as this folder alone, with its own virtualenv from requirements.txt).
"""

import sys
from pathlib import Path

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

from switchyard_pack import serve  # noqa: E402  (needs this folder on sys.path first)

serve()
