"""The batch runner shares cases among servers: every server gets work, every case runs once."""

from __future__ import annotations

import threading

from fake_comfy import FakeComfy
from test_batch_errors import run, write_case


def test_four_cases_are_shared_between_two_servers(tmp_path, capsys) -> None:
    """The first server answers only once the second has been given a case, so neither can take all four."""
    first_done = threading.Event()
    first, second = FakeComfy(finished=first_done), FakeComfy()
    release = threading.Thread(target=lambda: (second.prompted.wait(10), first_done.set()), daemon=True)
    release.start()
    try:
        for index in range(4):
            write_case(tmp_path / "cases", f"c{index}")
        assert run(tmp_path, "--server", first.url, "--server", second.url, "--no-metrics") == 0
    finally:
        first_done.set()
        first.close()
        second.close()
    ran = [line for line in capsys.readouterr().out.splitlines() if " ran " in line]
    counts = {line.split(" ran ")[0]: int(line.split(" ran ")[1].split()[0]) for line in ran}
    assert set(counts) == {first.url, second.url} and min(counts.values()) >= 1
    assert sum(counts.values()) == 4 == len(first.prompts) + len(second.prompts)
    assert sorted(p.name for p in (tmp_path / "out" / "images").iterdir()) == ["c0", "c1", "c2", "c3"]
