"""Number formatting shared by the report's markdown, page and advice: three significant figures,
durations in s/min/h, fractions as percent, markdown escaping; a missing value is an em dash."""

from __future__ import annotations

import pandas as pd

DASH = "—"


def fmt_num(value: float, digits: int = 3) -> str:
    """Three significant figures, thousands separators from 1,000; NaN -> em dash."""
    if value is None or pd.isna(value):
        return DASH
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}g}"


def fmt_duration(seconds: float) -> str:
    if pd.isna(seconds):
        return DASH
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def fmt_pct(fraction: float, decimals: int = 2) -> str:
    return DASH if pd.isna(fraction) else f"{100 * fraction:.{decimals}f}"


def md_escape(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")
