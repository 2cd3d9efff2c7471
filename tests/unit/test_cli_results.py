"""`arc runs results --download`: a listed path never leaves the target folder."""

from pathlib import Path

from arc_reactor.cli.runs import _safe_destination


def test_only_relative_paths_inside_the_folder_are_written(tmp_path: Path) -> None:
    assert _safe_destination(tmp_path, "qc/S1.html") == (tmp_path / "qc" / "S1.html").resolve()
    for bad in ("../outside.txt", "/etc/passwd", "a/../../b", "", "qc/../../x"):
        assert _safe_destination(tmp_path, bad) is None, bad
    (tmp_path / "link").symlink_to("/tmp")
    assert _safe_destination(tmp_path, "link/x") is None  # a symlink out of the folder
