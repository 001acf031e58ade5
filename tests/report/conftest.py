"""Fixtures of the report tests that read runs' files."""

import pytest
from lm_eval.api import metrics

from hm3.report.intervals import rescorer


@pytest.fixture
def no_lm_eval(monkeypatch):
    """The tasks' aggregations without lm-eval's task objects: means of the items."""
    import hm3.evaluation.scorer as scorer
    import hm3.report.intervals as intervals

    monkeypatch.setattr(scorer, "configured_scorer", lambda *a, **k: None)
    rescore = {t: (lambda v: rescorer(v["acc,none"], metrics.mean)) for t in ("math", "code")}
    monkeypatch.setattr(intervals, "rescorers_for", lambda _: rescore)
