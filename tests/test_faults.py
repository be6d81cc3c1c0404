"""Faults, nothing lost (issue 21, section 3), at a CI-sized count: SIGKILL at random points of ``serving.index
build|add`` and ``serving.export``, a kill before every filesystem step, readers during repeated adds, a full disk;
and the mechanisms behind them (stale temporary files, the commit lock, the reader retry, one commit point for
all files of an export). The full run is ``python -m benchmarks.bench_faults`` (``docs/bench/faults.md``), which
shares this code; ``SCWM_FAULT_TRIALS`` sets the count here (default 3 per command)."""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import time
from pathlib import Path

import onnx
import pytest

from benchmarks import bench_faults as bf
from scwm.utils import atomic_write_bytes
from serving import export as ex
from serving import index as ix
from serving.engine import OnnxEngine
from serving.manifest import (
    GalleryIndexError,
    IndexChangedError,
    load_consistent,
    read_manifest,
    remove_stale_build_dirs,
    verified_files,
)

pytestmark = pytest.mark.slow
TRIALS = int(os.environ.get("SCWM_FAULT_TRIALS", "3"))


@pytest.fixture(scope="module")
def fx(tmp_path_factory: pytest.TempPathFactory) -> bf.Fixture:
    return bf.make_fixture(tmp_path_factory.mktemp("faults"))


@pytest.fixture(scope="module")
def fork() -> bf.Launcher:
    return bf.Launcher("fork")


@pytest.fixture(scope="module")
def traced(fx: bf.Fixture) -> Path:
    """The new checkpoint's graph, traced once: the export runs below skip tracing (which writes nothing)."""
    return bf.trace_new(fx, fx.root / "traced-new.onnx")


def _broken(r: dict) -> list[dict]:
    return [row for row in r["rows"] if row["outcome"] == "broken"]


# ------------------------------------------------------------------------------------ kills (harness)
def test_kill_build_add_export_at_random_points(fx: bf.Fixture, fork: bf.Launcher, traced: Path,
                                                tmp_path: Path) -> None:
    """TRIALS kills of each command at a seeded random point within an uninterrupted run's duration: the index /
    the model files are the old or the new ones by checksum, and the next run succeeds and cleans up."""
    for op in bf.OPS:
        sc = bf.ExportScenario(fx, tmp_path / op, traced) if op == "export" else bf.SCENARIOS[op](fx, tmp_path / op)
        r = bf.kill_trials(sc, fork, TRIALS, seed=0, logs=tmp_path)
        assert not _broken(r), (op, _broken(r))
        assert r["old"] + r["new"] == TRIALS and r["killed"] >= 1, (op, r["rows"])
        rec = r["recovery"]
        assert rec["rc"] == 0 and rec["outcome"] == "new", (op, rec)
        left = rec["leftovers_after"]
        assert left["temp"] == [] and left.get("orphan_data", []) == [], (op, left)


def test_kill_before_every_filesystem_step(fx: bf.Fixture, fork: bf.Launcher, traced: Path, tmp_path: Path) -> None:
    """The child kills itself just before its k-th filesystem-changing call, for every k: old before the
    manifest (or the build directory, or the model file) is renamed into place, new after, never broken."""
    runs = [bf.crash_points(bf.AddScenario(fx, tmp_path / "add"), fork, tmp_path),
            bf.crash_points(bf.BuildScenario(fx, tmp_path / "build"), fork, tmp_path, modes=("fresh",)),
            bf.crash_points(bf.ExportScenario(fx, tmp_path / "export", traced), fork, tmp_path)]
    for r in runs:
        assert not _broken(r), (r["op"], _broken(r))
        assert r["old"] >= 3 and r["points"] == r["old"] + r["new"], (r["op"], r["rows"])
        done = r["rows"][-1]
        assert done["rc"] == 0 and done["outcome"] == "new", (r["op"], done)
        # old up to and including a kill just before the rename that commits, new from then on
        commit_step = {"add": "manifest.json)", "build": "os.replace(.index.", "export": "model.onnx)"}[r["op"]]
        last_old = max((row for row in r["rows"] if row["outcome"] == "old"), key=lambda row: row["point"])
        assert commit_step in last_old["step"] and "replace" in last_old["step"], (r["op"], last_old)
        assert all(row["outcome"] == "new" for row in r["rows"] if row["point"] > last_old["point"]), r["op"]


def test_reader_sees_old_or_new_gallery_during_adds(fx: bf.Fixture, tmp_path: Path) -> None:
    r = bf.reader_during_adds(fx, tmp_path, adds=12, readers=2)
    assert r["errors"] == 0 and r["problems"] == 0, r["examples"]
    assert r["monotonic"] and r["states_seen"] >= 2 and r["loads"] > r["adds"], r
    assert r["final_count"] == 16 + 12


def test_full_disk_keeps_the_old_artefact_and_names_the_path(fx: bf.Fixture, tmp_path: Path) -> None:
    size = sum(f.stat().st_size for f in fx.model_files)
    r = bf.disk_full(fx, tmp_path, index_free=[0, 24 << 10, 48 << 10, 56 << 10, 1 << 20], export_free=[size // 2])
    for c in r["cases"]:
        if c["rc"] == 0:
            assert c["state"] == "new", c
        else:
            assert c["state"] == "old" and c["clear_error"], c
        assert c["stray"] == [], c
    for op in ("add", "build", "export"):
        assert any(c["rc"] != 0 for c in r["cases"] if c["op"] == op), op
    assert any(c["rc"] == 0 for c in r["cases"] if c["op"] == "add")


# ------------------------------------------------------------------------------------------- mechanisms
def test_atomic_path_removes_stale_temporaries_only(tmp_path: Path) -> None:
    target = tmp_path / "model.onnx"
    past = time.time() - 60
    stale, derived = tmp_path / ".model.onnx.dead1234.tmp", tmp_path / ".model.onnx.dead1234.tmp.pre.onnx"
    live, young = tmp_path / ".model.onnx.live5678.tmp", tmp_path / ".model.onnx.young999.tmp"
    other = tmp_path / ".other.onnx.dead1234.tmp"
    for p in (stale, derived, live, young, other):
        p.write_bytes(b"partial")
    for p in (stale, derived, live, other):
        os.utime(p, (past, past))
    fd = os.open(live, os.O_RDONLY)  # a writer that is still running holds its temporary file's lock
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        atomic_write_bytes(target, b"new")
    finally:
        os.close(fd)
    assert target.read_bytes() == b"new"
    assert not stale.exists() and not derived.exists()
    assert live.exists() and young.exists() and other.exists()


def test_atomic_write_on_a_full_disk_names_the_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "results.json"
    target.write_bytes(b"old")

    def full(self: Path, data: bytes) -> int:
        with open(self, "wb") as fh:
            fh.write(data[:2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Path, "write_bytes", full)
    with pytest.raises(OSError, match=r"No space left on device: '.*results\.json'") as info:
        atomic_write_bytes(target, b"new content")
    monkeypatch.undo()
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(target)
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["results.json"]


def _paths_and_embeddings(fx: bf.Fixture) -> tuple[list[Path], object]:
    paths = sorted(fx.new_images.glob("*.jpg"))
    return paths, OnnxEngine(fx.model).embed([str(p) for p in paths])["global_feat"]


def test_commit_refuses_a_lost_update_and_collects_garbage(fx: bf.Fixture, tmp_path: Path) -> None:
    d = tmp_path / "idx"
    ix.build_index(fx.model, [fx.old_images], d, progress=False)
    gen1 = read_manifest(d)
    paths, embs = _paths_and_embeddings(fx)
    a, b = ix.GalleryIndex.load(d), ix.GalleryIndex.load(d)  # two writers that loaded the same generation
    a.add(embs[:4], paths[:4])
    a.save(d)
    b.add(embs[4:], paths[4:])
    with pytest.raises(IndexChangedError, match="load the index again"):
        b.save(d)  # would silently drop a's four items
    g = ix.GalleryIndex.load(d)
    assert g.count == 16 + 4
    gen2 = read_manifest(d)
    # a killed writer's orphan data file and temporary file go with the next commit; the generation it replaces
    # stays (readers), the one before goes
    orphan, tmp = d / "index-000007-0123abcd.faiss", d / ".items-000007-0123abcd.jsonl.x1y2z3.tmp"
    orphan.write_bytes(b"orphan")
    tmp.write_bytes(b"partial")
    g.add(embs[4:6], paths[4:6])
    g.save(d)
    gen3 = read_manifest(d)
    names = sorted(p.name for p in d.iterdir())
    assert names == sorted(["manifest.json", gen3["index_file"], gen3["items_file"], gen2["index_file"],
                            gen2["items_file"]])
    assert gen1["index_file"] not in names


def test_reader_of_a_replaced_generation_gets_the_documented_retry(fx: bf.Fixture, tmp_path: Path) -> None:
    d = tmp_path / "idx"
    ix.build_index(fx.model, [fx.old_images], d, progress=False)
    stale = read_manifest(d)  # a reader read this manifest, then two commits landed before it opened the files
    paths, embs = _paths_and_embeddings(fx)
    for i in range(2):
        g = ix.GalleryIndex.load(d)
        g.add(embs[i:i + 1], paths[i:i + 1])
        g.save(d)
    with pytest.raises(IndexChangedError, match="changed while it was being read"):
        verified_files(d, stale)
    calls = []

    def flaky_load() -> ix.GalleryIndex:
        calls.append(1)
        if len(calls) == 1:
            raise IndexChangedError("simulated: a file was removed by a later commit")
        return ix.GalleryIndex.load(d)

    assert load_consistent(d, flaky_load).count == 18 and len(calls) == 2
    (d / read_manifest(d)["items_file"]).write_text("damaged\n")
    with pytest.raises(GalleryIndexError, match="corrupt"):  # damage is not a change: no retry
        load_consistent(d, lambda: ix.GalleryIndex.load(d))


def test_remove_stale_build_dirs(tmp_path: Path) -> None:
    out = tmp_path / "index"
    dead, young = tmp_path / ".index.dead.tmp", tmp_path / ".index.young.tmp"
    for p in (dead, young):
        p.mkdir()
        (p / "index-000001-0123abcd.faiss").write_bytes(b"x")
    past = time.time() - 7200
    os.utime(dead, (past, past))
    assert remove_stale_build_dirs(out) == [dead]
    assert not dead.exists() and young.exists()


def test_export_failing_in_a_variant_keeps_the_previous_set(fx: bf.Fixture, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """fp32 verified but fp16 not: before, the new fp32 file was already in place next to the old fp16 one; now
    no file of the export is renamed until every one is verified."""
    from scwm.models.checkpoint import load_model

    monkeypatch.setattr(ex, "_export_proto", lambda *a: onnx.load(str(fx.model)))  # the old model's graph
    model, spec = load_model(fx.ckpt_old, "cpu")
    out = tmp_path / "model.onnx"
    ex.export_model(model, spec, out, precisions=("fp32", "fp16"), config={"attempt": 1})
    files = [out, ex.variant_path(out, "fp16")]
    before = [hashlib.sha256(f.read_bytes()).hexdigest() for f in files]
    strict = {"fp16": ex.Tolerance(feat_atol=0.0, probs_atol=0.0, min_cosine=1.0)}
    with pytest.raises(ex.ExportVerificationError, match="fp16"):
        ex.export_model(model, spec, out, precisions=("fp32", "fp16"), config={"attempt": 2}, tolerances=strict)
    assert [hashlib.sha256(f.read_bytes()).hexdigest() for f in files] == before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f.name for f in files)
