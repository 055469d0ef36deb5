"""The README's Python example runs and prints what its comments say."""
from __future__ import annotations

import contextlib
import io
import os
import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def test_python_example(tmp_path):
    code = re.search(r"```python\n(.*?)```", README.read_text(), re.S).group(1)
    out = io.StringIO()
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        with contextlib.redirect_stdout(out):
            exec(compile(code, "README.md", "exec"), {})   # our own README, not user text
    finally:
        os.chdir(cwd)
    assert out.getvalue().splitlines() == ["40 ", "[0.04] s"]
