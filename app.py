"""Gradio demo of a served SCWM model: search a gallery with a query image and see the body parts the model
learned to segment without part labels.

``python app.py [--index exports/index] [--model PATH] [--host 127.0.0.1] [--port 7860] [--share false]
[--auth USER:PASS] [--precision auto|fp32|int8]``

Without ``--index`` it opens ``exports/index`` (else ``exports/demo/index``). When there is nothing to open
it lists the commands that create the artifacts and offers a one-click demo gallery. Helpers live in
:mod:`serving.app`; :func:`build_app` returns the ``gr.Blocks`` and :func:`launch` serves it.

Exposure: the web server serves only the example query files and what Gradio writes to its cache (rendered
tiles, uploads), never the project folder; the page names files relative to the project, never by absolute
path; uploads are limited (:mod:`serving.app.uploads`). A non-loopback ``--host`` or ``--share true`` prints a
warning; ``--auth`` (or ``$SCWM_APP_AUTH``) requires a login.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402
from PIL import Image  # noqa: E402

from serving.app.demo import build_demo  # noqa: E402
from serving.app.hygiene import DEFAULT_CACHE_MINUTES, GradioHygiene  # noqa: E402
from serving.app.memory import (  # noqa: E402
    DEFAULT_ARENAS,
    DEFAULT_TRIM_SECONDS,
    MallocTrimmer,
    freeze_startup_objects,
    limit_malloc_arenas,
)
from serving.app.session import (  # noqa: E402
    DEMO_INDEX_DIR,
    QUERY_HEIGHT,
    AppState,
    panels,
    run_search,
    served_paths,
)
from serving.app.uploads import MAX_UPLOAD_BYTES  # noqa: E402
from serving.app.views import VIEW_MODES  # noqa: E402
from serving.engine import PRECISION_CHOICES, PRECISION_ENV, PRECISION_HELP  # noqa: E402
from serving.index import DEFAULT_INDEX_DIR, MANIFEST  # noqa: E402

log = logging.getLogger("scwm.app")
AUTH_ENV = "SCWM_APP_AUTH"

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


# ------------------------------------------------------------------------------------------ the app
def build_app(index: str | os.PathLike[str] | None = None, model: str | os.PathLike[str] | None = None,
              root: str | os.PathLike[str] = ".", providers: Sequence[str] | None = None,
              threads: int | None = None, precision: str | None = None,
              malloc_trim_s: float = DEFAULT_TRIM_SECONDS) -> gr.Blocks:
    """The Gradio app over ``index`` (default ``root/exports/index``, else ``root/exports/demo/index``), its model
    served at ``precision`` (``auto|fp32|int8``, :class:`serving.engine.OnnxEngine`; None: ``$SCWM_PRECISION``, else
    the precision the index was built with, and ``auto`` for a demo build). After a
    search, free heap memory goes back to the system at most every ``malloc_trim_s`` seconds (0 = never;
    :class:`serving.app.memory.MallocTrimmer`)."""
    state = AppState(Path(root), index, model, providers, threads, precision)
    trimmer = MallocTrimmer(malloc_trim_s)
    p = panels(state)
    loaded = state.retriever is not None
    with gr.Blocks(title="SCWM re-ID demo", analytics_enabled=False) as demo:
        demo.scwm_state = state  # type: ignore[attr-defined]
        demo.scwm_trimmer = trimmer  # type: ignore[attr-defined]
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
                result = run_search(state, q, kk, m, a, prot)
            except (ValueError, RuntimeError, OSError) as exc:
                log.exception("search failed")
                gr.Warning(f"Search failed: {state.redact(str(exc))}")
                return None, [], f"⚠️ Search failed: {state.redact(str(exc))}", []
            finally:
                trimmer.maybe_trim()
            if result.warning:
                gr.Warning(result.warning)
            return result.outputs

        gr.on([query.change, k.release, mode.change, alpha.release, protocol.change, search_btn.click], search,
              inputs=[query, k, mode, alpha, protocol], outputs=[query_view, results, status, hits_out],
              api_name="search", trigger_mode="always_last")

        def pick_example(i: int) -> str | None:
            return str(state.examples[i]) if i is not None and 0 <= i < len(state.examples) else None

        examples.click(pick_example, inputs=examples, outputs=query, api_visibility="private")

        def refresh() -> tuple:
            if state.retriever is None and (state.index_dir / MANIFEST).is_file() and not state.build_lock.locked():
                state.open(state.index_dir)  # made by the commands since the app started
                sync_served_paths(demo)
            pp = panels(state)
            ok = state.retriever is not None
            return (pp["header"], gr.Column(visible=not ok), pp["setup"], gr.Button(value=pp["build_label"]),
                    gr.Column(visible=ok), pp["info"], pp["legend"], gr.Dataset(samples=pp["examples"]))

        panel_outputs = [header, setup_col, setup_md, build_btn, main_col, info, legend, examples]

        def build(progress: gr.Progress = gr.Progress()) -> tuple:
            if not state.build_lock.acquire(blocking=False):
                return (*refresh(), "A build is already running.")
            try:
                plan = state.plan()
                index_dir = build_demo(plan, state.root, lambda f, msg: progress(f, desc=msg),
                                       precision=state.precision)
                ok = state.open(index_dir)
                sync_served_paths(demo)
                where = state.display(index_dir)
                msg = f"Built `{where}`." if ok else \
                    f"⚠️ Built `{where}` but could not open it: {state.redact(state.error or '')}"
            except (ValueError, RuntimeError, OSError) as exc:
                log.exception("demo build failed")
                msg = f"⚠️ Building the demo gallery failed: {state.redact(str(exc))}"
            finally:
                state.build_lock.release()
            return (*refresh(), msg)

        build_btn.click(build, outputs=[*panel_outputs, build_status], api_name="build_demo")
        demo.load(refresh, outputs=panel_outputs, api_visibility="private")
    return demo


def sync_served_paths(demo: gr.Blocks) -> tuple[list[str], list[str]]:
    """Set the files Gradio's file route may serve from what is loaded now (see
    :func:`serving.app.session.served_paths`); called at launch and whenever a gallery is (re)opened."""
    state: AppState = demo.scwm_state  # type: ignore[attr-defined]
    from gradio.utils import get_cache_folder, get_upload_folder

    allowed, blocked = served_paths(state, keep=[get_upload_folder(), get_cache_folder()])
    demo.allowed_paths, demo.blocked_paths = allowed, blocked  # read by the file route on every request
    return allowed, blocked


MAX_SESSIONS = 256
"""Sessions whose component values Gradio keeps (its default, 10,000, held about 75 KB each here: an API client
opens a session per call, so the app's memory grew with every search until that many were held)."""


def launch(demo: gr.Blocks, host: str = "127.0.0.1", port: int | None = 7860, share: bool = False,
           block: bool = True, quiet: bool = False, auth: tuple[str, str] | None = None,
           max_sessions: int = MAX_SESSIONS, cache_minutes: float = DEFAULT_CACHE_MINUTES) -> str:
    """Serve ``demo``; returns the local URL (``block=False`` returns at once; stop with ``demo.close()``).
    ``auth`` = (user, password) requires a login for the page, the API and the files. ``max_sessions``: how many
    sessions' values Gradio keeps in memory (the oldest are dropped; the app keeps no per-session state).
    ``cache_minutes``: how long the files Gradio writes (uploads, rendered tiles) are kept (0 = never removed);
    what Gradio's queue keeps of finished calls is dropped too (:class:`serving.app.hygiene.GradioHygiene`,
    ``demo.scwm_hygiene``)."""
    if max_sessions < 1:
        raise ValueError(f"max_sessions must be >= 1, got {max_sessions}")
    hygiene = GradioHygiene(cache_minutes)
    demo.scwm_hygiene = hygiene  # type: ignore[attr-defined]
    theme = gr.themes.Soft(primary_hue="indigo", secondary_hue="emerald", neutral_hue="slate")
    allowed, blocked = sync_served_paths(demo)
    _, url, _ = demo.launch(server_name=host, server_port=port, share=share, prevent_thread_lock=not block,
                            quiet=quiet, theme=theme, css=CSS, allowed_paths=allowed, blocked_paths=blocked,
                            max_file_size=MAX_UPLOAD_BYTES, auth=auth, footer_links=[], show_error=False,
                            state_session_capacity=max_sessions, app_kwargs={"lifespan": hygiene.lifespan})
    sync_served_paths(demo)  # launch() takes $GRADIO_ALLOWED_PATHS instead of an empty list: ours win
    return url


def parse_auth(text: str) -> tuple[str, str]:
    """``"user:password"`` -> ``(user, password)`` (the password may contain ``:``); a ValueError (which never
    repeats the password) when the user or the password is missing."""
    user, sep, password = text.partition(":")
    if not sep or not user.strip() or not password:
        raise ValueError("expected USER:PASSWORD with a non-empty user and password")
    return user.strip(), password


def is_loopback(host: str) -> bool:
    """Whether ``host`` is only reachable from this machine (``localhost``, 127.0.0.0/8, ``::1``)."""
    h = host.strip().strip("[]").lower()
    if h == "localhost" or h.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False


def exposure_warnings(host: str, share: bool, auth: tuple[str, str] | None = None) -> list[str]:
    """Warnings to print when the gallery becomes reachable by others (non-loopback host, share link)."""
    out = []
    if not is_loopback(host):
        where = "all network interfaces" if host.strip("[]") in ("0.0.0.0", "::", "") else host
        out.append(f"--host {host} listens on {where}: the gallery becomes public to anyone who can reach this "
                   "machine (they can search it and see its images).")
    if share:
        out.append("--share true creates a public gradio.live link: the gallery becomes public to anyone with the "
                   "link (they can search it and see its images).")
    if out:
        out.append("The app is protected by a login (--auth)." if auth else
                   f"Consider requiring a login: --auth USER:PASS or ${AUTH_ENV}=USER:PASS.")
    return out


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
    ap.add_argument("--precision", choices=PRECISION_CHOICES,
                    help=f"{PRECISION_HELP}; it must serve the file that built the index (default: ${PRECISION_ENV}, "
                         "else the precision the index was built with; a demo gallery is built at auto)")
    ap.add_argument("--auth", metavar="USER:PASS",
                    help=f"require this login (default: ${AUTH_ENV} if set; prefer the variable, command lines "
                         "are visible to other users of the machine)")
    ap.add_argument("--max-sessions", type=int, default=MAX_SESSIONS,
                    help="sessions whose values Gradio keeps in memory; the oldest are dropped (default: %(default)s)")
    ap.add_argument("--malloc-arenas", type=int, default=DEFAULT_ARENAS,
                    help="cap glibc's malloc arenas (bounds the RSS under concurrent searches, docs/bench/load.md; "
                         "0 = glibc's default; $MALLOC_ARENA_MAX wins) (default: %(default)s)")
    ap.add_argument("--malloc-trim-seconds", type=float, default=DEFAULT_TRIM_SECONDS,
                    help="after a search, give free heap memory back to the system at most this often (glibc "
                         "malloc_trim; 0 = never) (default: %(default)s)")
    ap.add_argument("--cache-minutes", type=float, default=DEFAULT_CACHE_MINUTES,
                    help="remove the files Gradio wrote (uploads, rendered tiles) this long after they were last "
                         "written, and all of them when the app stops (0 = never remove them) (default: %(default)s)")
    args = ap.parse_args(argv)
    if not args.malloc_trim_seconds >= 0:
        ap.error(f"--malloc-trim-seconds must be >= 0, got {args.malloc_trim_seconds}")
    if not args.cache_minutes >= 0:
        ap.error(f"--cache-minutes must be >= 0, got {args.cache_minutes}")
    if args.max_sessions < 1:
        ap.error(f"--max-sessions must be >= 1, got {args.max_sessions}")
    if args.malloc_arenas < 0:
        ap.error(f"--malloc-arenas must be >= 0, got {args.malloc_arenas}")
    limit_malloc_arenas(args.malloc_arenas)  # before the server's threads allocate
    raw_auth = args.auth if args.auth is not None else (os.environ.get(AUTH_ENV) or None)
    try:
        auth = parse_auth(raw_auth) if raw_auth is not None else None
    except ValueError as exc:
        ap.error(f"{'--auth' if args.auth is not None else AUTH_ENV}: {exc}")
    for warning in exposure_warnings(args.host, args.share, auth):
        print(f"warning: {warning}", file=sys.stderr)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    demo = build_app(args.index, args.model, ".", args.providers, args.threads, args.precision,
                     malloc_trim_s=args.malloc_trim_seconds)
    state: AppState = demo.scwm_state  # type: ignore[attr-defined]
    if state.retriever is None:
        print(f"no gallery loaded ({state.error or 'no artifacts in exports/'}); the page explains how to make one")
    else:
        print(f"serving {state.retriever!r}")
    freeze_startup_objects()  # the trimmer's collections then walk only what requests create
    try:
        launch(demo, args.host, args.port, args.share, auth=auth, max_sessions=args.max_sessions,
               cache_minutes=args.cache_minutes)
    except OSError as exc:
        print(f"error: cannot start the server on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
