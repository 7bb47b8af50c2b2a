"""`reco retrain`: train on the whole store; promote only when not worse than what serves."""

from __future__ import annotations

import typer

from reco.cli.common import console, open_settings_store
from reco.cli.progress import steps


def retrain() -> None:
    """Train on everything in the store and promote the new version only if its
    validation NDCG@10 is not worse than the serving version's beyond
    RECO_RETRAIN_TOLERANCE (relative, default 0.02).

    A version that is worse stays published but not current; why is printed and
    recorded (manifest, registry history, model_versions). Exit code 0 either way;
    a running service picks up a promotion by itself.
    """
    from reco.training.retrain import retrain as retrain_job

    settings, engine = open_settings_store()
    try:
        with steps(console) as step:
            outcome = retrain_job(engine, settings, progress=step)
    finally:
        engine.dispose()
    comparison = outcome.comparison
    if comparison is not None:
        console.print(
            f"validation NDCG@10: new {comparison.candidate:.4f}, serving "
            f"{comparison.serving:.4f} ({comparison.basis}; re-measured on the new "
            f"validation users {comparison.serving_remeasured:.4f}), tolerance "
            f"{comparison.tolerance:.1%}"
        )
    if outcome.promoted:
        console.print(f"version [bold]{outcome.version}[/] is now current: {outcome.reason}")
    else:
        console.print(
            f"[yellow]version {outcome.version} kept unpromoted[/]; still serving "
            f"{outcome.previous}: {outcome.reason}"
        )
    raise typer.Exit(0)
