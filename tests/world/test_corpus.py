"""The weak-corpus writer: the layouts, the truth beside them, the same bytes whatever the
workers, and bad arguments refused by name with nothing left behind."""

import hashlib
import json
import signal
import tarfile

import pyarrow.parquet as pq
import pytest

from generation.pipelines.encode import encode_png
from generation.world.captions import parse
from generation.world.corpus import main, write_corpus
from generation.world.render import render_sticker
from generation.world.sampling import weak_sample

LABELS = {"keyword", "sticker_like", "confidence"}


def tree(path) -> dict[str, str]:
    """Every file under ``path`` (or ``path`` itself) by relative name, with its sha256."""
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    return {
        str(p.relative_to(path) if path.is_dir() else p.name): hashlib.sha256(
            p.read_bytes()
        ).hexdigest()
        for p in files
    }


def truth_rows(out) -> list[dict]:
    return [json.loads(line) for line in out.with_name(out.name + ".truth.jsonl").open()]


def test_a_folder_holds_metadata_jsonl_and_the_pngs_and_nothing_of_the_truth(tmp_path):
    # when
    summary = write_corpus(tmp_path / "world", count=6, file_format="folder")
    # then
    folder = tmp_path / "world"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["world", "world.truth.jsonl"]
    assert sorted(p.name for p in folder.iterdir()) == [
        *(f"0000000{i}.png" for i in range(6)),
        "metadata.jsonl",
    ]
    rows = [json.loads(line) for line in (folder / "metadata.jsonl").open()]
    assert [(r["file_name"], r["text"]) for r in rows] == [
        (f"0000000{i}.png", weak_sample(i).caption) for i in range(6)
    ]
    for index, row in enumerate(rows):
        assert set(row) == {"file_name", "text", *LABELS}
        assert row["keyword"] == parse(row["text"])["subject"]
        assert row["sticker_like"] == (row["confidence"] >= 0.5)
        assert 0 <= row["confidence"] <= 1
        assert (folder / row["file_name"]).read_bytes() == encode_png(
            render_sticker(weak_sample(index).spec)
        )
    assert (summary.count, summary.wrong_captions, summary.in_style) == (
        6,
        sum(weak_sample(i).wrong_factor is not None for i in range(6)),
        sum(weak_sample(i).spec.in_style for i in range(6)),
    )


def test_the_truth_file_holds_every_factor_the_wrong_one_and_the_motion(tmp_path):
    write_corpus(tmp_path / "clips.tar", count=3, animated=True, file_format="tar", start=14)

    rows = truth_rows(tmp_path / "clips.tar")
    for row, index in zip(rows, (14, 15, 16), strict=True):
        sample = weak_sample(index, animated=True)
        assert row == {
            "index": index,
            "file": f"000000{index}.webp",
            "caption": sample.caption,
            **sample.spec.truth(),
            "seed": sample.spec.seed,
            "wrong_factor": sample.wrong_factor,
            "captioned": {
                "subject": sample.caption_spec.subject,
                "colour": sample.caption_spec.colour,
                "expression": sample.caption_spec.expression,
            },
            "motion": sample.motion,
            "smoothness": sample.smoothness,
        }
    assert [(r["motion"], r["smoothness"], r["wrong_factor"]) for r in rows] == [
        ("still", "jerky", "subject"),
        ("still", "smooth", "colour"),
        (weak_sample(16, animated=True).motion, weak_sample(16, animated=True).smoothness, None),
    ]


def test_a_tar_is_webdataset_shaped_with_fixed_owner_mode_and_time(tmp_path):
    write_corpus(tmp_path / "c.tar", count=2, file_format="tar")

    with tarfile.open(tmp_path / "c.tar") as archive:
        members = archive.getmembers()
        sidecar = json.loads(archive.extractfile("00000001.json").read())
    assert [m.name for m in members] == [
        "00000000.png",
        "00000000.json",
        "00000001.png",
        "00000001.json",
    ]
    assert {(m.mtime, m.mode, m.uid, m.gid, m.uname, m.gname) for m in members} == {
        (0, 0o644, 0, 0, "", "")
    }
    assert set(sidecar) == {"text", *LABELS}
    assert sidecar["text"] == weak_sample(1).caption


def test_a_parquet_file_has_the_image_struct_text_and_one_column_per_label(tmp_path):
    write_corpus(tmp_path / "c.parquet", count=3, file_format="parquet")

    table = pq.read_table(tmp_path / "c.parquet")
    assert table.column_names == ["image", "text", "keyword", "sticker_like", "confidence"]
    rows = table.to_pylist()
    assert [r["image"]["path"] for r in rows] == ["00000000.png", "00000001.png", "00000002.png"]
    assert [r["text"] for r in rows] == [weak_sample(i).caption for i in range(3)]
    assert rows[2]["image"]["bytes"] == encode_png(render_sticker(weak_sample(2).spec))


@pytest.mark.parametrize("file_format", ["folder", "tar", "parquet"])
def test_the_same_arguments_give_the_same_bytes_whatever_the_workers(tmp_path, file_format):
    # given
    one, two, again = tmp_path / "one", tmp_path / "two", tmp_path / "again"
    for folder in (one, two, again):
        folder.mkdir()
    # when
    write_corpus(one / "c", count=40, file_format=file_format, workers=1)
    write_corpus(two / "c", count=40, file_format=file_format, workers=2)
    write_corpus(again / "c", count=40, file_format=file_format, workers=1)
    # then
    assert tree(one) == tree(two) == tree(again)
    assert len(tree(one)) == (42 if file_format == "folder" else 2)


def test_shards_written_with_start_add_up_to_the_whole(tmp_path):
    write_corpus(tmp_path / "whole", count=10, animated=True)
    write_corpus(tmp_path / "first", count=4, animated=True)
    write_corpus(tmp_path / "rest", count=6, animated=True, start=4)

    shards = {**tree(tmp_path / "first"), **tree(tmp_path / "rest")}
    whole = tree(tmp_path / "whole")
    assert {k: v for k, v in shards.items() if k != "metadata.jsonl"} == {
        k: v for k, v in whole.items() if k != "metadata.jsonl"
    }
    assert truth_rows(tmp_path / "first") + truth_rows(tmp_path / "rest") == truth_rows(
        tmp_path / "whole"
    )


def test_the_command_writes_a_corpus_and_prints_its_summary(tmp_path, capsys):
    code = main(["--out", str(tmp_path / "c.parquet"), "--count", "5", "--format", "parquet"])

    printed = json.loads(capsys.readouterr().out)
    assert code == 0
    assert {k: printed[k] for k in ("file_format", "count", "animated", "kind")} == {
        "file_format": "parquet",
        "count": 5,
        "animated": False,
        "kind": "images",
    }
    assert pq.read_metadata(tmp_path / "c.parquet").num_rows == 5


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--count", "0"], "argument --count: has to be at least 1, not 0"),
        (["--count", "many"], "argument --count: invalid int value: 'many'"),
        (["--count", "3", "--start", "-1"], "argument --start: has to be at least 0, not -1"),
        (
            ["--count", "3", "--workers", "0"],
            "argument --workers: has to be between 1 and 64, not 0",
        ),
        # argparse words the choices differently from one Python to the next
        (["--count", "3", "--format", "zip"], "argument --format: invalid choice: 'zip' ("),
        ([], "the following arguments are required: --count"),
    ],
)
def test_bad_arguments_exit_2_naming_the_argument_and_write_nothing(
    tmp_path, capsys, arguments, message
):
    with pytest.raises(SystemExit) as exited:
        main(["--out", str(tmp_path / "c"), *arguments])

    assert exited.value.code == 2
    assert f": error: {message}" in capsys.readouterr().err.splitlines()[-1]
    assert list(tmp_path.iterdir()) == []


def test_an_out_that_exists_or_whose_folder_is_missing_is_refused(tmp_path, capsys):
    (tmp_path / "taken.tar").write_bytes(b"mine")
    (tmp_path / "orphan.tar.truth.jsonl").write_text("mine\n")
    cases = {
        "taken.tar": f"argument --out: '{tmp_path / 'taken.tar'}' exists already",
        "orphan.tar": f"argument --out: '{tmp_path / 'orphan.tar.truth.jsonl'}' exists already",
        "missing/c.tar": f"argument --out: the folder '{tmp_path / 'missing'}' does not exist",
    }
    for name, message in cases.items():
        with pytest.raises(SystemExit) as exited:
            main(["--out", str(tmp_path / name), "--count", "2", "--format", "tar"])

        assert exited.value.code == 2
        assert capsys.readouterr().err.splitlines()[-1].endswith(f"error: {message}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["orphan.tar.truth.jsonl", "taken.tar"]
    assert (tmp_path / "taken.tar").read_bytes() == b"mine"


@pytest.mark.parametrize("file_format", ["folder", "tar", "parquet"])
def test_an_interrupted_run_leaves_nothing_behind(tmp_path, file_format):
    # given: Ctrl-C 0.3 s into a run that takes several seconds
    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, 0.3)
    try:
        # when
        with pytest.raises(KeyboardInterrupt):
            write_corpus(tmp_path / "c", count=5000, file_format=file_format)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    # then
    assert list(tmp_path.iterdir()) == []
