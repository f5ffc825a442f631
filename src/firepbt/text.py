"""Text for a terminal: names and values from a run (hyperparameter and metric names, categorical
values, messages) are shown with their control characters escaped, so that a name holding an
escape sequence cannot retitle, recolour or rewrite the user's terminal.

>>> printable("lr\\x1b]0;pwned\\x07")
'lr\\\\x1b]0;pwned\\\\x07'
>>> printable("two\\nlines\\tand a tab")
'two\\nlines\\tand a tab'
"""

from __future__ import annotations

import re

# C0 controls but newline and tab, DEL, and the C1 controls
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """``text`` with every control character but newline and tab written as ``\\xNN``."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)
