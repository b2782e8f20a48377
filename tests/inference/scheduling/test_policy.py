"""Job selection on a simulated GPU: fit, model affinity, the aging window, no head-of-line blocking, peers."""

from __future__ import annotations

from inference.scheduling.budget import Gpu, Need
from inference.scheduling.policy import Candidate, Peer, pick, select

NEEDS = {
    "trellis": Need("trellis", 12, load_s=20),
    "paint": Need("paint", 12, load_s=30),
    "unirig": Need("unirig", 9, load_s=15),
    "partfield": Need("partfield", 4, load_s=5),
    "hy-motion": Need("hy-motion", 26, load_s=45),
    "mesh-ops": Need("mesh-ops"),
}
WINDOW = 300.0


def job(job_id: str, runner: str | None, at: float) -> Candidate:
    return Candidate(job_id, runner, at)


def holding(budget: float, *runners: str) -> Gpu:
    gpu = Gpu(budget)
    for runner in runners:
        gpu = gpu.start(NEEDS[runner]).finish(NEEDS[runner])
    return gpu


class TestAffinity:
    def test_a_job_for_a_resident_model_goes_before_an_older_one_that_needs_a_load(self) -> None:
        queue = [job("old", "trellis", 0), job("young", "unirig", 10)]
        assert pick(queue, holding(22.5, "unirig"), NEEDS, window_s=WINDOW).job_id == "young"

    def test_without_a_resident_match_the_oldest_that_fits_goes_first(self) -> None:
        queue = [job("young", "partfield", 10), job("old", "trellis", 0)]
        assert pick(queue, holding(22.5, "unirig"), NEEDS, window_s=WINDOW).job_id == "old"

    def test_jobs_needing_no_vram_count_as_resident_and_keep_their_order(self) -> None:
        queue = [job("gpu", "trellis", 0), job("cpu1", "mesh-ops", 5), job("cpu2", "mesh-ops", 6)]
        chosen = select(queue, Gpu(22.5), NEEDS, window_s=WINDOW, slots=2)
        assert [c.job_id for c in chosen] == ["cpu1", "cpu2"]

    def test_a_cpu_pool_is_plain_fifo(self) -> None:
        queue = [job(str(i), "mesh-ops", float(10 - i)) for i in range(5)]
        chosen = select(queue, Gpu(0), NEEDS, window_s=WINDOW, slots=5)
        assert [c.job_id for c in chosen] == ["4", "3", "2", "1", "0"]


class TestAgingWindow:
    def test_a_job_is_never_overtaken_by_one_that_arrived_a_window_or_more_after_it(self) -> None:
        queue = [job("old", "trellis", 0), job("resident", "unirig", WINDOW)]
        assert pick(queue, holding(22.5, "unirig"), NEEDS, window_s=WINDOW).job_id == "old"
        queue = [job("old", "trellis", 0), job("resident", "unirig", WINDOW - 1)]
        assert pick(queue, holding(22.5, "unirig"), NEEDS, window_s=WINDOW).job_id == "resident"

    def test_the_oldest_job_starts_once_its_window_is_used_up(self) -> None:
        """No starvation: a stream of resident-model jobs delays the oldest only by those inside its window."""
        gpu = holding(22.5, "unirig")
        queue = [job("old", "trellis", 0)] + [job(f"u{i}", "unirig", 60.0 * i) for i in range(1, 20)]
        order = []
        while queue:
            chosen = pick(queue, gpu, NEEDS, window_s=WINDOW)
            assert chosen is not None
            order.append(chosen.job_id)
            queue.remove(chosen)
            gpu = gpu.start(NEEDS[chosen.runner]).finish(NEEDS[chosen.runner])
        assert order.index("old") == 4  # u1..u4 arrived within 300 s of it; u5 (at 300 s) did not overtake

    def test_window_zero_is_fifo_among_jobs_that_fit(self) -> None:
        queue = [job("a", "trellis", 0), job("b", "unirig", 1), job("c", "trellis", 2)]
        chosen = select(queue, holding(22.5, "unirig"), NEEDS, window_s=0, slots=1)
        assert [c.job_id for c in chosen] == ["a"]

    def test_unknown_runners_are_placed_by_age(self) -> None:
        queue = [job("unknown", None, 0), job("known", "trellis", 1)]
        assert pick(queue, Gpu(22.5), NEEDS, window_s=0).job_id == "unknown"


class TestFit:
    def test_a_job_this_gpu_can_never_fit_is_left_for_a_larger_worker(self) -> None:
        queue = [job("huge", "hy-motion", 0), job("small", "partfield", 1000)]
        assert pick(queue, Gpu(22.5), NEEDS, window_s=WINDOW).job_id == "small"
        assert pick(queue, Gpu(46.5), NEEDS, window_s=WINDOW).job_id == "huge"
        assert pick([job("huge", "hy-motion", 0)], Gpu(22.5), NEEDS, window_s=WINDOW) is None

    def test_no_head_of_line_blocking_when_the_head_does_not_fit_now(self) -> None:
        """Two job slots: a running texture job holds 12 GB; the next trellis job waits, a small one runs."""
        gpu = Gpu(22.5).start(NEEDS["paint"])
        queue = [job("trellis", "trellis", 0), job("partfield", "partfield", 5)]
        assert [c.job_id for c in select(queue, gpu, NEEDS, window_s=WINDOW, slots=1)] == ["partfield"]

    def test_select_fills_several_slots_within_the_budget(self) -> None:
        queue = [job("t", "trellis", 0), job("p", "paint", 1), job("u", "unirig", 2)]
        chosen = select(queue, Gpu(22.5), NEEDS, window_s=WINDOW, slots=3)
        assert [c.job_id for c in chosen] == ["t", "u"]  # 12 + 9; paint (12) would go over 22.5


class TestPeers:
    def test_a_job_whose_model_an_idle_peer_holds_is_left_to_that_peer(self) -> None:
        queue = [job("t", "trellis", 0), job("p", "partfield", 1)]
        idle_peer = Peer(idle=True, runners=frozenset({"trellis"}))
        assert pick(queue, Gpu(22.5), NEEDS, window_s=WINDOW, peers=[idle_peer]).job_id == "p"
        busy_peer = Peer(idle=False, runners=frozenset({"trellis"}))
        assert pick(queue, Gpu(22.5), NEEDS, window_s=WINDOW, peers=[busy_peer]).job_id == "t"

    def test_nothing_is_taken_when_an_idle_peer_holds_every_candidate_model(self) -> None:
        idle_peer = Peer(idle=True, runners=frozenset({"trellis"}))
        assert pick([job("t", "trellis", 0)], Gpu(22.5), NEEDS, window_s=WINDOW, peers=[idle_peer]) is None
