"""Synthetic valstat stores for the report and plot tests (no training, no TensorFlow).

`build_store` fabricates what `valstat run` would have written: several arms, seeds and folds,
validation accuracy on the k/n lattice (it is the mean of per-image correct flags), a smooth
validation loss (mean of -log p_true), a ReduceLROnPlateau(monitor=val_accuracy, factor=0.1,
patience=2) schedule that really is simulated (so the rate collapses 1e-3 -> 1e-4 -> ... when the
lattice ties), one run collapsed to a single class, and a truth-set accuracy column.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from valstat.stats.plateau import Plateau
from valstat.store import RunRecord, Store

DIGITS = [str(d) for d in range(10)]
HOSTILE = ['<script>alert(1)</script> & "quotes"'] + [f"class_{d}" for d in range(1, 10)]


def _arm_config(val_size: int, epochs: int, schedule: str, lr: float = 1e-3) -> dict:
    return {
        "data": {"source": "digits", "image_size": 32, "val_size": val_size, "train_size": 430,
                 "truth_size": 500, "holdout": 0.0, "data_seed": 0},
        "training": {"epochs": epochs, "batch_size": 32, "optimizer": "adam",
                     "learning_rate": lr, "momentum": 0.0, "loss": "categorical_crossentropy"},
        "schedule": {"kind": schedule, "monitor": "val_accuracy", "factor": 0.1, "patience": 2,
                     "min_delta": 1e-4, "min_lr": 0.0},
        "model": {"width": 1.0, "dense_units": 4096, "dropout": 0.5, "batch_norm": False},
    }


def _simulate_run(rng, difficulty, labels, val_ids, truth_ids, epochs, schedule, lr0,
                  base_skill, collapse_class=None, diverge_at=None):
    """Simulate epoch by epoch so that the schedule feeds back into progress (frozen when lr->0)."""
    n = len(val_ids)
    jitter_img = rng.normal(0, 0.35, size=n)
    plateau = Plateau(lr0, factor=0.1, patience=2, mode="max")
    progress = 0.0
    rows, preds = [], []
    n_classes = int(labels.max()) + 1
    for t in range(epochs):
        rate = float(f"{plateau.lr:.7g}")   # as ValidationRecorder logs the float32 rate
        progress += rate / 1e-3
        skill = base_skill + 3.2 * (1 - math.exp(-progress / 4.0))
        z = skill - difficulty[val_ids] + jitter_img + rng.normal(0, 0.45, size=n)
        p_true = 1 / (1 + np.exp(-z))
        predicted = np.where(z > 0, labels[val_ids],
                             (labels[val_ids] + 1 + rng.integers(0, n_classes - 1, n)) % n_classes)
        if collapse_class is not None and t >= 1:
            predicted = np.full(n, collapse_class)
            p_true = np.where(labels[val_ids] == collapse_class, 0.12, 0.098)
            p_true = p_true + rng.normal(0, 0.0005, n)
        correct = predicted == labels[val_ids]
        val_acc = float(correct.mean())
        val_loss = float(np.mean(-np.log(np.clip(p_true, 1e-7, 1))))
        z_truth = skill - difficulty[truth_ids] + rng.normal(0, 0.6, size=len(truth_ids))
        truth_acc = math.nan if not truth_ids.size else (
            float(np.mean(z_truth > 0)) if collapse_class is None else 0.1)
        train_acc = min(0.999, 1 / (1 + math.exp(-(skill + 0.8))) + rng.normal(0, 0.01))
        loss = 2.3 * math.exp(-progress / 3.5) + 0.05 + abs(rng.normal(0, 0.02))
        if diverge_at is not None and t == diverge_at:
            loss = math.nan
        if collapse_class is not None:
            train_acc, loss = 0.1 + rng.normal(0, 0.005), 2.302 + rng.normal(0, 0.001)
        rows.append((t, loss, train_acc, val_loss, val_acc, rate,
                     truth_acc if truth_ids.size else math.nan))
        preds.extend((t, int(e), int(lab), int(p), float(q)) for e, lab, p, q in
                     zip(val_ids, labels[val_ids], predicted, p_true))
        if diverge_at is not None and t == diverge_at:
            break
        if schedule == "reduce_on_plateau":
            plateau.step(val_acc, t)   # the one Keras-exact implementation valstat shares
    return rows, preds


def build_store(out_dir, arms=("baseline", "constant_lr"), seeds=4, folds=2, epochs=20,
                val_size=30, val_sizes=None, collapse=True, truth=True, class_names=None,
                experiment="synthetic", max_runs=None, diverged=False, meta=True,
                vary=("init", "order"), predictions=True, seed=0) -> Path:
    """Write a synthetic store into `out_dir` and return it.

    arms: arm names; an arm whose name contains "constant" keeps its learning rate fixed, others
    use ReduceLROnPlateau. val_sizes: {arm: n} to make arms that differ only in validation size
    (as valstat/experiments/val_size.toml does). max_runs: stop early, as an interrupted sweep would.
    collapse: the first run of the first arm collapses to one class. diverged: one run's loss
    becomes NaN at epoch 3 (status "diverged"). vary: seed kinds that change with the seed; with
    "split" in it every seed draws new validation images, without it each fold keeps its images
    across seeds (so the finite-sample variance is estimable). predictions=False writes no
    per-image rows (runs recorded from a plain Keras history).
    """
    out_dir = Path(out_dir)
    rng = np.random.default_rng(seed)
    class_names = list(class_names or DIGITS)
    n_classes = len(class_names)
    pool = 1500
    labels = np.arange(pool) % n_classes
    difficulty = rng.normal(0, 1.2, size=pool)
    truth_ids = np.arange(1000, 1500) if truth else np.array([], dtype=int)
    val_sizes = dict(val_sizes or {})
    arms_config = {}
    for arm in arms:
        schedule = "constant" if "constant" in arm else "reduce_on_plateau"
        arms_config[arm] = _arm_config(val_sizes.get(arm, val_size), epochs, schedule)
    written = 0
    with Store(out_dir) as store:
        if meta:
            store.set_meta({
                "experiment": experiment,
                "description": "Synthetic store for tests: AlexNet-like curves on digits.",
                "config_hash": "0123456789abcdef",
                "arms": list(arms),
                "arms_config": arms_config,
                "sweep": {"seeds": seeds, "folds": folds, "vary": list(vary)},
                "dataset": {"source": "digits", "class_names": class_names,
                            "class_counts": {c: 180 for c in class_names},
                            "n_images": 1797, "n_truth": int(truth_ids.size),
                            "description": "scikit-learn digits, upscaled to 32x32 RGB"},
                "versions": {"python": "3.11.2", "tensorflow": "2.21.0", "keras": "3.15.1"},
                "model_summary": {arm: {"input": [32, 32, 3],
                                        "filters": [96, 256, 384, 384, 256],
                                        "dense_units": 4096, "params": 21_596_042}
                                  for arm in arms},
            })
        base = {s: rng.normal(-1.2, 0.5) for s in range(seeds)}
        for s in range(seeds):
            for f in range(folds):
                split_seed = s if "split" in vary else 0
                permutation = np.random.default_rng(1000 + 17 * split_seed + f).permutation(1000)
                for a_index, arm in enumerate(arms):
                    if max_runs is not None and written >= max_runs:
                        return out_dir
                    n_val = arms_config[arm]["data"]["val_size"]
                    # the same images for every arm of one seed/fold (paired design); arms with
                    # a larger validation set see a superset
                    val_ids = np.sort(permutation[:n_val])
                    run_rng = np.random.default_rng(10_000 * (a_index + 1) + 100 * s + f)
                    schedule = arms_config[arm]["schedule"]["kind"]
                    collapse_class = 3 if (collapse and a_index == 0 and s == 0 and f == 0) else None
                    diverge_at = 3 if (diverged and a_index == 0 and s == seeds - 1
                                       and f == 0) else None
                    rows, preds = _simulate_run(
                        run_rng, difficulty, labels, val_ids, truth_ids, epochs, schedule, 1e-3,
                        base[s] + (0.4 if "constant" in arm else 0.0), collapse_class,
                        diverge_at)
                    run_id = f"{arm}/s{s}/f{f}"
                    run = {"run_id": run_id, "experiment": experiment, "arm": arm, "seed": s,
                           "fold": f, "split_seed": split_seed, "init_seed": s,
                           "order_seed": s,
                           "status": "diverged" if diverge_at is not None else "finished",
                           "wall_s": 60.0 + s, "n_train": 430, "n_val": n_val,
                           "n_truth": int(truth_ids.size), "epochs_run": len(rows),
                           "python_version": "3.11.2", "tf_version": "2.21.0",
                           "keras_version": "3.15.1", "backend": "tensorflow",
                           "finished_at": "2026-11-27T10:00:00+00:00",
                           "val_examples": [int(i) for i in val_ids]}
                    store.write_run(RunRecord(
                        run=run, epochs=[(run_id, *r) for r in rows],
                        predictions=[(run_id, *p) for p in preds] if predictions else []))
                    written += 1
    return out_dir


# --------------------------------------------------------------------------- headless Chromium

CHROMIUM = "/usr/bin/chromium"


class Chromium:
    """Headless Chromium driven over the DevTools protocol on a pipe (--remote-debugging-pipe:
    commands on fd 3, replies on fd 4, NUL-terminated JSON), so no websocket library is needed.

    Network is emulated offline; every request that is not file: or data: is recorded.
    """

    def __init__(self, profile_dir, width=1280, height=4000, timeout=60.0):
        import json
        import os
        import subprocess

        self.json = json
        self.timeout = timeout
        cmd_r, self._cmd_w = os.pipe()
        self._res_r, res_w = os.pipe()

        def child_fds():
            os.dup2(cmd_r, 3)
            os.dup2(res_w, 4)

        self.proc = subprocess.Popen(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", "--hide-scrollbars", "--mute-audio",
             f"--user-data-dir={profile_dir}", f"--window-size={width},{height}",
             "--remote-debugging-pipe", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            preexec_fn=child_fds, pass_fds=(3, 4))
        os.close(cmd_r)
        os.close(res_w)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict] = []
        self.width, self.height = width, height
        self.session = None

    def _read_message(self, deadline):
        import os
        import select
        import time

        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("Chromium did not answer in time")
            ready, _, _ = select.select([self._res_r], [], [], left)
            if ready:
                chunk = os.read(self._res_r, 1 << 20)
                if not chunk:
                    raise RuntimeError("Chromium closed the DevTools pipe")
                self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return self.json.loads(message)

    def send(self, method, params=None, session=True):
        import os
        import time

        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session and self.session:
            message["sessionId"] = self.session
        os.write(self._cmd_w, self.json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method):
        import time

        deadline = time.monotonic() + self.timeout
        for event in self.events:
            if event.get("method") == method:
                return event
        while True:
            event = self._read_message(deadline)
            self.events.append(event)
            if event.get("method") == method:
                return event

    def open(self, url):
        """Open `url` offline; returns after the load event."""
        target = self.send("Target.createTarget", {"url": "about:blank"}, session=False)
        attached = self.send("Target.attachToTarget",
                             {"targetId": target["targetId"], "flatten": True}, session=False)
        self.session = attached["sessionId"]
        for method in ("Runtime.enable", "Log.enable", "Page.enable", "Network.enable"):
            self.send(method)
        self.send("Network.emulateNetworkConditions",
                  {"offline": True, "latency": 0, "downloadThroughput": -1,
                   "uploadThroughput": -1})
        self.send("Emulation.setDeviceMetricsOverride",
                  {"width": self.width, "height": self.height, "deviceScaleFactor": 1,
                   "mobile": False})
        self.send("Page.navigate", {"url": url})
        self.wait_for("Page.loadEventFired")

    def evaluate(self, expression):
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                "awaitPromise": True})
        return result.get("result", {}).get("value")

    def screenshot(self, path):
        import base64

        data = self.send("Page.captureScreenshot", {"format": "png"})["data"]
        path.write_bytes(base64.b64decode(data))
        return path

    def errors(self) -> list:
        """Console errors, uncaught exceptions and error log entries seen so far."""
        out = []
        for event in self.events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.exceptionThrown":
                out.append(params.get("exceptionDetails", {}).get("text", "exception"))
            elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error",
                                                                                  "assert"):
                out.append(str(params.get("args")))
            elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
                out.append(params["entry"].get("text", ""))
        return out

    def requests(self) -> list:
        return [e["params"]["request"]["url"] for e in self.events
                if e.get("method") == "Network.requestWillBeSent"]

    def close(self):
        import os

        try:
            self.send("Browser.close", session=False)
        except Exception:  # noqa: BLE001 - the browser may already be gone
            pass
        try:
            self.proc.wait(timeout=10)
        except Exception:  # noqa: BLE001
            self.proc.kill()
        os.close(self._cmd_w)
        os.close(self._res_r)
