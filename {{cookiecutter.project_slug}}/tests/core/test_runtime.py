"""The garbage collector tuned for a server (GC_TUNING): on while the app runs, undone after."""

import gc

from app.core.config import Settings
from app.core.runtime import SERVER_THRESHOLDS, tuned_gc
from app.main import create_app


def test_tuning_freezes_what_start_up_made_and_undoes_it() -> None:
    before, frozen = gc.get_threshold(), gc.get_freeze_count()
    with tuned_gc():
        assert gc.get_threshold() == SERVER_THRESHOLDS
        # The modules, the app, everything alive now.
        assert gc.get_freeze_count() > frozen + 10_000
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


async def test_the_apps_lifespan_tunes_the_collector_only_when_asked() -> None:
    before, frozen = gc.get_threshold(), gc.get_freeze_count()
    for tuning, expected in ((True, SERVER_THRESHOLDS), (False, before)):
        app = create_app(Settings(GC_TUNING=tuning, JOBS_ENABLED=False))
        async with app.router.lifespan_context(app):
            assert gc.get_threshold() == expected
            assert (gc.get_freeze_count() > frozen + 10_000) is tuning
        assert gc.get_threshold() == before
    assert gc.get_freeze_count() <= frozen
