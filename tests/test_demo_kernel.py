"""`make demo`'s notebook runner: a real kernel over IPC, and nothing alarming printed.

ipykernel warns on every start over TCP ("Kernel is running over TCP without encryption");
the runner uses unix sockets in a private folder instead. The runner runs in a child process
here so that everything it and its kernel print is seen.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nbformat

RUN = """
import sys
from pathlib import Path
from p4cf_kit.commands.demo import execute_notebook
book = execute_notebook(Path(sys.argv[1]), Path(sys.argv[2]))
"""


def test_notebook_runs_over_ipc_without_warnings(tmp_path: Path) -> None:
    book = nbformat.v4.new_notebook()
    book.cells.append(nbformat.v4.new_code_cell(
        "import json, os\n"
        "from ipykernel.connect import get_connection_file\n"
        "info = json.load(open(get_connection_file()))\n"
        "print(json.dumps({'cwd': os.getcwd(), 'transport': info['transport']}))"))
    path = tmp_path / "tiny.ipynb"
    nbformat.write(book, path)
    out = tmp_path / "out" / "tiny.ipynb"
    done = subprocess.run([sys.executable, "-c", RUN, str(path), str(out)], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    printed = done.stdout + done.stderr
    assert "without encryption" not in printed and "WARNING" not in printed, printed
    executed = nbformat.read(out, as_version=4)
    seen = json.loads(executed.cells[0].outputs[0]["text"])
    assert seen == {"cwd": str(tmp_path), "transport": "ipc"}  # in the notebook's folder, over IPC
