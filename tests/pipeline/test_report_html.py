"""The HTML report renders every section, escapes every corpus string and runs nothing."""

from __future__ import annotations

from batchmt.jobs.reports.render import ReportData, ShardLine, WorstRow, bar_chart, render

ATTACK = '<script>document.title="pwned"</script><img src=x onerror="alert(1)">'


def _data() -> ReportData:
    return ReportData(
        title="job <b>",
        summary={"rows": 3, "model": "m&m"},
        status_counts={"ok": 2, "ok_fallback": 1},
        flag_counts={"wrong_language": 1},
        shards=[ShardLine("s0", 2, 1.0, 2, 1), ShardLine("s1", 1, 0.5, 1, 0)],
        glossary={"terms": 2, "honoured": 2, "adherence": 1.0},
        format_counts={"ok": 1},
        worst=[WorstRow("id<1>", ATTACK, ATTACK, None, ["wrong_language"], 0.1, "ok")],
    )


def test_corpus_strings_are_escaped_and_no_script_is_emitted() -> None:
    page = render(_data())
    assert "<script" not in page and "<img" not in page and 'onerror="' not in page
    assert "&lt;script&gt;document.title=&quot;pwned&quot;&lt;/script&gt;" in page
    assert "id&lt;1&gt;" in page and "m&amp;m" in page and "job &lt;b&gt;" in page


def test_every_section_is_present_and_self_contained() -> None:
    page = render(_data())
    for section in ("summary", "statuses", "flags", "throughput", "flag-rates", "glossary",
                    "formats", "worst"):  # fmt: skip
        assert f'<section id="{section}">' in page
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "Content-Security-Policy" in page and "default-src 'none'" in page


def test_empty_sections_say_why() -> None:
    page = render(ReportData("t", {}, {}, {}))
    assert "the job used no glossary" in page and "no row flagged" in page


def test_bars_scale_to_the_largest_value() -> None:
    svg = bar_chart("x", ["a", "b"], [10.0, 5.0], "rows/s")
    widths = [float(part.split('"')[0]) for part in svg.split('width="')[2:]]
    assert widths[0] == 2 * widths[1]
