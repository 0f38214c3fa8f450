"""bench.tools.efficiency: the table's figures from a sweep's rows, and the concurrency flag."""

from __future__ import annotations

from bench.tools import efficiency


def _row(epoch_s: float, concurrency: str) -> dict[str, str]:
    return {"status": "ok", "epochs": "1", "epoch_s": str(epoch_s), "concurrency": concurrency}


def test_one_at_a_time_sweep_is_training_over_wall() -> None:
    m = efficiency.summarize("warm", [_row(2.0, "1"), _row(3.0, "1")], 10.0, 0.5)
    assert m["training_s"] == 5.0 and m["efficiency"] == 0.5 and m["concurrency"] == 1
    assert "not comparable" not in efficiency.line(m)


def test_cells_run_at_once_are_flagged_not_compared() -> None:
    """Five cells at once on two cores: their epochs overlap and the sum can exceed the wall
    time (3.06 was printed bare for submitit's local cluster before the flag)."""
    rows = [_row(30.0, "5") for _ in range(5)]
    m = efficiency.summarize("submitit", rows, 50.0, 1.5)
    assert m["efficiency"] == 3.0 and m["concurrency"] == 5
    assert "5 at once" in efficiency.line(m) and "not comparable" in efficiency.line(m)
    legacy = efficiency.summarize("warm", [_row(1.0, "")], 2.0, 0.1)  # empty: ran alone
    assert legacy["concurrency"] == 1


def test_the_wall_time_is_split_into_training_evaluation_in_cell_and_outside() -> None:
    rows = [{**_row(4.0, "1"), "epochs": "2", "wall_s": "12.0", "test_count": "300",
             "eval_img_s": "600"},
            {**_row(1.0, "1"), "wall_s": "1.5", "test_count": "", "eval_img_s": ""}]
    m = efficiency.summarize("warm", rows, 20.0, 0.2)
    assert m["training_s"] == 9.0 and m["eval_s"] == 1.0  # 2 epochs x 300 img / 600 img/s
    assert m["cell_other_s"] == 13.5 - 9.0 - 1.0 and m["outside_s"] == 20.0 - 13.5
    assert efficiency.line(m).split()[4:7] == ["1.0", "3.5", "6.5"]
