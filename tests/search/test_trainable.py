"""The trial's report callback (EpochReporter), with fakes for Tune and the tracking journal."""

from __future__ import annotations

from pathlib import Path

from search.trainable import Best, EpochReporter


class FakeJournal:
    """Records what the reporter logs; ``already`` epochs count as logged by an earlier attempt."""

    def __init__(self, already: int = 0) -> None:
        self.already, self.calls = already, []

    def last_step(self, key: str) -> int:
        return self.already

    def metrics(self, key: str, metrics: dict, step: int) -> None:
        self.calls.append(("metrics", step, dict(metrics)))

    def artifact(self, key: str, path: Path) -> None:
        self.calls.append(("artifact", path.name))



def _reporter(tmp_path: Path, journal: FakeJournal, epochs: int = 3):
    sent: list = []
    (tmp_path / "last.pt").write_bytes(b"x")

    def artifacts() -> list[Path]:
        journal.calls.append(("drawn",))
        (tmp_path / "overlay.png").write_bytes(b"png")
        return [tmp_path / "overlay.png"]

    reporter = EpochReporter("t1", epochs, Best([("val_dice", "max")]), journal, lambda m, c: sent.append((m, c)),
                             tmp_path, artifacts, checkpoint=lambda folder: f"checkpoint of {folder.name}")
    return reporter, sent


def _epoch(epoch: int, dice: float) -> dict:
    return {"epoch": epoch, "val_dice": dice, "train_loss": 1.0 / epoch}


def test_each_epoch_is_logged_once_with_the_best_so_far_and_reported(tmp_path: Path) -> None:
    journal = FakeJournal()
    reporter, sent = _reporter(tmp_path, journal)
    for epoch, dice in ((1, 0.5), (2, 0.4), (3, 0.7)):
        reporter(_epoch(epoch, dice))
    logged = [(c[1], c[2]["best_val_dice"]) for c in journal.calls if c[0] == "metrics"]
    assert logged == [(1, 0.5), (2, 0.5), (3, 0.7)]
    assert [m["status"] for m, _ in sent] == ["running", "running", "completed"]
    assert all(m["epochs"] == 3 for m, _ in sent)


def test_artifacts_go_out_before_the_last_report_and_no_checkpoint_with_it(tmp_path: Path) -> None:
    journal = FakeJournal()
    reporter, sent = _reporter(tmp_path, journal, epochs=2)
    reporter(_epoch(1, 0.5))
    assert ("drawn",) not in journal.calls and sent[-1][1] == f"checkpoint of {tmp_path.name}"
    reporter(_epoch(2, 0.6))
    names = [c[0] for c in journal.calls]
    assert names.index("drawn") < names.index("artifact") and len(sent) == 2  # journaled, then reported
    assert ("artifact", "overlay.png") in journal.calls and sent[-1][1] is None


def test_epochs_an_earlier_attempt_logged_are_not_logged_again(tmp_path: Path) -> None:
    journal = FakeJournal(already=2)  # a retried trial trains epochs 1-2 again from its start
    reporter, sent = _reporter(tmp_path, journal)
    for epoch in (1, 2, 3):
        reporter(_epoch(epoch, 0.1 * epoch))
    assert [c[1] for c in journal.calls if c[0] == "metrics"] == [3]
    assert len(sent) == 3  # Tune still hears every epoch
