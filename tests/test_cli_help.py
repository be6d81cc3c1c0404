"""Every command-line entry point prints its ``--help`` (argparse %-formats help text, so a stray "%" in a
docstring used as help crashes it) and exits 0 without doing any work."""

from __future__ import annotations

import contextlib
import io
import runpy
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# runpy warns when a module of an already imported package is run as __main__; harmless for --help.
pytestmark = pytest.mark.filterwarnings("ignore:.*found in sys.modules:RuntimeWarning")
_FOLDERS = ("training", "serving", "experiments", "benchmarks", "scwm", "scripts")


def _entry_points() -> list[str]:
    """Repo-relative paths of the files with a ``__main__`` guard (plus packages' ``__main__.py``)."""
    found = [p for folder in _FOLDERS for p in (ROOT / folder).rglob("*.py")
             if p.name == "__main__.py" or 'if __name__ == "__main__"' in p.read_text(encoding="utf-8")]
    found.append(ROOT / "app.py")
    return sorted(str(p.relative_to(ROOT)) for p in found)


def test_the_discovery_sees_the_main_commands() -> None:
    names = set(_entry_points())
    assert {"training/run.py", "training/pretrain.py", "serving/index.py", "serving/export.py",
            "experiments/__main__.py", "app.py"} <= names


@pytest.mark.parametrize("path", _entry_points())
def test_help_renders(path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    rel = Path(path)
    parts = rel.with_suffix("").parts
    module = ".".join(parts[:-1] if parts[-1] == "__main__" else parts)
    monkeypatch.syspath_prepend(str(ROOT))
    monkeypatch.chdir(ROOT)
    monkeypatch.setattr(sys, "argv", [path, "--help"])
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as stop:
        if rel.name == "app.py":
            runpy.run_path(str(ROOT / rel), run_name="__main__")
        else:
            runpy.run_module(module, run_name="__main__", alter_sys=True)
    assert stop.value.code in (0, None), f"{path} --help exited with {stop.value.code}"
    assert "usage:" in out.getvalue(), f"{path} --help printed no usage:\n{out.getvalue()[:500]}"
