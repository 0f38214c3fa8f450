"""bench.tools.overhead: engine vs bare loop, side by side, ratio on the last line.

The measurement must be apples to apples: both sides get the same recipe (batches, windows of
>= 10 whole steps, warm-up, threads), rounds interleave, and the bare loop's windows include
making the batch, as the engine's do.
"""

from __future__ import annotations

import itertools

import pytest
import torch

from bench.config import Config
from bench.tools import overhead


@pytest.mark.slow
def test_overhead_prints_the_ratio_last(capsys: pytest.CaptureFixture[str]) -> None:
    assert overhead.main(["--cells", "resnet18:repeat3:16", "--rounds", "1",
                          "--windows", "1"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("engine/bare throughput ratio")
    assert 0.2 < float(last.rsplit(" ", 1)[1]) < 5


def test_bad_cell_text_is_refused() -> None:
    with pytest.raises(SystemExit) as exc:
        overhead.main(["--cells", "resnet18"])
    assert exc.value.code == 2


@pytest.mark.parametrize("steps", ["1", "9"])
def test_windows_shorter_than_ten_steps_are_refused(
        steps: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        overhead.main(["--cells", "resnet18:repeat3:4", "--window-steps", steps])
    assert exc.value.code == 2
    assert f"--window-steps must be >= 10, got {steps}" in capsys.readouterr().err
    with pytest.raises(ValueError, match="shorter than 10 steps"):
        overhead.cell_config(4, 2, int(steps), 1, 1)


def test_both_sides_get_one_recipe_in_alternating_rounds(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Default windows are >= 10 steps, and the bare loop and the engine see the same Config."""
    calls: list[tuple[str, Config]] = []

    def fake(side: str, rate: float):
        def run(model_name: str, spec: str, cfg: Config, *rest: object) -> float:
            calls.append((side, cfg))
            return rate
        return run

    monkeypatch.setattr(overhead, "bare_loop_img_s", fake("bare", 100.0))
    monkeypatch.setattr(overhead, "engine_img_s", fake("engine", 98.0))
    assert overhead.main(["--cells", "resnet18:repeat3:4", "--rounds", "4", "--threads", "1"]) == 0
    assert [side for side, _ in calls] == ["bare", "engine", "engine", "bare"] * 2
    cfgs = {cfg for _, cfg in calls}
    assert len(cfgs) == 1, "the two sides ran different recipes"
    (cfg,) = cfgs
    assert cfg.window_steps >= 10 and cfg.warmup_steps >= 1 and cfg.num_threads == 1
    timed = cfg.measure_only_steps - cfg.warmup_steps
    assert timed >= cfg.window_steps and timed % cfg.window_steps == 0
    # One epoch holds every step: an epoch boundary would cut the engine's window short.
    assert cfg.train_size >= cfg.batch_size * cfg.measure_only_steps
    assert cfg.profile_steps == 0 and cfg.grad_clip == 0.0 and cfg.per_model == ()
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1] == "engine/bare throughput ratio (worst cell): 0.980"


def test_bare_loop_windows_include_making_the_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fake clock that only advances when a batch is made: windows must see that time.

    Each batch costs 1 s of fake time and the steps none, so a window of W steps at batch B
    spans W s and reads B img/s; a loop that made its batches outside the window would read
    nothing (0 s) or the wrong count.
    """
    from bench import data as data_mod

    now = itertools.count()  # 0, 1, 2, ... one tick per batch made
    clock_value = [0.0]
    real_batches = data_mod.batches

    def slow_batches(*args: object, **kwargs: object):
        for xb, yb in real_batches(*args, **kwargs):
            clock_value[0] = float(next(now))
            yield xb, yb

    monkeypatch.setattr(data_mod, "batches", slow_batches)
    cfg = overhead.cell_config(batch_size=2, warmup_steps=1, window_steps=10, windows=2,
                               threads=torch.get_num_threads())
    rates = overhead.bare_loop_window_img_s("resnet18", "repeat3", cfg, torch.device("cpu"),
                                            clock=lambda: clock_value[0])
    # Window k opens before batch 1 + 10k is made (clock at the previous tick) and closes
    # after batch 10 + 10k: 10 ticks, 20 images.
    assert rates == [2.0, 2.0]
