"""The Gradio demo's helpers (``app.py`` at the project root is the entry point and builds the page).

- :mod:`serving.app.session`: the loaded retriever (:class:`~serving.app.session.AppState`), the files the web
  server may serve, the Market protocol, example queries and one search turned into views and a status line;
- :mod:`serving.app.uploads`: checking and decoding an uploaded query image (size, pixels, format, orientation);
- :mod:`serving.app.views`: part colours and legend, image tiles with part overlays, captions, info panel;
- :mod:`serving.app.demo`: the one-click demo gallery (plan, untrained demo model, export and index).

Nothing here imports Gradio, so it is testable on its own.
"""
