"""bench.overhead: engine vs bare loop, side by side, ratio on the last line."""

from __future__ import annotations

import pytest

from bench import overhead


@pytest.mark.slow
def test_overhead_prints_the_ratio_last(capsys: pytest.CaptureFixture[str]) -> None:
    assert overhead.main(["--cells", "resnet18:repeat3:16", "--rounds", "1", "--steps", "2"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("engine/bare throughput ratio")
    assert 0.2 < float(last.rsplit(" ", 1)[1]) < 5


def test_bad_cell_text_is_refused() -> None:
    with pytest.raises(SystemExit) as exc:
        overhead.main(["--cells", "resnet18"])
    assert exc.value.code == 2
