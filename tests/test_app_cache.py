"""``serving.app.hygiene`` and ``--cache-minutes``: Gradio's cached files are removed after their age, what its queue
keeps of finished calls is dropped, and only that (issue 21)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from gradio.utils import LRUCache

import app
from serving.app import hygiene
from serving.app.hygiene import GradioHygiene, prune_queue, sweep_cache


# -------------------------------------------------------------------------------------------- the flag
@pytest.fixture
def fake_launch(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """``app.main`` without building or serving anything: the launch calls are recorded."""
    calls: list[dict[str, Any]] = []
    state = SimpleNamespace(retriever=None, error="nothing here")
    monkeypatch.setattr(app, "build_app", lambda *a, **k: SimpleNamespace(scwm_state=state))
    monkeypatch.setattr(app, "launch", lambda demo, host, port, share, **k: calls.append(k))
    monkeypatch.setattr(app, "limit_malloc_arenas", lambda n: False)
    monkeypatch.setattr(app, "freeze_startup_objects", lambda: 0)
    monkeypatch.delenv(app.AUTH_ENV, raising=False)
    return calls


def test_the_cache_flag_reaches_launch(fake_launch: list[dict[str, Any]], capsys: pytest.CaptureFixture[str]) -> None:
    assert app.main([]) == 0 and fake_launch[-1]["cache_minutes"] == hygiene.DEFAULT_CACHE_MINUTES == 60
    assert app.main(["--cache-minutes", "0"]) == 0 and fake_launch[-1]["cache_minutes"] == 0
    assert app.main(["--cache-minutes", "2.5"]) == 0 and fake_launch[-1]["cache_minutes"] == 2.5
    with pytest.raises(SystemExit):
        app.main(["--cache-minutes", "-1"])
    assert "--cache-minutes" in capsys.readouterr().err


def test_launch_hands_the_hygiene_to_gradio(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}
    demo = SimpleNamespace(launch=lambda **k: seen.update(k) or (None, "http://x", None))
    monkeypatch.setattr(app, "sync_served_paths", lambda d: ([], []))
    app.launch(demo, block=False, cache_minutes=2)  # type: ignore[arg-type]
    h = demo.scwm_hygiene
    assert seen["app_kwargs"]["lifespan"] == h.lifespan and h.age_s == 120 and h.interval_s == 12
    app.launch(demo, block=False, cache_minutes=0)  # type: ignore[arg-type]
    assert demo.scwm_hygiene.age_s is None and seen["app_kwargs"]["lifespan"] == demo.scwm_hygiene.lifespan
    for bad in (-1.0, float("nan")):
        with pytest.raises(ValueError, match="cache minutes"):
            GradioHygiene(bad)


# ----------------------------------------------------------------------------------------- the files
def _write(folder: Path, name: str, data: bytes = b"x" * 100) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(data)
    return str((folder / name).resolve())


def _blocks(cache: Path, sets: list[set[str]], keep: set[str] | None = None) -> SimpleNamespace:
    block = SimpleNamespace(keep_in_cache=keep or set(), GRADIO_CACHE=str(cache))
    return SimpleNamespace(blocks={1: block}, temp_file_sets=sets)


def test_the_sweep_removes_files_older_than_the_age_and_keeps_the_rest(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "gradio"
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(cache))
    old = _write(cache / "a1", "image.png")
    twin = _write(cache / "a2", "image.png")  # shares its folder with a newer file: the folder stays
    kept = _write(cache / "k", "example.jpg")  # a component keeps it (an example)
    missing = str(cache / "gone" / "image.png")  # already removed by someone else
    t_old = max(os.lstat(p).st_ctime for p in (old, twin, kept))
    new = newer_twin = ""
    while not new or min(os.lstat(p).st_ctime for p in (new, newer_twin)) <= t_old:  # however coarse the clock
        time.sleep(0.01)
        new, newer_twin = _write(cache / "b", "image.png"), _write(cache / "a2", "other.png")
    t_new = min(os.lstat(p).st_ctime for p in (new, newer_twin))
    uploads, tiles = {old, kept, missing}, {twin, new, newer_twin}
    blocks = _blocks(cache, [uploads, tiles], keep={kept})
    files, size = sweep_cache(blocks, age_s=(t_new - t_old) / 2, now=t_new)
    assert (files, size) == (2, 200)
    assert uploads == {kept} and tiles == {new, newer_twin}
    assert not Path(old).exists() and not Path(twin).exists() and not (cache / "a1").exists()
    assert all(Path(p).is_file() for p in (kept, new, newer_twin)) and (cache / "a2").is_dir()
    assert sweep_cache(blocks, age_s=None) == (2, 200)  # None: all (shutdown), still not the kept one
    assert uploads == {kept} and tiles == set() and cache.is_dir() and sorted(os.listdir(cache)) == ["k"]


def test_the_sweep_walks_a_snapshot_while_files_are_added(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Gradio's own sweeper (``delete_cache``) walks the live set: a file cached by a search meanwhile ends it."""
    from gradio.route_utils import delete_files_created_by_app

    cache = tmp_path / "gradio"
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(cache))
    tiles = {_write(cache / f"h{i}", "image.png") for i in range(3)}
    blocks = _blocks(cache, [tiles])
    added = iter([_write(cache / f"n{i}", "image.png") for i in range(20)])
    real_lstat, real_stat = os.lstat, os.stat

    def busy(fn: Any) -> Any:  # a search caches a tile each time the sweeper looks at one of the first three
        def look(p: Any, *a: Any, **k: Any) -> Any:
            if Path(p).parent.name.startswith("h"):
                tiles.add(next(added))
            return fn(p, *a, **k)
        return look

    monkeypatch.setattr(os, "lstat", busy(real_lstat))
    monkeypatch.setattr(os, "stat", busy(real_stat))
    with pytest.raises(RuntimeError, match="changed size during iteration"):
        delete_files_created_by_app(blocks, age=-1)
    files, _ = sweep_cache(blocks, age_s=-1.0)
    assert files >= 3 and len(tiles) >= 1  # what the sweep saw is gone, what came meanwhile is left for the next


# ----------------------------------------------------------------------------------------- the queue
class _Messages:
    def __init__(self, n: int = 0) -> None:
        self.n = n

    def empty(self) -> bool:
        return self.n == 0


def test_pruning_drops_only_finished_sessions_leftovers() -> None:
    queue = SimpleNamespace(
        event_ids_to_events={"e-queued": SimpleNamespace(session_hash="queued")},
        pending_event_ids_session={"done": set(), "done-unread": set(), "undelivered": {"e-ran"},
                                   "queued": set(), "never-started": {"e-x"}},
        pending_messages_per_session=LRUCache(2000), event_analytics={f"e{i}": {} for i in range(10)})
    for s, n in [("done", 0), ("done-unread", 2), ("undelivered", 1), ("queued", 0), ("never-started", 0)]:
        queue.pending_messages_per_session[s] = _Messages(n)
    assert prune_queue(queue, max_analytics=4) == 2
    assert set(queue.pending_event_ids_session) == {"undelivered", "queued", "never-started"}
    assert set(queue.pending_messages_per_session) == {"done-unread", "undelivered", "queued", "never-started"}
    assert list(queue.event_analytics) == ["e6", "e7", "e8", "e9"]  # the latest
    assert prune_queue(queue, max_analytics=4) == 0


# ------------------------------------------------------------------------------------- a real server
def test_a_served_app_loses_its_leftovers_and_its_old_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import gradio as gr
    import httpx
    import numpy as np

    cache = tmp_path / "gradio"
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(cache))
    with gr.Blocks(analytics_enabled=False) as demo:
        seed = gr.Number(0)
        out = gr.Image(format="png")
        seed.submit(lambda s: np.full((8, 8, 3), int(s) % 256, np.uint8), seed, out, api_name="tile")
    h = GradioHygiene(cache_minutes=0.02, interval_s=0.2)  # files are old after 1.2 s
    demo.launch(prevent_thread_lock=True, quiet=True, app_kwargs={"lifespan": h.lifespan})
    try:
        base = demo.local_url.rstrip("/") + "/gradio_api/call/tile"
        paths = []
        with httpx.Client(timeout=60, trust_env=False) as http:
            for i in range(5):
                event = http.post(base, json={"data": [i]}).json()["event_id"]
                stream = http.get(f"{base}/{event}").text.splitlines()
                assert "event: complete" in stream, stream
                paths.append(json.loads(stream[stream.index("event: complete") + 1][5:])[0]["path"])
        assert all(Path(p).is_file() for p in paths)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (demo._queue.pending_event_ids_session or h.files_removed < 5):
            time.sleep(0.1)
        assert demo._queue.pending_event_ids_session == {} and h.sessions_dropped >= 5
        assert h.files_removed >= 5 and not any(Path(p).exists() for p in paths)
        assert not any(p in s for s in demo.temp_file_sets for p in paths)
    finally:
        demo.close()


# ------------------------------------------------------------------------------------- the parse cache
def test_the_parse_cache_keeps_compact_label_maps_that_render_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    import numpy as np
    from PIL import Image

    from serving.app.session import ParseCache, compact_labels
    from serving.app.views import render_view

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 5, size=(128, 64)).astype(np.int64)  # what the model's argmax gives
    small = compact_labels(labels)
    assert small.dtype == np.uint8 and small.nbytes * 8 == labels.nbytes and np.array_equal(small, labels)
    wide = labels + 300
    assert compact_labels(wide) is wide and compact_labels(labels - 1).dtype == np.int64  # does not fit: as is
    image = Image.fromarray(rng.integers(0, 255, size=(128, 64, 3), dtype=np.uint8))
    for mode in ("Overlay", "Parts"):
        assert np.array_equal(np.asarray(render_view(image, small, 5, mode, 0.5, height=160)),
                              np.asarray(render_view(image, labels, 5, mode, 0.5, height=160)))

    class _Retriever:
        def parse_batch(self, images: list[Image.Image]) -> list[np.ndarray]:
            return [labels.copy() for _ in images]

    monkeypatch.setattr(Image, "open", lambda p: image)  # the gallery's files
    cache = ParseCache(capacity=2)
    got = cache.get_many(_Retriever(), [SimpleNamespace(item_id=i, path=f"{i}.jpg") for i in range(3)])  # type: ignore
    assert [g[1].dtype for g in got] == [np.uint8] * 3 and list(cache._data) == [1, 2]
    assert all(v.dtype == np.uint8 for v in cache._data.values())
