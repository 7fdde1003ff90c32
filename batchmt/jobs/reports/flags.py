"""How much of a job quality checks flagged: the summary's warning and the driver's
`quality.max_flag_rate` read the same numbers."""

from __future__ import annotations

from typing import Any

# Share of rows that quality checks flagged above which the summary warns: a wrong
# target_lang or a model for another domain shows here first (quality.max_flag_rate fails).
WARN_FLAG_RATE = 0.2


def flag_rate(summary: dict[str, Any]) -> tuple[float, int, int]:
    """(share, flagged, checked) of rows that row-level QE flagged."""
    qe = summary.get("qe") or {}
    checked, flagged = int(qe.get("checked", 0)), int(qe.get("flagged", 0))
    return (flagged / checked if checked else 0.0), flagged, checked


def flag_warning(summary: dict[str, Any], limit: float = WARN_FLAG_RATE) -> str | None:
    """One line when more than `limit` of the rows were flagged, naming the top flags."""
    share, flagged, checked = flag_rate(summary)
    if share <= limit:
        return None
    counts = (summary.get("qe") or {}).get("flag_counts") or {}
    top = ", ".join(f"{k} {v:,}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1])[:3])
    return (
        f"{flagged:,} of {checked:,} rows ({share:.0%}) were flagged by quality checks "
        f"({top}); check target_lang and the model, see `batchmt report`"
    )
