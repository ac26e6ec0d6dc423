"""The streaming filter for entity and chart tags in Home answers."""

from __future__ import annotations

import json
import random
from collections.abc import Container, Iterable

import pytest

from app.chat.tags import CHART_TAG_LIMIT, ENTITY_TAG_LIMIT, PlainTextFilter, TagFilter

KNOWN = frozenset({"tasks:t1", "tasks:t2", "projects:p1", "notes:n1", "timelines:m1"})


def run(chunks: Iterable[str], known: Container[str] = KNOWN) -> str:
    tags = TagFilter(known)
    return "".join(tags.feed(chunk) for chunk in chunks) + tags.finish()


def chart(**fields: object) -> str:
    return f"<chart>{json.dumps(fields)}</chart>"


VALID_CHART = {
    "chartType": "bar",
    "title": "Tasks per status",
    "data": [{"status": "todo", "count": 3}, {"status": "done", "count": 5}],
    "config": {"count": {"label": "Tasks", "color": "var(--chart-1)"}},
}
VALID_CHART_OUT = (
    '<chart>{"chartType":"bar","title":"Tasks per status",'
    '"data":[{"status":"todo","count":3},{"status":"done","count":5}],'
    '"config":{"count":{"label":"Tasks","color":"var(--chart-1)"}}}</chart>'
)

# One answer exercising every rule; EXPECTED is what the app must receive.
ANSWER = (
    "Today (a < b, x<y, <b>bold</b>):\n"
    '<task>[ t1, "t2",\n  ghost ]</task>\n'
    "<project>['p1']</project> <note>[n1]</note><timeline>[ghost]</timeline>\n"
    f"{chart(**VALID_CHART)}\n"
    '<chart>{"chartType": "donut", "data": [], "config": {}}</chart>'
    "<TIMELINE>[m1]</Timeline> <div>[t1]</div>\n"
    "<task> see [fake]</task> and <task>[t1]</note> end <no"
)
EXPECTED = (
    "Today (a < b, x<y, <b>bold</b>):\n"
    "<task>[t1,t2]</task>\n"
    "<project>[p1]</project> <note>[n1]</note>\n"
    f"{VALID_CHART_OUT}\n"
    "<timeline>[m1]</timeline> <div>[t1]</div>\n"
    " see [fake] and [t1] end <no"
)


def test_known_ids_pass_and_are_normalised() -> None:
    assert run(['Done: <task>[t1, "t2"]</task>.']) == "Done: <task>[t1,t2]</task>."
    assert run(["<note>\n  [ 'n1' ]\n</note>"]) == "<note>[n1]</note>"
    assert run(["<project>[p1,p1]</project>"]) == "<project>[p1]</project>"


def test_unknown_ids_are_removed() -> None:
    assert run(["<task>[t1, made-up, t2]</task>"]) == "<task>[t1,t2]</task>"


@pytest.mark.parametrize("tag", ["<task>[made-up]</task>", "<task>[]</task>", '<note>["x"]</note>'])
def test_tag_without_known_ids_is_dropped(tag: str) -> None:
    assert run([f"before {tag} after"]) == "before  after"


def test_multiple_tags_in_one_chunk() -> None:
    text = "<task>[t1]</task><project>[p1]</project><note>[zz]</note><timeline>[m1]</timeline>"
    assert run([text]) == "<task>[t1]</task><project>[p1]</project><timeline>[m1]</timeline>"


def test_ids_are_checked_when_the_closing_marker_completes() -> None:
    known: set[str] = set()
    tags = TagFilter(known)
    assert tags.feed("<task>[new") == ""
    known.add("tasks:new")
    assert tags.feed("]</task") == ""
    assert tags.feed(">") == "<task>[new]</task>"

    late: set[str] = set()
    tags = TagFilter(late)
    assert tags.feed("<task>[later]</task>") == ""
    late.add("tasks:later")
    assert tags.finish() == ""


def test_whole_answer() -> None:
    assert run([ANSWER]) == EXPECTED


def test_every_single_split_point_gives_the_same_output() -> None:
    for cut in range(len(ANSWER) + 1):
        assert run([ANSWER[:cut], ANSWER[cut:]]) == EXPECTED, cut


def test_random_multi_splits_give_the_same_output() -> None:
    rng = random.Random(20240611)
    assert run(ANSWER) == EXPECTED  # one character per chunk
    for _ in range(300):
        cuts = sorted(rng.sample(range(1, len(ANSWER)), rng.randint(2, 40)))
        chunks = [ANSWER[a:b] for a, b in zip([0, *cuts], [*cuts, len(ANSWER)], strict=True)]
        assert run(chunks) == EXPECTED, cuts


def test_ordinary_angle_brackets_are_released_at_once() -> None:
    tags = TagFilter(KNOWN)
    assert tags.feed("a < b") == "a < b"
    assert tags.feed(" x<y ") == " x<y "
    assert tags.feed("<b>bold</b> ") == "<b>bold</b> "
    assert tags.feed("<div>[t1]</div>") == "<div>[t1]</div>"
    assert tags.finish() == ""


def test_only_the_ambiguous_suffix_is_held() -> None:
    tags = TagFilter(KNOWN)
    assert tags.feed("a <") == "a "
    assert tags.feed(" b") == "< b"
    assert tags.feed("see <ta") == "see "
    assert tags.feed("ble") == "<table"
    assert tags.feed("x </ta") == "x "
    assert tags.feed("g>") == "</tag>"
    assert tags.feed("end <no") == "end "
    assert tags.finish() == "<no"


def test_markers_are_case_insensitive() -> None:
    assert run(["<TASK>[t1]</Task>"]) == "<task>[t1]</task>"
    assert run(["<Task>[fake]</TASK>"]) == ""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<task>[t1]</note>", "[t1]"),
        ("<task><task>[t1]</task></task>", "<task>[t1]</task>"),
        ("<task>[t1]<task>[t2]</task>", "[t1]<task>[t2]</task>"),
        ("<task>[t1<note>[n1]</note>", "[t1<note>[n1]</note>"),
        ("<task> see [fake]</task>", " see [fake]"),
        ("<task>[t1,]</task>", "[t1,]"),
        ("<task>[t1 t2]</task>", "[t1 t2]"),
        ('<task>["t1]</task>', '["t1]'),
        ('<task>[""]</task>', '[""]'),
        ("<task>t1</task>", "t1"),
        ("stray </chart> and </task> markers", "stray  and  markers"),
        ("<chart> not json </chart>", " not json "),
    ],
)
def test_malformed_tags_are_text_without_their_markers(text: str, expected: str) -> None:
    assert run([text]) == expected


def test_valid_chart_is_reserialised_compactly() -> None:
    assert run(["Here:\n", chart(**VALID_CHART), "\nok"]) == f"Here:\n{VALID_CHART_OUT}\nok"
    minimal = chart(chartType="radial", data=[], config={"v": {"label": "V"}})
    assert run([minimal]) == (
        '<chart>{"chartType":"radial","data":[],"config":{"v":{"label":"V"}}}</chart>'
    )


@pytest.mark.parametrize("chart_type", ["area", "bar", "line", "pie", "radar", "radial"])
def test_every_chart_type_is_accepted(chart_type: str) -> None:
    out = run([chart(chartType=chart_type, data=[{"a": 1}], config={})])
    assert out == f'<chart>{{"chartType":"{chart_type}","data":[{{"a":1}}],"config":{{}}}}</chart>'


def test_markers_cannot_hide_inside_a_chart() -> None:
    fields = {**VALID_CHART, "title": "<task>[fake]</task> & <b>"}
    out = run([chart(**fields)])
    body = out.removeprefix("<chart>").removesuffix("</chart>")
    assert "<" not in body
    assert json.loads(body) == fields


def test_non_ascii_and_lone_surrogates_are_escaped() -> None:
    raw = '{"chartType":"pie","title":"caf\u00e9 \\ud800","data":[],"config":{}}'
    out = run([f"<chart>{raw}</chart>"])
    assert out == (
        '<chart>{"chartType":"pie","title":"caf\\u00e9 \\ud800","data":[],"config":{}}</chart>'
    )
    assert out.isascii()


INVALID_CHARTS = {
    "bad json": '<chart>{"chartType": "bar", "data": [</chart>',
    "not an object": "<chart>{}</chart>",
    "unknown type": chart(chartType="donut", data=[], config={}),
    "unhashable type": chart(chartType=["bar"], data=[], config={}),
    "missing type": chart(data=[], config={}),
    "title not text": chart(chartType="bar", title=3, data=[], config={}),
    "data an object": chart(chartType="bar", data={}, config={}),
    "data a string": chart(chartType="bar", data="", config={}),
    "missing data": chart(chartType="bar", config={}),
    "row not an object": chart(chartType="bar", data=[1, 2], config={}),
    "config not an object": chart(chartType="bar", data=[], config=[]),
    "missing config": chart(chartType="bar", data=[]),
    "series not an object": chart(chartType="bar", data=[], config={"a": "A"}),
    "series without label": chart(chartType="bar", data=[], config={"a": {"color": "red"}}),
    "label not text": chart(chartType="bar", data=[], config={"a": {"label": 1}}),
    "color not text": chart(chartType="bar", data=[], config={"a": {"label": "A", "color": 1}}),
    "extra series key": chart(chartType="bar", data=[], config={"a": {"label": "A", "x": 1}}),
    "nan": '<chart>{"chartType":"bar","data":[{"a":NaN}],"config":{}}</chart>',
    "infinity": '<chart>{"chartType":"bar","data":[{"a":1e999}],"config":{}}</chart>',
    "deep nesting": '<chart>{"chartType":"bar","data":[{"a":'
    + "[" * 30_000
    + "]" * 30_000
    + '}],"config":{}}</chart>',
    "too long": chart(
        chartType="bar", data=[{"a": "x" * CHART_TAG_LIMIT}], config={"a": {"label": "A"}}
    ),
}


@pytest.mark.parametrize("bad", INVALID_CHARTS.values(), ids=INVALID_CHARTS.keys())
def test_invalid_chart_is_dropped(bad: str) -> None:
    assert run(["a ", bad, " b"]) == "a  b"
    assert run(["a " + bad + " b"]) == "a  b"


def test_chart_length_limit_is_exact_whatever_the_chunks() -> None:
    def sized(length: int) -> str:
        body = json.dumps({"chartType": "bar", "data": [], "config": {}, "pad": ""})
        return "<chart>" + body[:-2] + "x" * (length - len(body)) + '"}</chart>'

    fits, too_long = sized(CHART_TAG_LIMIT), sized(CHART_TAG_LIMIT + 1)
    compact = json.dumps(json.loads(fits[len("<chart>") : -len("</chart>")]), separators=(",", ":"))
    assert run([fits]) == f"<chart>{compact}</chart>"
    assert run([too_long]) == ""
    for size in (1, 7, 8, 1000, 4096):
        assert run(fits[i : i + size] for i in range(0, len(fits), size)) == run([fits])
        assert run(too_long[i : i + size] for i in range(0, len(too_long), size)) == ""


def test_oversized_chart_is_skipped_up_to_its_closing_marker() -> None:
    tags = TagFilter(KNOWN)
    assert tags.feed('before <chart>{"data": "') == "before "
    for _ in range(10):
        assert tags.feed("y" * CHART_TAG_LIMIT) == ""
    assert tags.feed('"}</CHA') == ""
    assert tags.feed("RT> after <task>[t1]</task>") == " after <task>[t1]</task>"


def test_entity_tag_over_the_limit_is_text() -> None:
    ids = "t1," * (ENTITY_TAG_LIMIT // 3) + "t2"
    assert run([f"<task>[{ids}]</task>"]) == f"[{ids}]"
    ids = "t1," * (ENTITY_TAG_LIMIT // 3 - 10) + "t2"
    assert run([f"<task>[{ids}]</task>"]) == "<task>[t1,t2]</task>"


def test_whitespace_before_a_chart_body_is_bounded() -> None:
    body = json.dumps(VALID_CHART)
    lead = " " * ENTITY_TAG_LIMIT
    assert run([f"<chart>{lead}{body}</chart>"]) == VALID_CHART_OUT
    assert run([f"<chart>{lead} {body}</chart>"]) == f"{lead} {body}"


@pytest.mark.parametrize(
    ("chunks", "expected"),
    [
        (["text <task>[t1, t2"], "text "),
        (["text <task>[t1]</tas"], "text "),
        (['text <chart>{"chartType": "bar"'], "text "),
        (["text <chart>  "], "text "),
        (["text <tas"], "text <tas"),
        (["text </task"], "text </task"),
    ],
)
def test_finish_drops_unterminated_tags_and_releases_partial_markers(
    chunks: list[str], expected: str
) -> None:
    assert run(chunks) == expected


def test_filter_starts_afresh_after_finish() -> None:
    tags = TagFilter(KNOWN)
    assert tags.feed("<task>[t1") == ""
    assert tags.finish() == ""
    assert tags.feed("]</task> plain") == "] plain"


@pytest.mark.parametrize(
    ("unit", "released", "at_finish"),
    [
        ("<", "<", "<"),
        ("<<t", "<<t", "<<t"),
        ("<task>[", "[", ""),
        ("<task>[t1,", "[t1,", ""),
        ("<task>[t1]<", "[t1]<", ""),
        ("<task>[t1]</task>", "<task>[t1]</task>", "<task>[t1]</task>"),
        ("<chart>", "", ""),
        ("</chart>", "", ""),
        ("<chart>{", "", ""),
    ],
)
def test_adversarial_input_completes_with_the_specified_output(
    unit: str, released: str, at_finish: str
) -> None:
    repeats = 100_000 // len(unit) + 1
    text = unit * repeats
    expected = released * (repeats - 1) + at_finish
    assert run([text]) == expected
    assert run(text[i : i + 7] for i in range(0, len(text), 7)) == expected


def test_an_id_counts_only_inside_a_tag_of_its_own_type() -> None:
    assert run(["<project>[t1]</project>"]) == ""
    assert run(["<task>[t1, p1]</task>"]) == "<task>[t1]</task>"
    assert run(["<timeline>[n1]</timeline><note>[n1]</note>"]) == "<note>[n1]</note>"


# -- Floating: plain text --------------------------------------------------------


def plain(chunks: Iterable[str], known: Container[str] = KNOWN) -> str:
    text = PlainTextFilter(known)
    return "".join(text.feed(chunk) for chunk in chunks) + text.finish()


PLAIN_ANSWER = (
    "Due today (a < b, x<y): <task>[t1]</task> and <task>[invented]</task>, "
    '<b>urgent</b><br/> <span class="x">really</span>\n'
    f"{chart(**VALID_CHART)} "
    '<chart>{"chartType": "bar", "data": [broken</chart> '
    "<task> see [fake]</task> done <project>[p1"
)
PLAIN_EXPECTED = "Due today (a < b, x<y):  and , urgent really\n   see [fake] done "


def test_floating_answers_keep_only_the_words() -> None:
    assert plain([PLAIN_ANSWER]) == PLAIN_EXPECTED


@pytest.mark.parametrize("seed", range(20))
def test_floating_filter_is_independent_of_chunk_boundaries(seed: int) -> None:
    rng = random.Random(seed)
    cuts = sorted(rng.sample(range(1, len(PLAIN_ANSWER)), 12))
    chunks = [
        PLAIN_ANSWER[a:b] for a, b in zip([0, *cuts], [*cuts, len(PLAIN_ANSWER)], strict=True)
    ]

    assert plain(chunks) == PLAIN_EXPECTED


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("x <y", "x <y"),  # unfinished at the end: not markup
        ("if a < b and c > d", "if a < b and c > d"),  # a space after "<" rules it out
        ("1 <2> 3", "1 <2> 3"),
        ("<" + "a" * 300 + ">", "<" + "a" * 300 + ">"),  # too long to be markup
        ("<em>fine</em>", "fine"),
    ],
)
def test_floating_filter_leaves_what_is_not_markup(answer: str, expected: str) -> None:
    assert plain([answer]) == expected
