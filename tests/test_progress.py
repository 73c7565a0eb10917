"""Progress lines: what they say, when they are written, and that -q (WARNING) silences them."""

import logging

from ray_longtail.progress import Progress, progress_line, ray_data_bars


def test_progress_line_gives_share_rate_and_eta():
    assert progress_line("embed", 2048, 4096, "items", 4.0) == "embed: 2048/4096 items (50 %), 512 items/s, ETA 4 s"
    assert progress_line("tune", 16, 16, "trials", 8.0) == "tune: 16/16 trials (100 %), 2 trials/s"


def test_progress_logs_the_first_step_and_the_end_not_every_step(caplog):
    with caplog.at_level(logging.INFO, logger="ray_longtail.progress"):
        progress = Progress("serving", 10, "users", every_s=3600)
        for _ in range(10):
            progress.advance()
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2 and lines[0].startswith("serving: 1/10 users (10 %)")
    assert lines[1].startswith("serving: 10/10 users (100 %)") and "ETA" not in lines[1]


def test_quiet_silences_progress_and_ray_data_bars(caplog):
    with caplog.at_level(logging.WARNING, logger="ray_longtail.progress"):
        progress = Progress("embed", 3)
        for _ in range(3):
            progress.advance()
        assert not ray_data_bars()
    assert not caplog.records
