"""Reading a local job's attempt logs page by page (api/run_logs.py)."""

from arc_reactor.api.http import decode_token
from arc_reactor.api.run_logs import read_local


def _write(tmp_path):
    (tmp_path / "attempt-0.log").write_text("a\nb\nc\n")
    (tmp_path / "attempt-2.log").write_text('{"message": "m", "severity": "ERROR", "time": "t"}\nhalf')
    (tmp_path / "attempt-10.log").write_text("late\n")
    (tmp_path / "notes.txt").write_text("ignored\n")


def test_pages_span_attempts_in_numeric_order(tmp_path):
    _write(tmp_path)
    page = read_local(tmp_path, 2, 0, 0, follow=False)
    assert [ln.message for ln in page.lines] == ["a", "b"]
    token = decode_token(page.next_page_token)
    page = read_local(tmp_path, 10, token["a"], token["o"], follow=False)
    assert [(ln.severity, ln.message) for ln in page.lines] == [
        ("DEFAULT", "c"), ("ERROR", "m"), ("DEFAULT", "late"),
    ]  # fmt: skip
    assert page.next_page_token is None


def test_following_resumes_at_an_unfinished_line(tmp_path):
    (tmp_path / "attempt-0.log").write_text("one\npart")
    page = read_local(tmp_path, 10, 0, 0, follow=True)
    assert [ln.message for ln in page.lines] == ["one"]
    token = decode_token(page.next_page_token)
    assert token == {"a": 0, "o": 4}
    (tmp_path / "attempt-0.log").write_text("one\npartial line\n")
    assert [ln.message for ln in read_local(tmp_path, 10, 0, 4, follow=False).lines] == ["partial line"]


def test_no_files_yet(tmp_path):
    assert read_local(tmp_path / "missing", 10, 0, 0, follow=False).lines == []
