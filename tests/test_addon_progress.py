"""Progress and cancel of Auto Skin (issue 26), on the installed extension zip in real Blender (bpy,
headless), with the fixtures and helpers of ``test_addon``.

Background mode has no window, so no event reaches a modal operator; the tests call the
operator's own ``modal`` with the events Blender would send (Esc, the timer) while its job runs
in a worker thread, as it does from the UI.
"""
from __future__ import annotations

import threading
import types

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")

from test_addon import addon, fingerprint, fresh, make_scene, run, weights, zip_path  # noqa: E402,F401

NAMES = ["bone_0", "bone_1", "bone_2"]
OPT = {"mode": "GEODESIC", "max_influences": 4, "prune_threshold": 0.05, "only_selected_vertices": False}


def make_job(pkg, budget: int = 200):
    """A job for the selected scene in the Geodesic mode with diffusion, on a predictor that
    simplifies above ``budget`` vertices (so every step of the runtime runs)."""
    target = pkg.gather.read_target(bpy.context)
    predictor = pkg.operators.get_predictor("GEODESIC", "", "CPU", {"diffuse": 0.5})
    predictor.vertex_budget = budget
    return pkg.job.SkinJob(target, predictor, dict(OPT))


def fake_operator(pkg, job):
    """An object the operator's ``modal`` can run on: its job, reports collected in ``reports``."""
    op_cls = pkg.operators.AUTOSKIN_OT_auto_skin
    fake = types.SimpleNamespace(_job=job, _timer=None, _progress=pkg.operators._Progress(bpy.context), reports=[])
    fake.report = lambda kind, text: fake.reports.append((sorted(kind)[0], text))
    fake._end_modal = types.MethodType(op_cls._end_modal, fake)
    fake._finish = types.MethodType(op_cls._finish, fake)
    return fake, op_cls


def event(kind: str):
    return types.SimpleNamespace(type=kind)


def test_job_reports_the_runtime_steps_in_order(fresh):
    make_scene()
    job = make_job(fresh)
    seen = []
    job.on_progress = lambda stage, percent: seen.append((stage, percent))
    job.run()
    assert job.result is not None and job.error is None and not job.cancelled
    stages = list(dict.fromkeys(stage for stage, _ in seen))
    assert stages == ["checking", "simplifying", "features", "transfer", "post-processing", "combining", "writing"]
    percents = [p for _, p in seen]
    assert percents == sorted(percents) and percents[0] >= fresh.job.PREDICT and percents[-1] == fresh.job.WRITE
    # the diffusion reports between its column solves, not only once
    assert sum(stage == "post-processing" for stage, _ in seen) >= 4
    assert "Esc to cancel" in job.status()


def test_esc_cancels_a_running_job_and_changes_nothing(fresh):
    mesh, arm, _ = make_scene()
    before = fingerprint()
    job = make_job(fresh)
    reached, gate = threading.Event(), threading.Event()

    def hold(stage, percent):
        if stage == "features":  # the job waits here until the test has pressed Esc
            reached.set()
            gate.wait(30)

    job.on_progress = hold
    thread = job.start()
    assert reached.wait(30)
    op, op_cls = fake_operator(fresh, job)
    assert op_cls.modal(op, bpy.context, event("TIMER")) == {"RUNNING_MODAL"}
    assert op_cls.modal(op, bpy.context, event("ESC")) == {"CANCELLED"}
    gate.set()
    thread.join(30)
    assert not thread.is_alive()
    assert job.cancelled and job.result is None and job.error is None
    assert op.reports == [("WARNING", "Auto Skin cancelled; nothing was changed")]
    assert fingerprint() == before
    assert len(mesh.vertex_groups) == 0 and len(mesh.modifiers) == 0 and mesh.parent is None


def test_modal_writes_a_finished_job_like_execute(fresh):
    mesh, arm, _ = make_scene()
    job = make_job(fresh, budget=10_000)
    thread = job.start()
    thread.join(60)
    op, op_cls = fake_operator(fresh, job)
    assert op_cls.modal(op, bpy.context, event("TIMER")) == {"FINISHED"}
    assert op.reports[0][0] == "INFO" and op.reports[0][1].startswith("Auto Skin:")
    assert {g.name for g in mesh.vertex_groups} == set(NAMES)
    modal = weights(mesh, NAMES)
    for g in list(mesh.vertex_groups):
        mesh.vertex_groups.remove(g)
    res, err = run(mode="GEODESIC", diffusion=0.5)
    assert res == {"FINISHED"}, err
    np.testing.assert_allclose(weights(mesh, NAMES), modal, atol=1e-6)
    assert any(m.type == "ARMATURE" and m.object == arm for m in mesh.modifiers) and mesh.parent == arm


def test_a_failed_job_reports_and_changes_nothing(fresh):
    make_scene()
    before = fingerprint()
    job = make_job(fresh)

    def fail(stage, percent):
        if stage == "post-processing":
            raise MemoryError("out of memory in the test")

    job.on_progress = fail
    job.run()
    assert isinstance(job.error, MemoryError)
    op, op_cls = fake_operator(fresh, job)
    assert op_cls.modal(op, bpy.context, event("TIMER")) == {"CANCELLED"}
    assert op.reports == [("ERROR", "Auto Skin failed: MemoryError: out of memory in the test")]
    assert fingerprint() == before


def test_invoke_without_a_window_runs_to_the_end(fresh):
    mesh, _, _ = make_scene()
    assert bpy.ops.autoskin.auto_skin("INVOKE_DEFAULT", mode="GEODESIC") == {"FINISHED"}
    assert {g.name for g in mesh.vertex_groups} == set(NAMES)


def test_groups_read_once_give_the_same_snapshot_and_rewrite(fresh):
    """The memberships read with the scene stand in for fresh reads: the same snapshot, and clearing
    a group member by member leaves it as clearing every vertex does (zero-weight members included)."""
    from backend.blender import scene

    mesh, _, _ = make_scene()
    a = mesh.vertex_groups.new(name="bone_1")
    a.add([0, 5, 9], 0.5, "REPLACE")
    a.add([7], 0.0, "REPLACE")
    mesh.vertex_groups.new(name="notes").add([3, 5], 0.25, "REPLACE")
    members = scene.read_group_members(mesh.data)
    apply = fresh.apply
    for plain, shared in zip(apply.snapshot(mesh).groups, apply.snapshot(mesh, members=members).groups):
        assert plain.name == shared.name and plain.lock == shared.lock
        assert np.array_equal(plain.members, shared.members) and np.array_equal(plain.weights, shared.weights)
    before = apply.snapshot(mesh, members=members)
    new = np.zeros((len(mesh.data.vertices), 2), np.float32)
    new[[1, 2], 0] = 0.75
    new[[4], 1] = 1.0
    scene.write_weights(mesh, ["bone_1", "bone_2"], new, members=members)
    by_members = scene.read_group_members(mesh.data)
    apply.restore(before)
    assert all(np.array_equal(x, y) for x, y in zip(scene.read_group_members(mesh.data), members))
    scene.write_weights(mesh, ["bone_1", "bone_2"], new)
    assert all(np.array_equal(x, y) for x, y in zip(scene.read_group_members(mesh.data), by_members))
    assert 7 not in by_members[0][by_members[1] == a.index]  # the zero-weight member went too


def test_group_members_equal_the_vertices_own_groups(fresh):
    from backend.blender import scene

    mesh, _, _ = make_scene()
    assert all(len(x) == 0 for x in scene.read_group_members(mesh.data))  # no deform layer yet
    rng = np.random.default_rng(3)
    for name in ("a", "b", "c"):
        vg = mesh.vertex_groups.new(name=name)
        for i in rng.choice(len(mesh.data.vertices), 40, replace=False).tolist():
            vg.add([i], float(rng.random()), "REPLACE")
    rows, gids, vals = scene.read_group_members(mesh.data)
    ref = [(v.index, g.group, g.weight) for v in mesh.data.vertices for g in v.groups]
    assert rows.tolist() == [r for r, _, _ in ref] and gids.tolist() == [g for _, g, _ in ref]
    assert np.array_equal(vals, np.array([w for _, _, w in ref], np.float32))


def old_fill_remainder(predicted, kept, free, max_influences):
    """fill_remainder as it was before issue 26 (every row through the influence limit)."""
    from backend.inference.postprocess import limit_influences

    p = np.clip(np.asarray(predicted, np.float64), 0.0, None) * free[None, :]
    kept = np.clip(np.asarray(kept, np.float64), 0.0, None) * ~free[None, :]
    remainder = np.clip(1.0 - kept.sum(axis=1), 0.0, 1.0)
    remainder[remainder < 1e-4] = 0.0
    out = np.zeros_like(p)
    has = p.sum(axis=1) > 0.0
    budget = max_influences - np.count_nonzero(kept > 0.0, axis=1) if max_influences > 0 else np.zeros(len(p), int)
    for b in np.unique(budget):
        rows = np.flatnonzero((budget == b) & has)
        if not len(rows) or (max_influences > 0 and b <= 0):
            continue
        full = np.zeros((len(rows), p.shape[1]))
        full[:, free] = limit_influences(p[rows][:, free], int(b))
        out[rows] = full
    return (out * remainder[:, None]).astype(np.float32)


@pytest.mark.parametrize("max_influences", [0, 1, 3, 4])
def test_fill_remainder_equals_the_plain_version(addon, max_influences):
    rng = np.random.default_rng(max_influences)
    V, J = 500, 9
    free = np.array([True, True, False, True, True, True, False, True, False])
    predicted = rng.random((V, J)) * (rng.random((V, J)) < 0.5) * free
    predicted[:50] = 0.0
    predicted[50:100] *= rng.random((50, J)) < 0.3  # rows with few bones
    kept = rng.random((V, J)) * 0.3 * (rng.random((V, J)) < 0.3) * ~free
    kept[200:] = 0.0  # most rows keep nothing
    got = addon.combine.fill_remainder(predicted.astype(np.float32), kept.astype(np.float32), free, max_influences)
    ref = old_fill_remainder(predicted.astype(np.float32), kept.astype(np.float32), free, max_influences)
    np.testing.assert_array_equal(got, ref)
