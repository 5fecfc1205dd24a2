"""The examples of docs/python.md and the README run as written."""

import re

from conftest import REPO


def python_blocks(path):
    return re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S)


def test_in_process_secagg_example_of_docs_python_md(capsys):
    blocks = [b for b in python_blocks(REPO / "docs" / "python.md") if "community.advertise" in b]
    assert len(blocks) == 1
    for round_ in ("advertise", "share", "drop", "mask", "confirm", "reveal", "unmask"):
        assert f"community.{round_}(" in blocks[0]
    exec(compile(blocks[0], "docs/python.md", "exec"), {})
    assert capsys.readouterr().out == "0.21800000\n"


def test_in_process_przs_example_of_docs_python_md(capsys):
    blocks = [b for b in python_blocks(REPO / "docs" / "python.md") if "Round 0" in b]
    assert len(blocks) == 1
    exec(compile(blocks[0], "docs/python.md", "exec"), {})
    assert capsys.readouterr().out == "0.21800000\n"


def test_readme_example(capsys):
    blocks = [b for b in python_blocks(REPO / "README.md") if "private_billing" in b]
    assert len(blocks) == 1
    exec(compile(blocks[0], "README.md", "exec"), {})
    assert "0.21800000" in capsys.readouterr().out
