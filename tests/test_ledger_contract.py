"""One behaviour, two engines: every test here runs against the SQLite ledger and the PostgreSQL ledger.

The Ledger methods take `now`, so time is explicit: windows are crossed by passing a later `now`, never by
sleeping. PostgreSQL is a real server (tests/support/postgres.py), a fresh database per test.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from musicgpt_mcp.ledger import (
    OUTCOME_UNKNOWN,
    Accepted,
    Claimed,
    Download,
    FileKey,
    InFlight,
    Job,
    JobRequest,
    Ledger,
    LimitReached,
    Policy,
    Reused,
    StatusUpdate,
    Unknown,
    open_ledger,
)
from musicgpt_mcp.ledger.base import DAY, DEAD_CLAIM_NOTE, HOUR, MAX_ETA, STALE_CLAIM, UNKNOWN_GUARD

pytestmark = pytest.mark.anyio

T0 = 1_800_000_000.0  # an instant in 2027; whole numbers of seconds, so window edges are exact
POLICY = Policy(reuse_seconds=HOUR, max_credits_per_day=None, max_jobs_per_hour=1000)


@pytest.fixture(params=["sqlite", "postgres"])
def engine(request: pytest.FixtureRequest) -> str | None:
    """None for SQLite, else the URL of a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return None
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
async def ledger(engine: str | None, tmp_path: Path) -> AsyncIterator[Ledger]:
    opened = await open_ledger(tmp_path / "state", database_url=engine)
    try:
        yield opened
    finally:
        await opened.close()


def req(
    fingerprint: str = "sha256:aa",
    *,
    owner: str = "alice",
    account: str = "acct-1",
    stems: tuple[str, ...] = ("vocals", "drums"),
    options: tuple[str, ...] = (),
    name: str = "Song.wav",
) -> JobRequest:
    return JobRequest(owner, account, fingerprint, "file", name, stems, options)


async def submitted(
    ledger: Ledger,
    request: JobRequest,
    now: float,
    task_id: str,
    credit: float | None = None,
    policy: Policy = POLICY,
) -> Job:
    """A job claimed at `now` and accepted by MusicGPT."""
    claim = await ledger.claim(request, policy, now)
    assert isinstance(claim, Claimed), claim
    return await ledger.accepted(claim.job_id, Accepted(task_id, f"conv-{task_id}", 30, credit))


async def claimed(ledger: Ledger, request: JobRequest, now: float, policy: Policy = POLICY) -> int:
    claim = await ledger.claim(request, policy, now)
    assert isinstance(claim, Claimed), claim
    return claim.job_id


def status(
    name: str,
    *,
    message: str | None = None,
    cost: float | None = None,
    done: bool = False,
    mp3: dict[str, str] | None = None,
    wav: dict[str, str] | None = None,
) -> StatusUpdate:
    return StatusUpdate(name, message, cost, done, mp3 or {}, wav or {})


async def test_the_ledger_says_what_it_is_and_answers_a_health_check(ledger: Ledger, engine: str | None) -> None:
    assert ledger.kind == ("sqlite" if engine is None else "postgresql")
    assert ledger.where
    await ledger.check()


# --- claims and reuse ---------------------------------------------------------------------------------------


async def test_a_claim_is_in_flight_then_reused_within_the_window_and_not_after(ledger: Ledger) -> None:
    request = req()
    first = await ledger.claim(request, POLICY, T0)
    assert isinstance(first, Claimed)
    assert first.job_id > 0

    waiting = await ledger.claim(request, POLICY, T0 + 1)
    assert isinstance(waiting, InFlight)
    assert (waiting.job.id, waiting.job.state, waiting.job.task_id) == (first.job_id, "submitting", None)

    job = await ledger.accepted(first.job_id, Accepted("task-1", "conv-1", 40, 2.5))
    assert (job.id, job.state, job.task_id, job.conversion_id, job.eta, job.credit_estimate) == (
        first.job_id,
        "submitted",
        "task-1",
        "conv-1",
        40,
        2.5,
    )
    assert (job.submitted_at, job.stems, job.options, job.source_name, job.status) == (
        T0,
        ("vocals", "drums"),
        (),
        "Song.wav",
        None,
    )
    assert job.display_status == "SUBMITTED"

    for now in (T0 + 1, T0 + HOUR):  # the window's far edge is inside it
        again = await ledger.claim(request, POLICY, now)
        assert isinstance(again, Reused)
        assert again.job.task_id == "task-1"
    later = await ledger.claim(request, POLICY, T0 + HOUR + 1)
    assert isinstance(later, Claimed)
    assert later.job_id != first.job_id


async def test_stems_in_another_order_or_repeated_and_another_name_are_the_same_request(ledger: Ledger) -> None:
    await submitted(ledger, req(stems=("vocals", "drums"), options=("denoise", "deecho")), T0, "task-1")
    same = req(stems=("drums", "vocals", "drums"), options=("deecho", "denoise"), name="renamed copy.wav")
    found = await ledger.claim(same, POLICY, T0 + 5)
    assert isinstance(found, Reused)
    assert found.job.task_id == "task-1"


@pytest.mark.parametrize(
    "other",
    [
        req(fingerprint="sha256:bb"),
        req(stems=("vocals",)),
        req(stems=("vocals", "drums", "bass")),
        req(options=("denoise",)),
        req(account="acct-2"),
        req(owner="bob"),
    ],
    ids=["audio", "fewer-stems", "more-stems", "options", "account", "owner"],
)
async def test_a_request_that_differs_in_any_part_is_not_reused(ledger: Ledger, other: JobRequest) -> None:
    await submitted(ledger, req(), T0, "task-1")
    assert isinstance(await ledger.claim(other, POLICY, T0 + 5), Claimed)


@pytest.mark.parametrize("failure", ["FAILED", "ERROR"])
async def test_a_failed_job_is_not_reused(ledger: Ledger, failure: str) -> None:
    await submitted(ledger, req(), T0, "task-1")
    await ledger.update_status("alice", "task-1", status(failure, message="no", done=True), T0 + 10)
    assert isinstance(await ledger.claim(req(), POLICY, T0 + 20), Claimed)


async def test_a_later_good_job_is_reused_past_a_failed_one(ledger: Ledger) -> None:
    await submitted(ledger, req(), T0, "task-1")
    await ledger.update_status("alice", "task-1", status("FAILED", done=True), T0 + 10)
    await submitted(ledger, req(), T0 + 20, "task-2")
    await ledger.update_status("alice", "task-2", status("COMPLETED", done=True), T0 + 30)
    found = await ledger.claim(req(), POLICY, T0 + 40)
    assert isinstance(found, Reused)
    assert found.job.task_id == "task-2"


async def test_reuse_hours_zero_turns_reuse_off_even_for_a_job_stamped_now(ledger: Ledger) -> None:
    off = replace(POLICY, reuse_seconds=0)
    await submitted(ledger, req(), T0, "task-1", policy=off)
    # Same instant (or a replica whose clock runs ahead stamped it): still a new paid job, as configured.
    assert isinstance(await ledger.claim(req(), off, T0), Claimed)


async def test_force_new_claims_past_a_reusable_an_in_flight_and_an_unknown_job(ledger: Ledger) -> None:
    await submitted(ledger, req("sha256:reusable"), T0, "task-1")
    await claimed(ledger, req("sha256:in-flight"), T0)
    unknown = await claimed(ledger, req("sha256:unknown"), T0)
    await ledger.outcome_unknown(unknown, "timed out")
    force = replace(POLICY, force_new=True)
    for fingerprint in ("sha256:reusable", "sha256:in-flight", "sha256:unknown"):
        assert isinstance(await ledger.claim(req(fingerprint), POLICY, T0 + 1), Reused | InFlight | Unknown)
        assert isinstance(await ledger.claim(req(fingerprint), force, T0 + 1), Claimed)


async def test_force_new_still_keeps_to_the_limits(ledger: Ledger) -> None:
    await submitted(ledger, req(), T0, "task-1")
    one_an_hour = Policy(reuse_seconds=HOUR, max_credits_per_day=None, max_jobs_per_hour=1, force_new=True)
    refused = await ledger.claim(req(), one_an_hour, T0 + 1)
    assert refused == LimitReached("jobs", 1, 1)


async def test_a_released_claim_leaves_no_trace_and_release_spares_accepted_jobs(ledger: Ledger) -> None:
    job_id = await claimed(ledger, req(), T0)
    await ledger.release(job_id)
    assert await ledger.jobs("alice", 10, None, None) == []
    assert (await ledger.spending("alice", T0 + 1)).jobs_last_hour == 0
    again = await claimed(ledger, req(), T0 + 1)

    job = await ledger.accepted(again, Accepted("task-1", None, 30, None))
    await ledger.release(again)  # too late: MusicGPT accepted it
    kept = await ledger.job("alice", "task-1")
    assert kept is not None
    assert kept.id == job.id


async def test_a_dead_claim_becomes_an_unknown_outcome_and_a_live_one_stays_in_flight(ledger: Ledger) -> None:
    job_id = await claimed(ledger, req(), T0)
    await ledger.heartbeat(job_id, T0 + 50)
    alive = await ledger.claim(req(), POLICY, T0 + 50 + STALE_CLAIM)
    assert isinstance(alive, InFlight)

    dead_at = T0 + 50 + STALE_CLAIM + 1
    looked = await ledger.preview(req(), POLICY, dead_at)
    assert isinstance(looked, Unknown)
    assert (looked.job.id, looked.job.state, looked.job.note) == (job_id, "unknown", DEAD_CLAIM_NOTE)
    (listed,) = await ledger.jobs("alice", 10, None, None)
    assert listed.state == "submitting"  # a preview writes nothing

    decided = await ledger.claim(req(), POLICY, dead_at)
    assert isinstance(decided, Unknown)
    assert (decided.job.id, decided.job.state, decided.job.note) == (job_id, "unknown", DEAD_CLAIM_NOTE)
    (listed,) = await ledger.jobs("alice", 10, OUTCOME_UNKNOWN, None)
    assert (listed.id, listed.display_status) == (job_id, OUTCOME_UNKNOWN)

    await ledger.heartbeat(job_id, dead_at + 1)  # the submitter was only slow: its heartbeat changes nothing now
    assert isinstance(await ledger.claim(req(), POLICY, dead_at + 2), Unknown)
    # ... but its reply, when it comes, is the truth.
    await ledger.accepted(job_id, Accepted("task-1", None, 30, 1.0))
    reused = await ledger.claim(req(), POLICY, dead_at + 3)
    assert isinstance(reused, Reused)
    assert reused.job.task_id == "task-1"


async def test_a_claim_without_heartbeats_dies_after_stale_claim(ledger: Ledger) -> None:
    await claimed(ledger, req(), T0)
    assert isinstance(await ledger.claim(req(), POLICY, T0 + STALE_CLAIM), InFlight)
    assert isinstance(await ledger.claim(req(), POLICY, T0 + STALE_CLAIM + 1), Unknown)


async def test_an_unknown_outcome_blocks_identical_submits_for_the_guard_only(ledger: Ledger) -> None:
    short = replace(POLICY, reuse_seconds=60)
    job_id = await claimed(ledger, req(), T0, short)
    await ledger.outcome_unknown(job_id, "x" * 600)
    for now in (T0 + 1, T0 + UNKNOWN_GUARD):
        blocked = await ledger.claim(req(), short, now)
        assert isinstance(blocked, Unknown)
        assert blocked.job.id == job_id
        assert blocked.job.note == "x" * 500
        assert blocked.job.display_status == OUTCOME_UNKNOWN
    assert isinstance(await ledger.claim(req("sha256:other"), short, T0 + 1), Claimed)
    assert isinstance(await ledger.claim(req(), short, T0 + UNKNOWN_GUARD + 1), Claimed)


async def test_an_unknown_outcome_blocks_past_a_long_reuse_window_only_for_the_guard(ledger: Ledger) -> None:
    """A dead claim older than the guard, found because the reuse window is longer, blocks no more than an
    unknown outcome of the same age would (and so does not block once, then stop)."""
    long = replace(POLICY, reuse_seconds=3 * DAY)
    await claimed(ledger, req(), T0, long)
    now = T0 + 2 * DAY
    assert isinstance(await ledger.claim(req(), long, now), Claimed)


async def test_a_reusable_job_is_returned_before_an_unknown_one_blocks(ledger: Ledger) -> None:
    await submitted(ledger, req(), T0, "task-1")
    later = await claimed(ledger, req(), T0 + HOUR + 1)
    await ledger.outcome_unknown(later, "lost")
    blocked = await ledger.claim(req(), POLICY, T0 + HOUR + 2)
    assert isinstance(blocked, Unknown)
    assert blocked.job.id == later
    await submitted(ledger, req(), T0 + HOUR + 3, "task-2", policy=replace(POLICY, force_new=True))
    reused = await ledger.claim(req(), POLICY, T0 + HOUR + 4)
    assert isinstance(reused, Reused)
    assert reused.job.task_id == "task-2"


async def test_preview_decides_like_claim_without_claiming(ledger: Ledger) -> None:
    assert await ledger.preview(req(), POLICY, T0) == Claimed(0)
    assert await ledger.jobs("alice", 10, None, None) == []
    job_id = await claimed(ledger, req(), T0)
    assert isinstance(await ledger.preview(req(), POLICY, T0 + 1), InFlight)
    await ledger.accepted(job_id, Accepted("task-1", None, 30, 4.0))
    assert isinstance(await ledger.preview(req(), POLICY, T0 + 2), Reused)
    capped = Policy(reuse_seconds=HOUR, max_credits_per_day=4.0, max_jobs_per_hour=1000)
    # The same stems were last seen at 4 credits: 4 + 4 would pass the limit of 4.
    assert await ledger.preview(req("sha256:other"), capped, T0 + 3) == LimitReached("credits", 4.0, 4.0, 4.0)
    assert len(await ledger.jobs("alice", 10, None, None)) == 1


# --- limits ---------------------------------------------------------------------------------------------------


async def test_jobs_per_hour_counts_every_chargeable_job_but_not_released_ones(ledger: Ledger) -> None:
    two = Policy(reuse_seconds=HOUR, max_credits_per_day=None, max_jobs_per_hour=2)
    await submitted(ledger, req("sha256:a"), T0, "task-a", policy=two)
    in_flight = await claimed(ledger, req("sha256:b"), T0 + 10, two)
    assert await ledger.claim(req("sha256:c"), two, T0 + 20) == LimitReached("jobs", 2, 2)
    # A reuse costs nothing, so the limit does not stop it.
    assert isinstance(await ledger.claim(req("sha256:a"), two, T0 + 20), Reused)

    await ledger.release(in_flight)  # certainly not charged
    unknown = await claimed(ledger, req("sha256:c"), T0 + 30, two)
    await ledger.outcome_unknown(unknown, "lost")  # may have been charged: counts
    assert await ledger.claim(req("sha256:d"), two, T0 + 40) == LimitReached("jobs", 2, 2)

    assert isinstance(await ledger.claim(req("sha256:d"), two, T0 + HOUR + 1), Claimed)  # task-a left the hour


async def test_credits_per_day_count_the_cost_else_the_estimate_else_the_reservation(ledger: Ledger) -> None:
    ten = Policy(reuse_seconds=HOUR, max_credits_per_day=10.0, max_jobs_per_hour=1000)
    # Nothing seen yet for these two stems: the claim counts the documented 1.5 a stem, 3, which fits.
    await submitted(ledger, req("sha256:a"), T0, "task-a", 6.0, ten)
    # The next job with the same stems counts the last cost seen, 6: 6 + 6 would pass 10.
    assert await ledger.claim(req("sha256:b"), ten, T0 + 1) == LimitReached("credits", 6.0, 10.0, 6.0)

    # MusicGPT's stated cost replaces its estimate: 1.
    await ledger.update_status("alice", "task-a", status("COMPLETED", cost=1.0, done=True), T0 + 2)
    assert (await ledger.spending("alice", T0 + 3)).credits_last_day == 1.0
    # A reply without an estimate is not free: the job counts what its claim reserved (the last cost, 1).
    await submitted(ledger, req("sha256:b"), T0 + 3, "task-b", None, ten)
    assert (await ledger.spending("alice", T0 + 4)).credits_last_day == 2.0
    await submitted(ledger, req("sha256:c"), T0 + 4, "task-c", 4.0, ten)
    await submitted(ledger, req("sha256:d"), T0 + 5, "task-d", 4.0, ten)  # 6 + 4 reaches 10 exactly: allowed
    assert await ledger.claim(req("sha256:e"), ten, T0 + 6) == LimitReached("credits", 10.0, 10.0, 4.0)

    assert isinstance(await ledger.claim(req("sha256:e"), ten, T0 + DAY + 5.5), Claimed)  # a to d left the day


async def test_claims_in_flight_and_unknown_outcomes_count_their_reservation(ledger: Ledger) -> None:
    """A claim counts from the moment it is made, so claims racing for one limit cannot all pass it; and a job
    whose outcome is unknown never becomes free."""
    five = Policy(reuse_seconds=HOUR, max_credits_per_day=4.5, max_jobs_per_hour=1000)
    one_stem = ("bass",)
    first = await claimed(ledger, req("sha256:a", stems=one_stem), T0, five)  # reserves 1.5
    second = await claimed(ledger, req("sha256:b", stems=one_stem, options=("Denoise",)), T0 + 1, five)  # 2.0
    assert (await ledger.spending("alice", T0 + 2)).credits_last_day == 3.5
    refused = await ledger.claim(req("sha256:c", stems=one_stem), five, T0 + 2)
    assert refused == LimitReached("credits", 3.5, 4.5, 1.5)
    await ledger.outcome_unknown(first, "lost")
    await ledger.release(second)  # certainly not charged: its reservation goes with it
    assert (await ledger.spending("alice", T0 + 3)).credits_last_day == 1.5
    # A job that alone would pass the limit is refused: 4 stems at 1.5.
    big = await ledger.claim(req("sha256:d", stems=("bass", "drums", "piano", "guitar")), five, T0 + 4)
    assert big == LimitReached("credits", 1.5, 4.5, 6.0)


async def test_limits_are_per_owner(ledger: Ledger) -> None:
    one = Policy(reuse_seconds=HOUR, max_credits_per_day=5.0, max_jobs_per_hour=1)
    await submitted(ledger, req("sha256:a", owner="alice"), T0, "task-a", 5.0, one)
    assert isinstance(await ledger.claim(req("sha256:b", owner="alice"), one, T0 + 1), LimitReached)
    assert isinstance(await ledger.claim(req("sha256:b", owner="bob"), one, T0 + 1), Claimed)


# --- owners ---------------------------------------------------------------------------------------------------


async def test_an_owner_never_sees_another_owners_jobs(ledger: Ledger, tmp_path: Path) -> None:
    saved = tmp_path / "vocals.mp3"
    saved.write_bytes(b"x")
    await submitted(ledger, req(owner="alice"), T0, "task-1", 3.0)
    await ledger.update_status(
        "alice", "task-1", status("COMPLETED", cost=3.0, done=True, mp3={"vocals": "https://x/v.mp3"}), T0 + 5
    )
    await ledger.record_downloads("alice", "task-1", [Download("vocals", str(saved), "mp3", 1, T0 + 6)])

    assert await ledger.job("bob", "task-1") is None
    assert await ledger.jobs("bob", 10, None, None) == []
    assert await ledger.jobs("bob", 10, "COMPLETED", "Song") == []
    assert await ledger.saved_file("bob", "task-1", "vocals", "mp3") is None
    assert await ledger.recent_costs(req(owner="bob"), 5) == []
    bob = await ledger.spending("bob", T0 + 10)
    assert (bob.credits_last_day, bob.credits_last_30_days, bob.jobs_last_hour) == (0.0, 0.0, 0)
    assert isinstance(await ledger.claim(req(owner="bob"), POLICY, T0 + 10), Claimed)

    # Bob cannot write to Alice's job either.
    await ledger.update_status("bob", "task-1", status("FAILED", message="bob was here", done=True), T0 + 11)
    await ledger.record_downloads("bob", "task-1", [Download("drums", "/tmp/evil", "mp3", 1, T0 + 12)])
    alice = await ledger.job("alice", "task-1")
    assert alice is not None
    assert (alice.status, alice.status_message) == ("COMPLETED", None)
    assert [d.stem for d in alice.downloads] == ["vocals"]
    assert await ledger.saved_file("alice", "task-1", "vocals", "mp3") == saved


# --- after the submit ------------------------------------------------------------------------------------------


async def test_status_updates_are_recorded_and_keep_what_a_later_reply_leaves_out(ledger: Ledger) -> None:
    await submitted(ledger, req(), T0, "task-1", 2.0)
    await ledger.update_status("alice", "task-1", status("IN_PROGRESS", message="working"), T0 + 5)
    job = await ledger.job("alice", "task-1")
    assert job is not None
    assert (job.status, job.status_message, job.finished_at, job.mp3_urls, job.credits) == (
        "IN_PROGRESS",
        "working",
        None,
        {},
        2.0,
    )
    urls_mp3 = {"vocals": "https://cdn.example/v.mp3", "drums": "https://cdn.example/d.mp3"}
    urls_wav = {"vocals": "https://cdn.example/v.wav"}
    await ledger.update_status(
        "alice", "task-1", status("COMPLETED", cost=3.5, done=True, mp3=urls_mp3, wav=urls_wav), T0 + 60
    )
    await ledger.update_status("alice", "task-1", status("COMPLETED", done=True), T0 + 90)
    job = await ledger.job("alice", "task-1")
    assert job is not None
    assert (job.status, job.status_message, job.conversion_cost, job.credits, job.finished_at) == (
        "COMPLETED",
        None,
        3.5,
        3.5,
        T0 + 60,
    )
    assert (job.mp3_urls, job.wav_urls) == (urls_mp3, urls_wav)
    assert list(job.mp3_urls) == ["vocals", "drums"]  # MusicGPT's order is kept
    assert job.display_status == "COMPLETED"
    # A status for a task nobody submitted is ignored.
    await ledger.update_status("alice", "task-nope", status("COMPLETED", done=True), T0 + 91)
    assert [j.task_id for j in await ledger.jobs("alice", 10, None, None)] == ["task-1"]


UPDATES = [
    status("COMPLETED"),
    status("COMPLETED", done=True),  # only done changes: finished_at is set
    status("IN_PROGRESS"),
    status("IN_PROGRESS", message="working"),
    status("IN_PROGRESS", message="working", cost=2.0),
    status("COMPLETED", message="working", cost=2.0, done=True),
    status("COMPLETED", done=True, mp3={"vocals": "https://cdn.example/v.mp3"}),
    status(
        "COMPLETED", done=True, mp3={"vocals": "https://cdn.example/v.mp3"}, wav={"vocals": "https://cdn.example/v.wav"}
    ),
    status("COMPLETED", done=True),  # a later reply without URLs keeps them
    status("IN_PROGRESS", message="x"),
    status("IN_PROGRESS"),  # only the message goes
    status("FAILED", message="bad\x00 file \ud800", done=True),  # what the database cannot store, stored as U+FFFD
]


async def test_a_status_update_says_whether_it_would_change_the_row(ledger: Ledger) -> None:
    """`StatusUpdate.changes` lets a poll skip the write; it must agree with what `update_status` writes,
    or a changed status would be lost (said unchanged) or every poll would write (said changed)."""
    await submitted(ledger, req(), T0, "task-1", 2.0)
    for i, update in enumerate(UPDATES):
        before = await ledger.job("alice", "task-1")
        await ledger.update_status("alice", "task-1", update, T0 + 10 + i)
        after = await ledger.job("alice", "task-1")
        assert update.changes(before) == (after != before), (i, update)
        assert not update.changes(after), (i, update)  # written once, the same reply changes nothing
    # Only jobs MusicGPT accepted take a status (update_status leaves the others alone), so nothing else changes.
    assert after is not None
    assert not UPDATES[0].changes(None)
    assert not UPDATES[0].changes(replace(after, state="unknown"))
    assert UPDATES[0].changes(after)


async def test_a_job_submitted_twice_on_purpose_answers_with_the_newest(ledger: Ledger) -> None:
    """MusicGPT never reuses a task id, but a ledger must not mix two rows up if it ever did."""
    await submitted(ledger, req("sha256:a"), T0, "task-1", 1.0)
    await submitted(ledger, req("sha256:b"), T0 + 10, "task-1", 2.0)
    job = await ledger.job("alice", "task-1")
    assert job is not None
    assert job.fingerprint == "sha256:b"


async def test_downloads_are_listed_and_saved_file_finds_the_newest_that_still_exists(
    ledger: Ledger, tmp_path: Path
) -> None:
    await submitted(ledger, req(), T0, "task-1")
    old, new = tmp_path / "old.mp3", tmp_path / "new.mp3"
    old.write_bytes(b"old")
    new.write_bytes(b"new")
    await ledger.record_downloads("alice", "task-1", [Download("vocals", str(old), "mp3", 3, T0 + 1)])
    await ledger.record_downloads(
        "alice",
        "task-1",
        [
            Download("vocals", str(new), "mp3", 3, T0 + 2, "ab" * 32),
            Download("drums", str(tmp_path / "d.wav"), "wav", 9, T0 + 2),
        ],
    )
    await ledger.record_downloads("alice", "task-nope", [Download("vocals", str(new), "mp3", 3, T0 + 3)])
    await ledger.record_downloads("alice", "task-1", [])

    job = await ledger.job("alice", "task-1")
    assert job is not None
    assert job.downloads == (
        Download("vocals", str(old), "mp3", 3, T0 + 1),
        Download("vocals", str(new), "mp3", 3, T0 + 2, "ab" * 32),
        Download("drums", str(tmp_path / "d.wav"), "wav", 9, T0 + 2),
    )
    (listed,) = await ledger.jobs("alice", 10, None, None)
    assert listed.downloads == job.downloads

    assert await ledger.saved_file("alice", "task-1", "vocals", "mp3") == new
    new.unlink()
    assert await ledger.saved_file("alice", "task-1", "vocals", "mp3") == old
    old.unlink()
    assert await ledger.saved_file("alice", "task-1", "vocals", "mp3") is None
    assert await ledger.saved_file("alice", "task-1", "drums", "wav") is None  # recorded, never on disk
    assert await ledger.saved_file("alice", "task-1", "vocals", "wav") is None


# --- listing ---------------------------------------------------------------------------------------------------


@pytest.fixture
async def listing(ledger: Ledger) -> Ledger:
    """Five jobs, oldest first, one in each state a listing can show."""
    await submitted(ledger, req("sha256:1", name="100% Pure.wav"), T0, "task-pct")
    await ledger.update_status("alice", "task-pct", status("COMPLETED", cost=2.0, done=True), T0 + 5)
    await submitted(ledger, req("sha256:2", name="1000 pure.wav"), T0 + 10, "task-plain")
    await submitted(ledger, req("sha256:3", name="a_b.mp3"), T0 + 20, "task-underscore")
    await ledger.update_status("alice", "task-underscore", status("FAILED", done=True), T0 + 25)
    lost = await claimed(ledger, req("sha256:4", name="axb.mp3"), T0 + 30)
    await ledger.outcome_unknown(lost, "timed out")
    await claimed(ledger, req("sha256:5", name="back\\slash.wav"), T0 + 40)
    await submitted(ledger, req("sha256:1", owner="bob", name="100% Pure.wav"), T0 + 50, "task-bob")
    return ledger


def names(jobs: list[Job]) -> list[str]:
    return [j.source_name for j in jobs]


async def test_jobs_are_listed_newest_first_with_a_limit(listing: Ledger) -> None:
    everything = await listing.jobs("alice", 10, None, None)
    assert names(everything) == ["back\\slash.wav", "axb.mp3", "a_b.mp3", "1000 pure.wav", "100% Pure.wav"]
    assert [j.display_status for j in everything] == ["SUBMITTING", OUTCOME_UNKNOWN, "FAILED", "SUBMITTED", "COMPLETED"]
    assert names(await listing.jobs("alice", 2, None, None)) == ["back\\slash.wav", "axb.mp3"]
    assert await listing.jobs("alice", 0, None, None) == []


@pytest.mark.parametrize(
    ("wanted", "expected"),
    [
        ("COMPLETED", ["100% Pure.wav"]),
        ("SUBMITTED", ["1000 pure.wav"]),
        ("FAILED", ["a_b.mp3"]),
        (OUTCOME_UNKNOWN, ["axb.mp3"]),
        ("IN_PROGRESS", []),
    ],
)
async def test_jobs_are_filtered_by_status(listing: Ledger, wanted: str, expected: list[str]) -> None:
    assert names(await listing.jobs("alice", 10, wanted, None)) == expected


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("%", ["100% Pure.wav"]),  # literal, not "anything"
        ("_", ["a_b.mp3"]),  # literal, not "any one character"
        ("0% p", ["100% Pure.wav"]),
        ("PURE", ["1000 pure.wav", "100% Pure.wav"]),  # case does not matter
        ("\\", ["back\\slash.wav"]),
        ("a\\", []),
        (".mp3", ["axb.mp3", "a_b.mp3"]),
        ("nothing like it", []),
        ("a\x00b", []),
    ],
)
async def test_jobs_are_filtered_by_text_in_the_name_taken_literally(
    listing: Ledger, query: str, expected: list[str]
) -> None:
    assert names(await listing.jobs("alice", 10, None, query)) == expected


async def test_status_and_text_filters_combine(listing: Ledger) -> None:
    assert names(await listing.jobs("alice", 10, "COMPLETED", "pure")) == ["100% Pure.wav"]
    assert names(await listing.jobs("alice", 10, "SUBMITTED", "%")) == []


async def test_jobs_submitted_at_the_same_instant_list_the_later_claim_first(ledger: Ledger) -> None:
    await claimed(ledger, req("sha256:1", name="first"), T0)
    await claimed(ledger, req("sha256:2", name="second"), T0)
    assert names(await ledger.jobs("alice", 10, None, None)) == ["second", "first"]


# --- money ------------------------------------------------------------------------------------------------------


async def test_spending_totals_over_the_hour_the_day_and_thirty_days(ledger: Ledger) -> None:
    await submitted(ledger, req("sha256:a"), T0 - 40 * DAY, "task-a", 100.0)  # too old for any total
    await submitted(ledger, req("sha256:b"), T0 - 10 * DAY, "task-b", 7.0)
    await submitted(ledger, req("sha256:c"), T0 - 2 * HOUR, "task-c", 3.0)
    await submitted(ledger, req("sha256:d"), T0 - 600, "task-d", 9.0)
    await ledger.update_status("alice", "task-d", status("COMPLETED", cost=2.0, done=True), T0 - 60)
    lost = await claimed(ledger, req("sha256:e"), T0 - 300)
    await ledger.outcome_unknown(lost, "lost")
    await claimed(ledger, req("sha256:f"), T0 - 1)
    await submitted(ledger, req("sha256:g", owner="bob"), T0 - 1, "task-g", 50.0)

    spent = await ledger.spending("alice", T0)
    # The lost claim and the one in flight count what they reserved: the highest of the last three costs seen
    # for the same stems (7, 3 and 2). The day: 3 + 2 + 7 + 7; thirty days: that and b's 7.
    assert (spent.credits_last_day, spent.credits_last_30_days, spent.jobs_last_hour) == (19.0, 26.0, 3)


async def test_recent_costs_are_the_newest_comparable_submitted_jobs(ledger: Ledger) -> None:
    await submitted(ledger, req("sha256:a"), T0, "task-a", 1.0)
    await submitted(ledger, req("sha256:b"), T0 + 1, "task-b", 2.0)
    await ledger.update_status("alice", "task-b", status("COMPLETED", cost=2.5, done=True), T0 + 2)
    await submitted(ledger, req("sha256:c"), T0 + 3, "task-c", None)  # no figure: skipped
    await submitted(ledger, req("sha256:d"), T0 + 4, "task-d", 3.0)
    await submitted(ledger, req("sha256:e", stems=("bass",)), T0 + 5, "task-e", 9.0)  # other stems
    await submitted(ledger, req("sha256:f", options=("denoise",)), T0 + 6, "task-f", 9.0)  # other options
    await submitted(ledger, req("sha256:g", account="acct-2"), T0 + 7, "task-g", 9.0)  # other account
    await claimed(ledger, req("sha256:h"), T0 + 8)  # not accepted

    assert await ledger.recent_costs(req("sha256:new"), 5) == [3.0, 2.5, 1.0]
    assert await ledger.recent_costs(req("sha256:new", stems=("drums", "vocals")), 2) == [3.0, 2.5]


# --- fingerprints ------------------------------------------------------------------------------------------------


async def test_the_fingerprint_cache_answers_only_for_an_unchanged_file(ledger: Ledger) -> None:
    # Device and inode numbers are unsigned 64-bit: overlay and network file systems use the top bit.
    key = FileKey(
        dev=2**64 - 3, ino=2**63 + 7, size=1234, mtime_ns=1_700_000_000_123_456_789, ctime_ns=1_700_000_000_223_456_789
    )
    assert await ledger.cached_fingerprint(key) is None
    await ledger.remember_fingerprint(key, "sha256:first")
    assert await ledger.cached_fingerprint(key) == "sha256:first"
    # A file deleted and re-created with the same inode, size and mtime (set back by hand): only its ctime differs.
    assert await ledger.cached_fingerprint(replace(key, ctime_ns=key.ctime_ns + 1)) is None
    assert await ledger.cached_fingerprint(replace(key, mtime_ns=key.mtime_ns + 1)) is None
    assert await ledger.cached_fingerprint(replace(key, size=key.size + 1)) is None
    assert await ledger.cached_fingerprint(replace(key, ino=7)) is None

    changed = replace(key, size=99, mtime_ns=key.mtime_ns + 5, ctime_ns=key.ctime_ns + 5)
    await ledger.remember_fingerprint(changed, "sha256:second")
    assert await ledger.cached_fingerprint(changed) == "sha256:second"
    assert await ledger.cached_fingerprint(key) is None


async def first_release_store(engine: str | None, state: Path) -> None:
    """A store as the first release left it (schema 1): a remembered fingerprint and a saved stem, both without
    what later schemas add."""
    job = (
        "INSERT INTO {jobs} (owner, account, state, task_id, submitted_at, source_kind, source_name, fingerprint, "
        "stems, stems_key, options, options_key) VALUES ('alice', 'acct-1', 'submitted', 'task-1', {t0}, 'file', "
        "'a.wav', 'sha256:aa', {stems}, 'vocals', {options}, '')"
    )
    if engine is None:
        import contextlib
        import sqlite3

        from musicgpt_mcp.ledger import sqlite as engine_module

        state.mkdir(parents=True)
        with contextlib.closing(sqlite3.connect(state / engine_module.FILE_NAME)) as conn:
            conn.executescript(engine_module.MIGRATIONS[0])
            conn.execute(job.format(jobs="jobs", t0=T0, stems="'[\"vocals\"]'", options="'[]'"))
            conn.execute(
                "INSERT INTO downloads (job_id, stem, path, format, bytes, at) VALUES (1, 'vocals', '/x', 'mp3', 3, 1)"
            )
            conn.execute(
                "INSERT INTO fingerprints (dev, ino, size, mtime_ns, sha256) VALUES (1, 2, 3, 4, 'sha256:old')"
            )
            conn.execute("PRAGMA user_version = 1")
            conn.commit()
        return
    import socket

    import psycopg

    from musicgpt_mcp.ledger import postgres as engine_module

    async with await psycopg.AsyncConnection.connect(engine, autocommit=True) as conn:
        await conn.execute(
            "CREATE TABLE musicgpt_mcp_schema (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        await conn.execute(engine_module.MIGRATIONS[0])
        await conn.execute("INSERT INTO musicgpt_mcp_schema (version) VALUES (1)")
        await conn.execute(job.format(jobs="musicgpt_mcp_jobs", t0=T0, stems="ARRAY['vocals']", options="'{}'::text[]"))
        await conn.execute(
            "INSERT INTO musicgpt_mcp_downloads (job_id, stem, path, format, bytes, at) VALUES (1, 'vocals', '/x', 'mp3', 3, 1)"
        )
        await conn.execute(
            "INSERT INTO musicgpt_mcp_fingerprints (host, dev, ino, size, mtime_ns, sha256) "
            "VALUES (%s, 1, 2, 3, 4, 'sha256:old')",
            (socket.gethostname(),),
        )


async def test_a_first_release_store_is_migrated_and_its_old_rows_never_vouch_for_a_file(
    engine: str | None, tmp_path: Path
) -> None:
    """The hashes remembered before the ctime was part of the key could be of a file that has since been
    replaced by one with the same inode, size and mtime: they must not match any more. Downloads recorded
    before their hash was are there, hash unknown, so a repeated download fetches them again."""
    await first_release_store(engine, tmp_path / "state")
    ledger = await open_ledger(tmp_path / "state", database_url=engine)
    try:
        for ctime in (0, 4, 1_700_000_000_000_000_000):
            assert await ledger.cached_fingerprint(FileKey(dev=1, ino=2, size=3, mtime_ns=4, ctime_ns=ctime)) is None
        key = FileKey(dev=1, ino=2, size=3, mtime_ns=4, ctime_ns=5)
        await ledger.remember_fingerprint(key, "sha256:new")
        assert await ledger.cached_fingerprint(key) == "sha256:new"

        job = await ledger.job("alice", "task-1")
        assert job is not None and job.stems == ("vocals",)
        assert job.downloads == (Download("vocals", "/x", "mp3", 3, 1.0, None),)
        await ledger.record_downloads("alice", "task-1", [Download("drums", "/y", "mp3", 5, 2.0, "cd" * 32)])
        job = await ledger.job("alice", "task-1")
        assert job is not None and [d.sha256 for d in job.downloads] == [None, "cd" * 32]
    finally:
        await ledger.close()


# --- what the outside world sends ------------------------------------------------------------------------------


async def test_text_a_database_cannot_store_is_kept_readable_instead_of_failing(ledger: Ledger) -> None:
    """A file name that is not valid UTF-8 reaches Python with lone surrogates; a reply may carry NUL. Neither
    may stop a paid job from being recorded."""
    odd = req(name="bad\udcffname\x00.wav")
    job_id = await claimed(ledger, odd, T0)
    job = await ledger.accepted(job_id, Accepted("task-1", None, 10**30, None))
    assert job.eta == MAX_ETA
    assert job.source_name == "bad\ufffdname\ufffd.wav"
    await ledger.update_status(
        "alice",
        "task-1",
        status("COMPLETED", message="half\x00done", done=True, mp3={"voc\x00als": "https://x/\x00"}),
        T0 + 1,
    )
    job_after = await ledger.job("alice", "task-1")
    assert job_after is not None
    assert (job_after.status, job_after.status_message, job_after.mp3_urls) == (
        "COMPLETED",
        "half\ufffddone",
        {"voc\ufffdals": "https://x/\ufffd"},
    )
    assert names(await ledger.jobs("alice", 10, None, "name\ufffd")) == ["bad\ufffdname\ufffd.wav"]
    assert isinstance(await ledger.claim(odd, POLICY, T0 + 2), Reused)


async def test_a_status_filter_is_matched_as_stored_text_on_both_engines(ledger: Ledger) -> None:
    """The status a listing filters on goes through the same codec as everything else stored: a status no job can
    have (a NUL, a lone surrogate) lists nothing on either engine, rather than failing on one of them (SQLite
    could not encode the surrogate, and its filter once skipped what PostgreSQL's did)."""
    await submitted(ledger, req(), T0, "task-1")
    await ledger.update_status("alice", "task-1", status("COMPLETED", done=True), T0 + 1)
    assert names(await ledger.jobs("alice", 10, "COMPLETED", None)) == ["Song.wav"]
    for odd in ("COMPLETED\x00", "COMPLETED\udcff"):
        assert await ledger.jobs("alice", 10, odd, None) == []


async def test_jobs_from_before_reservations_count_the_documented_assumption(
    engine: str | None, tmp_path: Path
) -> None:
    """A ledger written by the release before reservations: its unknown outcomes and unpriced jobs count the
    documented 1.5 credits a stem and 0.5 an option once migrated, not 0."""
    import sqlite3

    from musicgpt_mcp.ledger import postgres as pg_engine
    from musicgpt_mcp.ledger import sqlite as sqlite_engine

    insert = (
        "INSERT INTO {table} (owner, account, state, submitted_at, source_kind, source_name, fingerprint, stems, "
        "stems_key, options, options_key) VALUES ('alice', 'acct-1', 'unknown', {now}, 'url', 'x', 'url:x', {stems}, "
        "'bass,drums', {options}, 'Denoise')"
    )
    if engine is None:
        folder = tmp_path / "state"
        folder.mkdir()
        conn = sqlite3.connect(folder / sqlite_engine.FILE_NAME)
        conn.executescript(sqlite_engine.MIGRATIONS[0] + "; PRAGMA user_version = 1;")
        conn.execute(insert.format(table="jobs", now=T0, stems='\'["bass", "drums"]\'', options="'[\"Denoise\"]'"))
        conn.commit()
        conn.close()
    else:
        import psycopg

        async with await psycopg.AsyncConnection.connect(engine, autocommit=True) as pg:
            await pg.execute("CREATE TABLE musicgpt_mcp_schema (version integer PRIMARY KEY, applied_at timestamptz)")
            await pg.execute(pg_engine.MIGRATIONS[0])
            await pg.execute("INSERT INTO musicgpt_mcp_schema (version) VALUES (1)")
            await pg.execute(
                insert.format(
                    table="musicgpt_mcp_jobs", now=T0, stems="ARRAY['bass','drums']", options="ARRAY['Denoise']"
                )
            )
    opened = await open_ledger(tmp_path / "state", database_url=engine)
    try:
        assert (await opened.spending("alice", T0 + 1)).credits_last_day == 3.5
    finally:
        await opened.close()
