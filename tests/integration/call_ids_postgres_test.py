"""Call ids on PostgreSQL: a SIP Call-ID longer than any column, and one reused, each still give a report per call."""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))

from call_outcomes_test import SALON, call, stay_quiet  # noqa: E402
from store_postgres_test import pg  # noqa: E402,F401  (the PostgreSQL fixture; its server comes from conftest)
from voice_fakes import ScriptedStt  # noqa: E402

from spotfunnel.store.calls import call_by_provider_id  # noqa: E402
from spotfunnel.store.db import Database  # noqa: E402
from spotfunnel.store.models import PROVIDER_CALL_ID_MAX  # noqa: E402
from spotfunnel.store.queries import call_report, jobs  # noqa: E402


async def test_an_overlong_call_id_is_stored_bounded_and_the_report_written(pg: Database) -> None:  # noqa: F811
    overlong = "a" * 300 + "@pc33.example.com"  # a caller chooses its SIP Call-ID; nothing stops it being long
    record, _ = await call(ScriptedStt([]), stay_quiet, db=pg, provider_id=overlong)
    report = await call_report(pg, record.call_id)
    assert report is not None and report.outcome == "no_input", [j.last_error for j in await jobs(pg)]
    [row] = await call_by_provider_id(pg, SALON, overlong[:PROVIDER_CALL_ID_MAX])
    assert row.call_id == record.call_id and len(row.provider_call_id) == PROVIDER_CALL_ID_MAX


async def test_a_reused_call_id_reports_both_calls(pg: Database) -> None:  # noqa: F811
    reused = "a84b4c76e66710@pc33.example.com"
    first, _ = await call(ScriptedStt([]), stay_quiet, db=pg, provider_id=reused)
    second, _ = await call(ScriptedStt([]), stay_quiet, db=pg, provider_id=reused)
    assert first.call_id != second.call_id
    assert all([await call_report(pg, first.call_id), await call_report(pg, second.call_id)])
    assert {r.call_id for r in await call_by_provider_id(pg, SALON, reused)} == {first.call_id, second.call_id}
