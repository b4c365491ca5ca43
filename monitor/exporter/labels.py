"""Label values are user data: None becomes "", `run_name` and `base_model` are cut to 200 characters,
lone surrogates (possible from JSON) become U+FFFD so encoding never fails, and control characters
(newlines included) become spaces. Quotes and backslashes are escaped when the exposition is written.
"""

from __future__ import annotations

import unicodedata

# Long enough for any real run name, short enough that a 1 KB name cannot bloat every scrape.
MAX_NAME_LABEL_CHARS = 200


def _clean_char(char: str) -> str:
    category = unicodedata.category(char)
    if category == "Cs":  # a lone surrogate: cannot be encoded as UTF-8
        return "\ufffd"
    if category == "Cc":  # NUL, CR, tab, newline...: one line in a Grafana legend or a Slack message
        return " "
    return char


def label_value(value: str | None, *, max_chars: int | None = None) -> str:
    """A label value that always encodes and renders: see the module docstring."""
    if value is None:
        return ""
    if max_chars is not None and len(value) > max_chars:
        value = value[:max_chars]
    if value.isascii() and value.isprintable():
        return value  # the common case, checked in C
    return "".join(map(_clean_char, value))
