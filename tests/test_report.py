"""`retrosearch report`: the page renders in a real browser (headless Chromium), shows the run's own figures,
keeps every text from the data as text, asks the network for nothing, and stays bounded on a 100k-row run.

Set RETROSEARCH_SCREENSHOTS=DIR to keep the screenshots the tests take."""

from __future__ import annotations

import html
import io
import json
import os
import random
import re
import shlex
import shutil
from pathlib import Path

import pytest

from retrosearch.cli import main
from retrosearch.engines import SamplingConfig
from retrosearch.search.retro_search import RetroSearchConfig
from retrosearch.stages.revise import ReviseConfig, revise
from retrosearch.tools.report import write_report
from retrosearch.tools.report.segments import compare, joined, single
from retrosearch.trace import KeywordMatcher

HOSTILE_ID = "<img src=x onerror=\"document.title='pwned-id'\">"
HOSTILE_PROBLEM = "find x </script><script>document.title='pwned-problem'</script> & <b>bold</b>"
HOSTILE_STEP = "Wait , <img src=x onerror=\"document.title='pwned-trace'\"> <script>alert(1)</script>"


def test_a_revised_trace_is_its_kept_prefix_then_the_cut_part_or_the_new_rollout():
    original = "<think>\n\nfirst\n\nWait , second\n\nthird\n\n**Wait**, fourth\n\n</think>\n\n\\boxed{1}"
    revised = "<think>\n\nfirst\n\nWait , second\n\nthird goes on\n\n</think>\n\n\\boxed{1}"
    before, after = compare(original, revised, KeywordMatcher(), 10_000)
    assert joined(before) == original and joined(after) == revised
    assert [kind for kind, _, _ in before] == ["head", "kept", "kept", "kept", "cut", "cut", "cut", "answer"]
    assert [kind for kind, _, _ in after] == ["head", "kept", "kept", "kept", "new", "new", "answer"]
    highlighted = {text[:length] for _, length, text in before if length}
    assert highlighted == {"Wait", "**Wait"}  # the keyword, with the emphasis the matcher reads past
    assert single("Wait , a first step is no switch\n\nWait , this is", KeywordMatcher(), 10_000)[0][1] == 0


def test_a_trace_longer_than_the_cap_is_cut_and_says_so():
    text = "\n\n".join(f"step {n} " + "x" * 50 for n in range(100))
    segments = single(text, KeywordMatcher(), 1_000)
    assert sum(len(t) for _, _, t in segments[:-1]) <= 1_000
    assert segments[-1][0] == "omitted" and "more characters not shown" in segments[-1][2]


@pytest.fixture(scope="module")
def revise_run(teacher_file, tmp_path_factory, organism_engine) -> Path:
    """A real Retro-Search run of the organism over 40 teacher traces (some skipped: wrong original answers)."""
    folder = tmp_path_factory.mktemp("report") / "revise"
    search = RetroSearchConfig(sampling=SamplingConfig(max_new_tokens=400))
    revise(ReviseConfig(input=str(teacher_file), output=str(folder)), search, engine=organism_engine, quiet=True)
    return folder


@pytest.fixture(scope="module")
def hostile_run(revise_run, tmp_path_factory) -> Path:
    """The same run with one row whose id, problem, reason and traces hold markup and script."""
    folder = tmp_path_factory.mktemp("hostile") / "revise"
    shutil.copytree(revise_run, folder)
    rows = [json.loads(line) for line in (folder / "revised.jsonl").read_text().splitlines()]
    row = next(row for row in rows if row["status"] == "revised")
    steps = row["original"].split("\n\n")
    row.update(
        id=HOSTILE_ID,
        problem=HOSTILE_PROBLEM,
        reason="<i>shorter</i> correct rollout accepted",
        original="\n\n".join([*steps[:3], HOSTILE_STEP, *steps[3:]]),
    )
    rows.append({"id": "failed-row", "reason": "engine died: <b>out of memory</b>", "status": "error"})
    (folder / "revised.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


@pytest.fixture  # one per test: Playwright's sync API keeps an event loop running in this thread while it is open
def browser():
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("headless Chromium is absent: `make test` installs the Debian package chromium when run as root")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        yield launched
        launched.close()


class Opened:
    """A report open in the browser, with everything it asked for and everything it said."""

    def __init__(self, browser, path: Path) -> None:
        self.page = browser.new_page(viewport={"width": 1400, "height": 1000})
        self.requests: list[str] = []
        self.messages: list[str] = []
        self.dialogs: list[str] = []
        self.page.on("request", lambda request: self.requests.append(request.url))
        self.page.on("console", lambda message: self.messages.append(f"{message.type}: {message.text}"))
        self.page.on("pageerror", lambda error: self.messages.append(f"error: {error}"))
        self.page.on("dialog", lambda dialog: (self.dialogs.append(dialog.message), dialog.dismiss()))
        self.url = path.resolve().as_uri()
        self.page.goto(self.url)
        self.page.wait_for_selector("body[data-viewer]", timeout=60_000)

    def text(self, selector: str) -> str:
        return self.page.locator(selector).first.text_content() or ""

    def screenshot(self, name: str, selector: str | None = None) -> bytes:
        shot = self.page.locator(selector).screenshot() if selector else self.page.screenshot()
        if folder := os.environ.get("RETROSEARCH_SCREENSHOTS"):
            Path(folder).mkdir(parents=True, exist_ok=True)
            Path(folder, f"{name}.png").write_bytes(shot)
        return shot

    def assert_self_contained(self) -> None:
        assert self.requests == [self.url], f"the page asked for more than itself: {self.requests}"
        assert not self.messages, f"the console was not quiet (CSP violations show here): {self.messages}"
        assert not self.dialogs


def assert_nontrivial(png: bytes, least_colors: int) -> None:
    """A screenshot that shows something: many colours, and neither blank nor one solid block."""
    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("RGB")
    counts = image.getcolors(maxcolors=1 << 24) or []
    white = sum(count for count, color in counts if color == (255, 255, 255)) / (image.width * image.height)
    colors = len(counts)
    assert colors >= least_colors and 0.05 < white < 0.97, (colors, white)


def test_the_report_of_an_organism_revise_run_shows_its_figures_plots_and_traces(revise_run, browser):
    made = write_report(revise_run)
    summary = json.loads((revise_run / "summary.json").read_text())
    rows = [json.loads(line) for line in (revise_run / "revised.jsonl").read_text().splitlines()]
    assert made["rows_in_viewer"] == made["rows_in_run"] == summary["samples"] == 40
    opened = Opened(browser, Path(made["report"]))
    page = opened.page
    assert page.evaluate("document.body.dataset.viewer") == "ready"
    for name in ("samples", "revised", "unchanged", "accepted_revisions", "rollouts", "generated_tokens"):
        assert opened.text(f'td[data-figure="{name}"]') == str(summary[name])
    assert opened.text('td[data-figure="tokens_ratio"]') == f"{summary['tokens_ratio']:,.3f}"
    assert opened.text('td[data-figure="skipped"]') == ", ".join(f"{k}: {v}" for k, v in summary["skipped"].items())
    assert page.evaluate("[...document.images].filter(i => i.complete && i.naturalWidth > 100).length") == 3
    assert "all 40 rows" in opened.text("#viewer-note")
    assert_nontrivial(opened.screenshot("revise-summary"), 200)

    assert opened.text("#count") == "40 of 40 rows in this report"
    page.select_option("#filter-status", "skipped")
    assert opened.text("#count") == f"{sum(r['status'] == 'skipped' for r in rows)} of 40 rows in this report"
    page.select_option("#filter-status", "revised")
    page.select_option("#sort", "saved")
    most = max((r for r in rows if r["status"] == "revised"), key=lambda r: r["tokens_before"] - r["tokens_after"])
    assert opened.text("#detail h3") == most["id"]
    page.select_option("#sort", "")
    first, second = [r for r in rows if r["status"] == "revised"][:2]
    assert opened.text("#detail h3") == first["id"]
    page.locator("body").press("j")
    assert opened.text("#detail h3") == second["id"]
    page.locator("body").press("k")
    assert opened.text("#detail h3") == first["id"]
    original = page.eval_on_selector_all(".trace:first-child .seg", "nodes => nodes.map(n => n.textContent)")
    revised = page.eval_on_selector_all(".trace:last-child .seg", "nodes => nodes.map(n => n.textContent)")
    assert original[0] + "\n\n".join(original[1:-1]) + original[-1] == first["original"]
    assert revised[0] + "\n\n".join(revised[1:-1]) + revised[-1] == first["revised"]
    assert page.locator(".trace .seg.cut").count() > 0 and page.locator(".trace .seg.new").count() > 0
    assert page.locator(".seg mark.kw").count() >= first["switches_before"]
    page.fill("#filter-id", first["id"])
    assert opened.text("#count") == "1 of 40 rows in this report"
    assert_nontrivial(opened.screenshot("revise-viewer", "#viewer"), 100)
    opened.assert_self_contained()


def test_the_report_of_an_sft_run_draws_its_loss_curve(teacher_file, tmp_path, browser):
    from retrosearch.stages.sft import SFTRunConfig, sft

    config = SFTRunConfig(
        input=str(teacher_file), output=str(tmp_path / "sft"), max_length=1024, batch_size=8, logging_steps=1
    )
    summary = sft(config, quiet=True)
    made = write_report(tmp_path / "sft")
    source = Path(made["report"]).read_text()
    assert "Training</h" in source and "Training loss and learning rate at every logged step" in source
    logged = [json.loads(line) for line in (tmp_path / "sft" / "training_log.jsonl").read_text().splitlines()]
    assert len(logged) == summary["steps"] == 5  # 40 traces, 8 a step, one epoch: a point per step
    opened = Opened(browser, Path(made["report"]))
    assert opened.page.evaluate("document.body.dataset.viewer") == "none"  # a training run has no traces to show
    assert opened.text('td[data-figure="steps"]') == "5"
    assert opened.page.evaluate("[...document.images].filter(i => i.complete && i.naturalWidth > 100).length") == 1
    assert_nontrivial(opened.screenshot("sft-loss", "img"), 50)
    opened.assert_self_contained()


def test_markup_in_the_data_stays_text_and_nothing_runs(hostile_run, browser):
    made = write_report(hostile_run)
    source = Path(made["report"]).read_text()
    for hostile in (HOSTILE_ID, HOSTILE_PROBLEM, HOSTILE_STEP, "<i>shorter</i>"):
        assert hostile not in source  # not in the markup, and not in clear anywhere (the rows are packed)
    opened = Opened(browser, Path(made["report"]))
    page = opened.page
    page.select_option("#filter-status", "error")
    assert opened.text("#detail h3") == "failed-row"
    assert "engine died: <b>out of memory</b>" in opened.text("#detail dl")
    page.select_option("#filter-status", "")
    page.fill("#filter-id", "onerror")
    assert opened.text("#count") == "1 of 41 rows in this report"
    assert opened.text("#rows td.id") == HOSTILE_ID
    assert opened.text("#detail h3") == HOSTILE_ID
    assert opened.text("#detail pre.problem") == HOSTILE_PROBLEM
    assert HOSTILE_STEP in page.eval_on_selector_all(".trace .seg", "nodes => nodes.map(n => n.textContent)")
    assert page.locator("#detail img, #rows img, #detail script, #detail b, #rows i").count() == 0
    assert page.evaluate("document.images.length") == 3  # the plots, nothing else
    assert "pwned" not in page.title()
    assert_nontrivial(opened.screenshot("hostile-viewer", "#viewer"), 100)
    opened.assert_self_contained()


def test_the_page_carries_a_strict_content_security_policy(revise_run):
    page = Path(write_report(revise_run, revise_run / "strict.html")["report"]).read_text()
    policy = html.unescape(page.split('http-equiv="Content-Security-Policy" content="', 1)[1].split('"', 1)[0])
    directives = dict(part.strip().split(" ", 1) for part in policy.split(";"))
    assert directives["default-src"] == "'none'" and directives["img-src"] == "data:"
    assert directives["script-src"].startswith("'sha256-") and " " not in directives["script-src"]
    assert directives["style-src"].startswith("'sha256-") and " " not in directives["style-src"]
    assert re.findall(r'(?:src|href)="(?!#)([^"]{0,5})', page) == ["data:"] * 3  # the plots; links stay in the page


def test_a_100k_row_run_gives_a_bounded_report_that_opens(tmp_path, browser):
    folder = tmp_path / "big"
    folder.mkdir()
    rng = random.Random(0)
    with open(folder / "revised.jsonl", "w") as handle:
        for n in range(100_000):
            steps = [f"step {s}: {rng.getrandbits(64):x}" for s in range(12)]  # a row compresses as real text does
            cut = 4 + n % 6
            original = "<think>\n\n" + "\n\nWait , ".join(steps) + f"\n\n</think>\n\n\\boxed{{{n % 10}}}"
            revised = "<think>\n\n" + "\n\nWait , ".join(steps[:cut]) + f" row {n}\n\n</think>\n\n\\boxed{{{n % 10}}}"
            row = {
                "id": f"row-{n}",
                "problem": f"problem {n}",
                "gold": str(n % 10),
                "original": original,
                "revised": revised,
                "tokens_before": 300,
                "tokens_after": 300 - 20 * (12 - cut),
                "switches_before": 11,
                "switches_after": cut - 1,
                "revisions": [{"switch_index": cut + 1, "keyword": "Wait", "length_before": 14, "length_after": 8}],
                "status": "revised",
                "reason": "shorter correct rollout accepted",
            }
            handle.write(json.dumps(row) + "\n")
    (folder / "summary.json").write_text(json.dumps({"samples": 100_000, "revised": 100_000}))
    made = write_report(folder)
    assert made["rows_in_run"] == 100_000 and made["rows_in_viewer"] == 5_000
    assert made["bytes"] <= 20 * 1024 * 1024
    small = write_report(folder, tmp_path / "small.html", max_mb=0.5)  # tighter: fewer rows, still a sample
    assert small["bytes"] <= 0.5 * 1024 * 1024 and 0 < small["rows_in_viewer"] < 5_000
    opened = Opened(browser, Path(small["report"]))
    shown = small["rows_in_viewer"]
    assert f"{shown:,} of 100,000 rows, a uniform random sample" in opened.text("#viewer-note")
    assert opened.text("#count") == f"{shown:,} of {shown:,} rows in this report"
    opened.assert_self_contained()


def test_the_command_writes_the_report_and_refuses_a_folder_that_is_no_run(revise_run, tmp_path, capsys):
    assert main(["report", str(revise_run), "--output", str(tmp_path / "page.html")]) == 0
    out = capsys.readouterr().out
    assert (tmp_path / "page.html").stat().st_size > 10_000 and "file://" in out
    assert main(["report", str(tmp_path)]) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "no summary.json" in error
    assert not (tmp_path / "report.html").exists()


def test_generate_and_revise_end_by_printing_the_report_command(teacher_file, tmp_path, capsys):
    generated, revised = tmp_path / "gen", tmp_path / "rev"
    common = ["--model", "organism", "--max-new-tokens", "400"]
    assert main(["generate", "--problems", "organism", "--limit", "2", "--output", str(generated), *common]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == f"see the run in a browser: retrosearch report {generated}"
    manifest = json.loads((generated / "manifest.json").read_text())
    line = ["retrosearch", "generate", "--output", str(generated), "--limit", "2", "--max-new-tokens", "400"]
    assert manifest["command"] == "generate" and shlex.split(manifest["command_line"]) == line
    assert main(line[1:]) == 0  # the recorded line reproduces the run: the same folder takes it, all resumed
    assert json.loads((generated / "summary.json").read_text())["resumed_samples"] == 2
    capsys.readouterr()
    assert main(["revise", "--input", str(teacher_file), "--limit", "2", "--output", str(revised), *common]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == f"see the run in a browser: retrosearch report {revised}"
    assert write_report(generated)["rows_in_viewer"] == 2  # a generate run has a report too


def test_the_viewers_rows_are_a_uniform_sample_of_a_large_run(tmp_path):
    """Positions drawn from a 20,000-row run: spread over the whole run like uniform draws (chi-square over 10
    equal bins), and every prefix of the viewer's order as well (the page drops the tail when it must)."""
    from retrosearch.tools.report.runs import revise_section

    total, shown = 20_000, 400
    row = {"status": "skipped", "reason": "no final answer", "original": "x", "revised": "x", "problem": "p"}
    with open(tmp_path / "revised.jsonl", "w") as handle:
        for index in range(total):
            handle.write(json.dumps({**row, "id": f"r{index}"}) + "\n")
    (tmp_path / "summary.json").write_text("{}")
    _, viewer = revise_section(tmp_path, shown)
    assert viewer.total == total and len(viewer.rows) == shown
    positions = [row["n"] for row in viewer.rows]
    assert len(set(positions)) == shown

    def spread(sample: list[int]) -> float:
        counts = [0] * 10
        for position in sample:
            counts[position * 10 // total] += 1
        expected = len(sample) / 10
        return sum((count - expected) ** 2 / expected for count in counts)

    critical = 27.88  # chi-square, 9 degrees of freedom, p = 0.001
    assert spread(positions) < critical  # the first 400 rows would give 3,600
    assert spread(positions[:100]) < critical
