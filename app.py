"""Gradio demo of a served SCWM model: search a gallery with a query image and see the body parts the model
learned to segment without part labels.

``python app.py [--index exports/index] [--model PATH] [--host 127.0.0.1] [--port 7860] [--share false]``

Without ``--index`` it opens ``exports/index`` (else ``exports/demo/index``). When there is nothing to open
it lists the commands that create the artifacts and offers a one-click demo gallery. Helpers live in
:mod:`serving.app_support`; :func:`build_app` returns the ``gr.Blocks`` and :func:`launch` serves it.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402
from PIL import Image  # noqa: E402

from serving.app_support import (  # noqa: E402
    MATCH_RGB,
    MISMATCH_RGB,
    VIEW_MODES,
    DemoPlan,
    ParseCache,
    build_demo,
    caption,
    check_image,
    dataset_roots,
    example_queries,
    exclude_junk,
    hits_json,
    is_match,
    is_untrained_demo,
    legend_html,
    missing_artifacts_markdown,
    model_info_markdown,
    plan_demo,
    render_view,
)
from serving.index import DEFAULT_INDEX_DIR, MANIFEST, parse_market_name  # noqa: E402
from serving.retriever import Retriever, upsample_labels  # noqa: E402

log = logging.getLogger("scwm.app")
DEMO_INDEX_DIR = Path("exports/demo/index")
TILE_HEIGHT = 256
QUERY_HEIGHT = 320

TITLE = "# SCWM · person re-identification without identity labels"
INTRO = ("Upload a photo of a person or pick an example: the model finds the same person in the gallery and shows "
         "the body parts it learned to segment **without any identity or part labels**.")
DEMO_BANNER = ("\n\n> ⚠️ **Untrained demo model** (random weights) on the tiny synthetic world: it shows how the app "
               "works, not what SCWM learns. Train with `python -m training.run` for real results.")

CSS = """
.scwm-legend {display:flex; flex-wrap:wrap; gap:6px 16px; align-items:center; padding:4px 2px;}
.scwm-legend-title {font-weight:600; margin-right:2px; opacity:.8;}
.scwm-chip {display:inline-flex; align-items:center; gap:6px;}
.scwm-swatch {width:18px; height:18px; border-radius:5px; display:inline-block;
              box-shadow:0 0 0 1px rgba(0,0,0,.25) inset;}
.scwm-gap {margin-left:18px;}
#scwm-status {min-height:1.6em;}
#scwm-query img {object-fit:contain !important; height:100% !important; width:auto !important;}
#scwm-results .thumbnail-item {aspect-ratio: 1 / 2.5 !important; height:auto !important;}
#scwm-results .thumbnail-item img {object-fit: contain !important; object-position: top !important;}
#scwm-results .grid-wrap, #scwm-results {height:auto !important; max-height:none !important;}
#scwm-results .grid-wrap {min-height: 120px;}
#scwm-results .caption-label {font-size:0.74em; line-height:1.25; white-space:normal; text-overflow:clip;
                              max-width:calc(100% - 8px); text-align:center;}
#scwm-examples .gallery {gap:6px;}
#scwm-examples .gallery-item .container {width:auto !important; height:auto !important;}
#scwm-examples .gallery-item img {height:118px !important; width:auto !important; max-width:none !important;
                                  object-fit:contain !important;}
footer {display:none !important;}
"""


class QueryImage(gr.Image):
    """``gr.Image`` whose preprocessing never fails: a file PIL cannot open (not an image, too large) is passed
    on as its path so that the search handler can explain the problem instead of raising."""

    is_template = True  # same front-end component as gr.Image

    def preprocess(self, payload: Any) -> Any:
        try:
            return super().preprocess(payload)
        except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError, gr.Error):
            return str(payload.path) if getattr(payload, "path", None) else None


class AppState:
    """The loaded retriever (or why there is none), shared by all sessions."""

    def __init__(self, root: Path, index: str | os.PathLike[str] | None, model: str | os.PathLike[str] | None,
                 providers: Sequence[str] | None, threads: int | None) -> None:
        self.root = root
        self.model = Path(model) if model else None
        self.providers = list(providers) if providers else None
        self.threads = threads
        self.cache = ParseCache()
        self.build_lock = threading.Lock()
        self.retriever: Retriever | None = None
        self.error: str | None = None
        self.examples: list[Path] = []
        self._pairs: Counter[tuple[int | None, int | None]] = Counter()
        self._junk = 0
        if index is not None:
            self.index_dir = Path(index)
            self.open(self.index_dir)
        else:
            self.index_dir = root / DEFAULT_INDEX_DIR
            demo_dir = root / DEMO_INDEX_DIR
            if not (self.index_dir / MANIFEST).is_file() and (demo_dir / MANIFEST).is_file():
                self.index_dir = demo_dir
            if (self.index_dir / MANIFEST).is_file():
                self.open(self.index_dir)

    def open(self, index_dir: Path) -> bool:
        """Load ``index_dir``; on failure keep the reason in :attr:`error`."""
        try:
            r = Retriever.load(index_dir, self.model, providers=self.providers, intra_op_threads=self.threads)
        except (ValueError, OSError, RuntimeError) as exc:  # index/model errors are ValueErrors naming the cause
            self.retriever, self.error = None, str(exc)
            log.warning("cannot open %s: %s", index_dir, exc)
            return False
        self.retriever, self.error, self.index_dir = r, None, Path(index_dir)
        self.cache = ParseCache()
        self.examples = example_queries(r.index.items, n=8)
        self._pairs = Counter((it.get("pid"), it.get("camera")) for it in r.index.items)
        self._junk = sum(n for (pid, _), n in self._pairs.items() if pid is not None and pid < 0)
        return True

    def plan(self) -> DemoPlan:
        """What the one-click build would do now."""
        return plan_demo(self.root)

    def extra_for(self, pid: int | None, cam: int | None) -> int:
        """How many gallery images the Market protocol may drop for this query."""
        if pid is None or pid < 0:
            return 0
        return self._pairs.get((pid, cam), 0) + self._junk


# ------------------------------------------------------------------------------------------ handlers
def _header(state: AppState) -> str:
    """Title, introduction and, for the untrained demo model, a warning banner."""
    r = state.retriever
    return TITLE + "\n\n" + INTRO + (DEMO_BANNER if r is not None and is_untrained_demo(r) else "")


def _search(state: AppState, query: str | None, k: float, mode: str, alpha: float, protocol: bool,
            ) -> tuple[Image.Image | None, list[tuple[Image.Image, str]], str, list[dict[str, Any]]]:
    """(query view, [(result tile, caption)], status Markdown, hits as dicts); problems become a status."""
    r = state.retriever
    if r is None:
        return None, [], "No gallery is loaded: see the instructions above.", []
    if query is None:
        return None, [], "Upload a query image or pick one of the examples.", []
    img, err = check_image(query)
    if img is None:
        gr.Warning(err or "invalid image")
        return None, [], f"⚠️ {err}", []
    if len(r) == 0:
        msg = (f"The gallery `{state.index_dir}` is empty: add images with "
               f"`python -m serving.index add --index {state.index_dir} --images DIR`.")
        gr.Warning("The gallery is empty.")
        return None, [], f"⚠️ {msg}", []
    mode = mode if mode in VIEW_MODES else "Overlay"
    k = max(1, int(k))
    t0 = time.perf_counter()
    out = r.engine.embed(img)
    q_pid, q_cam = parse_market_name(query)
    extra = state.extra_for(q_pid, q_cam) if protocol else 0
    hits = r.search_embeddings(out["global_feat"], k + extra)[0]
    hits = exclude_junk(hits, q_pid, q_cam, k) if protocol else hits[:k]
    parsed = state.cache.get_many(r, hits)
    elapsed = (time.perf_counter() - t0) * 1000
    n_labels = len(r.part_names)
    q_labels = upsample_labels(out["part_probs"][0].argmax(axis=0), img.height, img.width)
    q_view = render_view(img, q_labels, n_labels, mode, alpha, height=QUERY_HEIGHT)
    tiles = []
    for hit, (gimg, labels) in zip(hits, parsed, strict=True):
        match = is_match(hit, q_pid)
        border = None if match is None else (MATCH_RGB if match else MISMATCH_RGB)
        tiles.append((render_view(gimg, labels, n_labels, mode, alpha, height=TILE_HEIGHT, border=border),
                      caption(hit, q_pid, q_cam)))
    status = [f"**Top-{len(hits)}** of {len(r):,} gallery images"]
    if q_pid is not None:
        status.append(f"query: pid {q_pid} · cam {q_cam}")
        matches = [h.rank for h in hits if is_match(h, q_pid)]
        status.append(f"**{len(matches)}** true match{'es' if len(matches) != 1 else ''} shown"
                      + (f" (first at rank {matches[0]})" if matches else ""))
        if protocol:
            status.append("same-camera images of this identity hidden")
    status.append(f"{elapsed:.0f} ms")
    return q_view, tiles, " · ".join(status), hits_json(hits, q_pid)


def _panels(state: AppState) -> dict[str, Any]:
    """Current values of the panels that depend on what is loaded."""
    r = state.retriever
    plan = state.plan()
    return {
        "header": _header(state),
        "setup": missing_artifacts_markdown(state.index_dir, state.error, plan) if r is None else "",
        "build_label": "Build demo gallery" if plan.checkpoint is None else f"Export {plan.checkpoint.parent.name} "
                                                                         "model and build gallery",
        "info": model_info_markdown(r) if r is not None else "",
        "legend": legend_html(r.part_names, any(it.get("pid") is not None for it in r.index.items))
        if r is not None else "",
        "examples": [[str(p)] for p in state.examples],
    }


# ------------------------------------------------------------------------------------------ the app
def build_app(index: str | os.PathLike[str] | None = None, model: str | os.PathLike[str] | None = None,
              root: str | os.PathLike[str] = ".", providers: Sequence[str] | None = None,
              threads: int | None = None) -> gr.Blocks:
    """The Gradio app over ``index`` (default ``root/exports/index``, else ``root/exports/demo/index``)."""
    state = AppState(Path(root), index, model, providers, threads)
    p = _panels(state)
    loaded = state.retriever is not None
    with gr.Blocks(title="SCWM re-ID demo", analytics_enabled=False) as demo:
        demo.scwm_state = state  # type: ignore[attr-defined]
        header = gr.Markdown(p["header"])
        with gr.Column(visible=not loaded) as setup_col:
            setup_md = gr.Markdown(p["setup"], elem_id="scwm-setup")
            build_btn = gr.Button(p["build_label"], variant="primary", elem_id="scwm-build")
            build_status = gr.Markdown()
        with gr.Column(visible=loaded) as main_col:
            with gr.Row(equal_height=True):
                query = QueryImage(label="Query image", type="filepath", image_mode=None,
                                   sources=["upload", "clipboard"], height=QUERY_HEIGHT, scale=2, min_width=180,
                                   elem_id="scwm-query")
                query_view = gr.Image(label="Query · parts", type="pil", format="png", interactive=False,
                                      height=QUERY_HEIGHT, scale=2, min_width=180, elem_id="scwm-query-view")
                with gr.Column(scale=3, min_width=240):
                    k = gr.Slider(1, 50, value=10, step=1, label="Results (k)")
                    mode = gr.Radio(list(VIEW_MODES), value="Overlay", label="Show")
                    alpha = gr.Slider(0.1, 0.9, value=0.55, step=0.05, label="Overlay opacity")
                    protocol = gr.Checkbox(True, label="Hide same-camera shots of the query's identity "
                                                       "(Market protocol)")
                    search_btn = gr.Button("Search", variant="primary")
                examples = gr.Dataset(label="Example queries", components=[query], samples=p["examples"],
                                      type="index", samples_per_page=8, scale=4, elem_id="scwm-examples")
            status = gr.Markdown("Upload a query image or pick one of the examples.", elem_id="scwm-status")
            legend = gr.HTML(p["legend"])
            results = gr.Gallery(label="Top-k gallery matches", columns=10, object_fit="contain", format="png",
                                 height="auto", allow_preview=True, show_label=False, elem_id="scwm-results")
            with gr.Accordion("Model and gallery", open=False):
                info = gr.Markdown(p["info"], elem_id="scwm-info")
            with gr.Accordion("Results as JSON", open=False):
                hits_out = gr.JSON(label="hits")

        def search(q: str | None, kk: float, m: str, a: float, prot: bool) -> tuple:
            try:
                return _search(state, q, kk, m, a, prot)
            except (ValueError, RuntimeError, OSError) as exc:
                log.exception("search failed")
                gr.Warning(f"Search failed: {exc}")
                return None, [], f"⚠️ Search failed: {exc}", []

        gr.on([query.change, k.release, mode.change, alpha.release, protocol.change, search_btn.click], search,
              inputs=[query, k, mode, alpha, protocol], outputs=[query_view, results, status, hits_out],
              api_name="search", trigger_mode="always_last")

        def pick_example(i: int) -> str | None:
            return str(state.examples[i]) if i is not None and 0 <= i < len(state.examples) else None

        examples.click(pick_example, inputs=examples, outputs=query, api_visibility="private")

        def refresh() -> tuple:
            if state.retriever is None and (state.index_dir / MANIFEST).is_file() and not state.build_lock.locked():
                state.open(state.index_dir)  # made by the commands since the app started
            pp = _panels(state)
            ok = state.retriever is not None
            return (pp["header"], gr.Column(visible=not ok), pp["setup"], gr.Button(value=pp["build_label"]),
                    gr.Column(visible=ok), pp["info"], pp["legend"], gr.Dataset(samples=pp["examples"]))

        panel_outputs = [header, setup_col, setup_md, build_btn, main_col, info, legend, examples]

        def build(progress: gr.Progress = gr.Progress()) -> tuple:
            if not state.build_lock.acquire(blocking=False):
                return (*refresh(), "A build is already running.")
            try:
                plan = state.plan()
                index_dir = build_demo(plan, state.root, lambda f, msg: progress(f, desc=msg))
                ok = state.open(index_dir)
                msg = f"Built `{index_dir}`." if ok else f"⚠️ Built `{index_dir}` but could not open it: {state.error}"
            except (ValueError, RuntimeError, OSError) as exc:
                log.exception("demo build failed")
                msg = f"⚠️ Building the demo gallery failed: {exc}"
            finally:
                state.build_lock.release()
            return (*refresh(), msg)

        build_btn.click(build, outputs=[*panel_outputs, build_status], api_name="build_demo")
        demo.load(refresh, outputs=panel_outputs, api_visibility="private")
    return demo


def _allowed_paths(demo: gr.Blocks) -> list[str]:
    state: AppState = demo.scwm_state  # type: ignore[attr-defined]
    paths = {str(state.root.resolve())}
    if state.retriever is not None:
        paths.update(str(p.resolve()) for p in dataset_roots(state.retriever.index.items))
    return sorted(paths)


def launch(demo: gr.Blocks, host: str = "127.0.0.1", port: int | None = 7860, share: bool = False,
           block: bool = True, quiet: bool = False) -> str:
    """Serve ``demo``; returns the local URL (``block=False`` returns at once; stop with ``demo.close()``)."""
    theme = gr.themes.Soft(primary_hue="indigo", secondary_hue="emerald", neutral_hue="slate")
    _, url, _ = demo.launch(server_name=host, server_port=port, share=share, prevent_thread_lock=not block,
                            quiet=quiet, theme=theme, css=CSS, allowed_paths=_allowed_paths(demo),
                            max_file_size="100mb", footer_links=[], show_error=False)
    return url


def _bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python app.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("--index", help=f"gallery index directory (default: {DEFAULT_INDEX_DIR}, else {DEMO_INDEX_DIR})")
    ap.add_argument("--model", help="ONNX model (default: the one recorded in the index manifest)")
    ap.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    ap.add_argument("--port", type=int, default=7860, help="port (default: %(default)s)")
    ap.add_argument("--share", type=_bool, default=False, help="create a public Gradio share link (default: false)")
    ap.add_argument("--providers", nargs="+", help="ONNX Runtime execution providers (default: CUDA if available)")
    ap.add_argument("--threads", type=int, help="ONNX Runtime intra-op threads (default: ORT's choice)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    demo = build_app(args.index, args.model, ".", args.providers, args.threads)
    state: AppState = demo.scwm_state  # type: ignore[attr-defined]
    if state.retriever is None:
        print(f"no gallery loaded ({state.error or 'no artifacts in exports/'}); the page explains how to make one")
    else:
        print(f"serving {state.retriever!r}")
    try:
        launch(demo, args.host, args.port, args.share)
    except OSError as exc:
        print(f"error: cannot start the server on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
