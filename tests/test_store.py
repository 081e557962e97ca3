import json
import os

import numpy as np
import pytest
import torch

from xdistill.data import load_dataset
from xdistill.methods import IGOverlay, PrepareContext
from xdistill.models import build_model
from xdistill.store import AttributionStore, StaleStoreError


class Interrupt(Exception):
    pass


def test_store_resumes_after_interruption_without_recomputing(tmp_path):
    data = torch.randn(10, 2, 3)
    calls = []

    def explain(start, end, fail_after=None):
        calls.append(start)
        if fail_after is not None and len(calls) > fail_after:
            raise Interrupt
        return data[start:end] * 2

    store = AttributionStore(tmp_path, {"teacher": "a"}, 10, (2, 3), chunk_size=3)
    with pytest.raises(Interrupt):
        store.compute(lambda s, e: explain(s, e, fail_after=2), progress=False)
    assert json.loads((tmp_path / "manifest.json").read_text())["done"] == [0, 1]
    calls.clear()
    reopened = AttributionStore(tmp_path, {"teacher": "a"}, 10, (2, 3), chunk_size=3)
    assert not reopened.complete
    reopened.compute(explain, progress=False)
    assert calls == [6, 9]  # only the unfinished chunks
    assert reopened.complete and torch.equal(reopened[np.arange(10)], data * 2)
    assert torch.equal(reopened[torch.tensor([4, 1])], data[[4, 1]] * 2)


def test_stale_store_is_refused_with_a_clear_message(tmp_path):
    AttributionStore(tmp_path, {"teacher": "a", "dataset": "d"}, 4, (2,), chunk_size=2)
    with pytest.raises(StaleStoreError, match="identity.*delete the folder or pass overwrite=True"):
        AttributionStore(tmp_path, {"teacher": "b", "dataset": "d"}, 4, (2,), chunk_size=2)
    fresh = AttributionStore.create(tmp_path, {"teacher": "b", "dataset": "d"}, 4, (2,), chunk_size=2, overwrite=True)
    assert fresh.done == set()


def test_incomplete_store_cannot_be_read(tmp_path):
    store = AttributionStore(tmp_path, {}, 4, (1,), chunk_size=2)
    with pytest.raises(RuntimeError, match="incomplete"):
        store.maps()


def test_ig_overlay_precompute_resumes_and_produces_identical_maps(tmp_path):
    train, _ = load_dataset("digits")
    train = train.subset(np.arange(40))
    torch.manual_seed(0)
    teacher = build_model("cnn", 1, 10, width=0.25)

    def context(work):
        return PrepareContext(teacher, teacher, train.x, train.y, train.fingerprint, work, progress=False)

    # uninterrupted reference
    reference = IGOverlay(n_steps=8, store_chunk=8)
    reference.prepare(context(tmp_path / "ref"))
    expected = reference.store[np.arange(40)]

    # interrupted run: the explainer is cut off after two chunks
    import xdistill.methods.ig_overlay as module

    real, seen = module.integrated_gradients, []

    def flaky(*args, **kwargs):
        seen.append(1)
        if len(seen) > 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    module.integrated_gradients = flaky
    try:
        with pytest.raises(KeyboardInterrupt):
            IGOverlay(n_steps=8, store_chunk=8).prepare(context(tmp_path / "run"))
    finally:
        module.integrated_gradients = real
    manifest = json.loads((tmp_path / "run" / "ig_store" / "manifest.json").read_text())
    assert manifest["done"] == [0, 1]

    counted = []
    module.integrated_gradients = lambda *a, **k: counted.append(1) or real(*a, **k)
    try:
        resumed = IGOverlay(n_steps=8, store_chunk=8)
        resumed.prepare(context(tmp_path / "run"))
    finally:
        module.integrated_gradients = real
    assert len(counted) == 3  # chunks 2, 3, 4 only
    assert torch.equal(resumed.store[np.arange(40)], expected)

    # another teacher: the store is stale and refused
    other = build_model("cnn", 1, 10, width=0.25)
    with pytest.raises(StaleStoreError, match="teacher"):
        IGOverlay(n_steps=8, store_chunk=8).prepare(
            PrepareContext(other, other, train.x, train.y, train.fingerprint, tmp_path / "run", progress=False)
        )


def test_ig_overlay_blends_about_p_of_the_samples(tmp_path):
    train, _ = load_dataset("digits")
    train = train.subset(np.arange(64))
    teacher = build_model("cnn", 1, 10, width=0.25)
    method = IGOverlay(p=0.5, n_steps=4, store_chunk=64)
    method.prepare(PrepareContext(teacher, teacher, train.x, train.y, train.fingerprint, tmp_path, progress=False))
    from xdistill.methods import Batch, StepState

    changed = 0
    for step in range(1, 21):
        batch = Batch(train.x, train.y, torch.arange(64))
        out = method.transform(batch, StepState(step, 20, 0))
        changed += (out.x != batch.x).flatten(1).any(1).sum().item()
    assert 0.4 < changed / (20 * 64) < 0.6
    method.eval()
    assert method.transform(batch, StepState(1, 20, 0)) is batch  # no overlay outside training


def test_a_new_store_opened_while_another_process_creates_it_waits_instead_of_failing(tmp_path):
    """DDP ranks open one new store at once: the one that finds the creation lock taken waits for it."""
    import multiprocessing
    import threading
    import time

    from xdistill.files import DirectoryLock, LockedError

    root = tmp_path / "store"
    holder_ready, release = multiprocessing.Event(), multiprocessing.Event()
    holder = multiprocessing.get_context("fork").Process(target=_hold_lock, args=(root, holder_ready, release))
    holder.start()
    try:
        assert holder_ready.wait(30)
        with pytest.raises(LockedError, match=str(holder.pid)):  # a plain lock is refused at once
            DirectoryLock(root, "attribution store").acquire()
        threading.Timer(0.5, release.set).start()
        started = time.monotonic()
        store = AttributionStore(root, {"teacher": "t"}, n_samples=10, sample_shape=(3,), chunk_size=4)
        assert time.monotonic() - started >= 0.4  # it waited for the other process, then created the store
        assert store.maps_path.exists() and store.done == set()
    finally:
        release.set()
        holder.join(10)


def _hold_lock(root, ready, release) -> None:
    from xdistill.files import DirectoryLock

    with DirectoryLock(root, "attribution store"):
        ready.set()
        release.wait(30)


def test_a_refusal_names_a_holder_that_has_not_yet_written_its_pid(tmp_path):
    """The holder takes the lock, then writes its pid: a refusal in that moment still names it, never 'unknown'."""
    import fcntl
    import threading

    from xdistill.files import PID_WIDTH, DirectoryLock, LockedError

    handle = open(tmp_path / ".lock", "a+")
    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)  # taken, file still empty
    write_pid = threading.Timer(0.2, lambda: os.pwrite(handle.fileno(), f"{4242:<{PID_WIDTH}}".encode(), 0))
    write_pid.start()
    try:
        with pytest.raises(LockedError, match=r"\(pid 4242\)"):
            DirectoryLock(tmp_path, "attribution store").acquire()
    finally:
        write_pid.join()
        handle.close()


def test_a_lock_file_holds_only_the_new_holders_pid(tmp_path):
    """A longer pid left by an earlier holder is overwritten whole, not merged with the new one."""
    from xdistill.files import DirectoryLock

    (tmp_path / ".lock").write_text("99999999999")
    with DirectoryLock(tmp_path, "run directory"):
        assert (tmp_path / ".lock").read_text().strip() == str(os.getpid())
