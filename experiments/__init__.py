"""The paper's experiments on the synthetic world: registry, runner, reports (``python -m experiments``)."""
