"""docs/client.md's tutorial runs as written: its ```python blocks are executed in order, in
one session, in a directory holding the `dcihub-demo/demo.json` of a demo-like node (built
and served the way `dcihub demo` does, with a smaller population)."""

from __future__ import annotations

import re

import pytest

from specdir import PROJECT_ROOT
from support import free_port, start_server

DOC = PROJECT_ROOT / "docs" / "client.md"


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    from dcihub.demo import prepare_demo, write_demo_json
    from dcihub.server.factory import build_app

    root = tmp_path_factory.mktemp("tutorial")
    port = free_port()
    setup = prepare_demo(root / "dcihub-demo", "127.0.0.1", port, people=2000)
    app, info = build_app(setup.settings, setup.store, demo_info=setup.info)
    write_demo_json(root / "dcihub-demo", info)
    server, thread = start_server(app, port)
    yield root
    server.should_exit = True
    thread.join(timeout=10)
    setup.store.dispose()


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.DOTALL | re.MULTILINE)


def test_the_tutorial_runs_as_written(demo_dir, monkeypatch, capsys):
    blocks = python_blocks(DOC.read_text("utf-8"))
    assert len(blocks) >= 6
    monkeypatch.chdir(demo_dir)
    namespace: dict[str, object] = {"__name__": "tutorial"}
    for number, block in enumerate(blocks, start=1):
        try:
            exec(compile(block, f"docs/client.md python block {number}", "exec"), namespace)
        except Exception as exc:  # show which block failed, and how
            pytest.fail(f"python block {number} of docs/client.md failed: {exc!r}\n{block}")
    out = capsys.readouterr().out
    assert re.search(r"\d{4}-\d\d-\d\d (alive|deceased)", out), out
    assert re.search(r"checked, stop payment to [1-9]", out), out
    assert "rjct.search_criteria.invalid" in out and "favourite_colour" in out
    assert re.search(r"[1-9]\d* deaths registered", out), out
    assert re.search(r"subscribed: \['[^']+'\]", out), out
