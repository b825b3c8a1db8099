"""The archive writer on its own (no Django): GNU tar and tarfile read what it writes."""

import hashlib
import subprocess
import tarfile

from training_bridge.exports.tar import TarWriter


def test_tar_members_read_back_with_tarfile_and_gnu_tar(tmp_path):
    long_dir = "train/" + "d" * 120
    names = ["a.png", f"{long_dir}/b.png", "c" * 100, "e.json", "f.bin"]
    datas = [b"\x89PNG" * 3, b"b" * 600, b"", b"{}" * 256, bytes(range(256)) * 5]
    writer = TarWriter(tmp_path / "out.tar", mtime=1_700_000_000)
    writer.add_members(names[:3], datas[:3])
    writer.add_members(names[3:], datas[3:])
    writer.add_chunks("metadata.jsonl", 7, [b"{}\n", b"{}\n", b"\n"])
    written = writer.close()

    raw = (tmp_path / "out.tar").read_bytes()
    assert (written.size, written.sha256) == (len(raw), hashlib.sha256(raw).hexdigest())
    # every member: a 512-byte header and its data padded to 512; two zero blocks at the end
    assert len(raw) == 512 * ((1 + 1) + (1 + 2) + (1 + 0) + (1 + 1) + (1 + 3) + (1 + 1) + 2)
    with tarfile.open(tmp_path / "out.tar") as archive:
        members = archive.getmembers()
        assert [m.name for m in members] == [*names, "metadata.jsonl"]
        assert {(m.mtime, m.mode, m.uid, m.gid, m.type) for m in members} == {
            (1_700_000_000, 0o644, 0, 0, tarfile.REGTYPE)
        }
        read = [archive.extractfile(m).read() for m in members]
    assert read == [*datas, b"{}\n{}\n\n"]
    # GNU tar checks every header's checksum
    listing = subprocess.run(
        ["tar", "tf", str(tmp_path / "out.tar")], check=True, capture_output=True, text=True
    )
    assert listing.stdout.splitlines() == [*names, "metadata.jsonl"]


def test_the_same_members_give_the_same_bytes(tmp_path):
    def write(path, runs):
        writer = TarWriter(path, mtime=5)
        for names, datas in runs:
            writer.add_members(names, datas)
        return writer.close().sha256

    names = [f"{i}.png" for i in range(50)]
    datas = [bytes([i]) * (i * 37) for i in range(50)]
    one_run = write(tmp_path / "one.tar", [(names, datas)])
    many_runs = write(
        tmp_path / "many.tar", [(names[i : i + 7], datas[i : i + 7]) for i in range(0, 50, 7)]
    )
    assert one_run == many_runs
