"""Trainer(seed=s) reaches the Bayesian search: runs with different seeds are different runs."""

from __future__ import annotations

import tracekit as tk
from tracekit.training import Trainer


def _fit(seed, **options):
    x = tk.param(0, name="x", bounds=(0, 50), description="a count")

    @tk.bundle()
    def predict(x, example):
        """Return x."""
        return x

    opt = tk.Optimizer([x], **options)
    trainer = Trainer(lambda ex: predict(x, ex), opt, lambda p, ex: -abs(p - 17), train=list(range(4)),
                      val=list(range(4)), batch_size=4, max_steps=1, progress=False, seed=seed)
    result = trainer.fit()
    trials = result.history[1]["changes"][0]["reason"]
    return opt.param_groups[0]["search_seed"], trials, x.data


def test_the_trainer_seed_seeds_a_search_without_its_own_seed():
    seed0, _, x0 = _fit(0)
    seed1, _, x1 = _fit(1)
    again, _, x0_again = _fit(0)
    assert (seed0, seed1, again) == (0, 1, 0)
    assert x0 == x0_again and x0 != x1  # reproducible per seed, different across seeds
    assert _fit(1, search_seed=7)[0] == 7  # the user's own seed is kept
