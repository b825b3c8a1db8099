"""The benchmark scripts from outside: they refuse a size the machine cannot hold, with a message,
before they set anything up (issue 16: rather than fill the disk half way through or swap), and
none of them can stand in for a package of the project."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
TOO_MANY = 10**13


@pytest.mark.parametrize(
    ("script", "args", "what"),
    [
        ("aggregation.py", ["--items", str(TOO_MANY)], f"{5 * TOO_MANY:,} judgments"),
        ("assignment.py", ["--items", str(TOO_MANY), "--raters", "32"], f"{TOO_MANY:,} items"),
        ("campaign_items.py", ["--items", str(TOO_MANY)], f"{TOO_MANY:,} items"),
        ("dataset_build.py", ["--candidates", str(TOO_MANY)], f"{TOO_MANY:,} candidates"),
        ("export.py", ["--candidates", str(TOO_MANY)], f"{TOO_MANY:,} candidates"),
        ("rating_latency.py", ["--items", str(TOO_MANY)], f"{TOO_MANY:,} items"),
    ],
)
def test_a_size_the_disk_cannot_hold_is_refused_before_set_up(script, args, what):
    # No database URL reaches the script: a refusal that came after set-up would fail to
    # connect instead of printing the message.
    done = subprocess.run(
        [sys.executable, str(BENCH / script), *args],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "DATABASE_URL": "postgres://nobody@127.0.0.1:1/none"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert done.stdout == ""
    message = done.stderr.strip()
    assert message.startswith(f"{what} need about ")
    assert message.endswith(" GB is free.")


def test_a_size_the_memory_cannot_hold_is_refused(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    from _common import refuse_unless_it_fits

    with pytest.raises(SystemExit) as refused:
        refuse_unless_it_fits("a trillion judgments", memory_bytes=2**62)
    assert str(refused.value).startswith(
        "a trillion judgments need about 4294967296.0 GiB of available memory; "
    )
    assert str(refused.value).endswith(" GiB is.")


def test_a_size_that_fits_passes(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    from _common import refuse_unless_it_fits

    assert refuse_unless_it_fits("ten items", disk_bytes=10, memory_bytes=10) is None


def test_no_benchmark_shares_a_name_with_a_package_of_the_project():
    # Celery's Django fix-up puts the working folder first on sys.path: a worker started from
    # bench/ would import bench/<name>.py in place of the project's package <name>.
    packages = {path.parent.name for path in ROOT.glob("*/__init__.py")}
    scripts = {path.stem for path in BENCH.glob("*.py")}
    assert {"annotation", "webhooks", "stickerloop"} <= packages
    assert scripts & packages == set()
