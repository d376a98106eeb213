"""The correctness cube: every run's per-image predictions, epoch by epoch, sorted once."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from valstat.errors import ValstatError
from valstat.stats.dynamics import majority_by_group
from valstat.stats.paired import mcnemar_midp_p


@dataclass(frozen=True)
class Cube:
    """Predictions sorted by (run, epoch, example), grouped by (run, epoch).

    run_ids: the run table's run_id in code order (run code = position). Per group, shape
    (groups,): run (code), epoch (store epoch), start/size (the group's slice of the flat
    arrays). Flat, shape (rows,): example, correct (label == predicted), predicted, label.
    """

    run_ids: pd.Index
    run: np.ndarray
    epoch: np.ndarray
    start: np.ndarray
    size: np.ndarray
    example: np.ndarray
    correct: np.ndarray
    predicted: np.ndarray
    label: np.ndarray

    @classmethod
    def build(cls, predictions: pd.DataFrame, run_ids: pd.Index) -> Cube:
        """Sort the predictions table (run_id, epoch, example, label, predicted) of `run_ids`."""
        codes = run_ids.get_indexer(predictions["run_id"])
        keep = codes >= 0
        run = codes[keep].astype(np.int64)
        epoch = predictions["epoch"].to_numpy(dtype=np.int64)[keep]
        example = predictions["example"].to_numpy(dtype=np.int64)[keep]
        label = predictions["label"].to_numpy()[keep]
        predicted = predictions["predicted"].to_numpy()[keep]
        if run.size and (epoch.min() < 0 or example.min() < 0):
            raise ValstatError("predictions hold a negative epoch or example index")
        width_x = int(example.max(initial=0)) + 1
        group_key = run * (int(epoch.max(initial=0)) + 1) + epoch
        key = group_key * width_x + example
        steps = np.diff(key)
        if np.any(steps < 0):
            order = np.argsort(key, kind="stable")
            key, group_key, example, label, predicted = (a[order] for a in (key, group_key, example, label, predicted))
            run, epoch = run[order], epoch[order]
            steps = np.diff(key)
        if np.any(steps == 0):
            raise ValstatError("predictions hold the same (run_id, epoch, example) more than once")
        start = np.flatnonzero(np.r_[True, group_key[1:] != group_key[:-1]]) if run.size else np.zeros(0, np.int64)
        size = np.diff(np.r_[start, run.size])
        return cls(run_ids, run[start], epoch[start], start, size, example, label == predicted, predicted, label)

    def rows(self, groups: np.ndarray, width: int) -> np.ndarray:
        """Flat indices of `groups` (all of size `width`), shape (len(groups), width)."""
        return self.start[groups][:, None] + np.arange(width)[None, :]

    def groups_of(self, code: int) -> np.ndarray:
        """Group indices of one run code, in epoch order."""
        return np.arange(np.searchsorted(self.run, code), np.searchsorted(self.run, code, side="right"))

    def grid(self, code: int):
        """One run as (epochs, examples, labels, correct) with correct shape (epochs, images),
        or None when its epochs did not all score the same images."""
        groups = self.groups_of(code)
        if groups.size == 0 or np.unique(self.size[groups]).size != 1:
            return None
        idx = self.rows(groups, int(self.size[groups[0]]))
        if not np.all(self.example[idx] == self.example[idx[0]]):
            return None
        return self.epoch[groups], self.example[idx[0]], self.label[idx[0]], self.correct[idx]

    def moves(self) -> pd.DataFrame:
        """Consecutive recorded epochs of one run on the same images: lost/gained images, mid-p McNemar p."""
        parts = []
        for width in np.unique(self.size):
            groups = np.flatnonzero(self.size == width)
            if groups.size < 2:
                continue
            idx = self.rows(groups, width)
            ex, ok = self.example[idx], self.correct[idx]
            pair = (self.run[groups[1:]] == self.run[groups[:-1]]) & np.all(ex[1:] == ex[:-1], axis=1)
            lost = np.sum(ok[:-1] & ~ok[1:], axis=1)[pair]
            gained = np.sum(~ok[:-1] & ok[1:], axis=1)[pair]
            parts.append(pd.DataFrame({"run": self.run[groups[1:]][pair], "lost": lost, "gained": gained}))
        if not parts:
            return pd.DataFrame({"run": [], "lost": [], "gained": [], "p_value": []})
        out = pd.concat(parts, ignore_index=True)
        out["p_value"] = mcnemar_midp_p(out["lost"], out["gained"])
        return out

    def last_groups(self) -> np.ndarray:
        """Index of each run's last recorded epoch group."""
        return np.flatnonzero(np.r_[self.run[1:] != self.run[:-1], True]) if self.run.size else self.run

    def correct_at(self, wanted: dict) -> dict:
        """{run code: (examples, correct)} at the epoch `wanted` names for each run code."""
        out = {}
        if not wanted:
            return out
        keys = (np.asarray(self.run, dtype=np.int64) << 32) + np.asarray(self.epoch, dtype=np.int64)
        asked = (np.fromiter(wanted, dtype=np.int64, count=len(wanted)) << 32) + np.fromiter(
            wanted.values(), dtype=np.int64, count=len(wanted))
        for g in np.flatnonzero(np.isin(keys, asked)):
            s = slice(self.start[g], self.start[g] + self.size[g])
            out[int(self.run[g])] = (self.example[s], self.correct[s])
        return out

    def rows_of(self, codes) -> tuple:
        """Flat rows of the run codes `codes`: (run, epoch, example, label, predicted, correct),
        shape (rows,) each, in cube order (run, epoch, example)."""
        run, epoch = np.repeat(self.run, self.size), np.repeat(self.epoch, self.size)
        keep = np.isin(run, np.asarray(codes, dtype=np.int64))
        return run[keep], epoch[keep], self.example[keep], self.label[keep], self.predicted[keep], self.correct[keep]

    def at(self, code: int, epoch: int) -> tuple | None:
        """(example, label, predicted, correct), shape (images,) each, of one run code at one
        recorded epoch; None when that epoch has no predictions."""
        groups = self.groups_of(code)
        hit = groups[self.epoch[groups] == epoch]
        if hit.size == 0:
            return None
        s = slice(self.start[hit[0]], self.start[hit[0]] + self.size[hit[0]])
        return self.example[s], self.label[s], self.predicted[s], self.correct[s]

    def final_correct(self) -> dict:
        """{run code: (examples, correct, labels)} at each run's last recorded epoch."""
        out = {}
        for g in self.last_groups():
            s = slice(self.start[g], self.start[g] + self.size[g])
            out[int(self.run[g])] = (self.example[s], self.correct[s], self.label[s])
        return out

    def one_class(self) -> pd.DataFrame:
        """Per run code with predictions: ends_collapsed, ever_collapsed (one class for every
        image at its last / at any recorded epoch), one_class_from (first epoch of the final
        streak predicting the last epoch's single class; None unless it ends collapsed) and
        one_class_class (that class)."""
        columns = ["ends_collapsed", "ever_collapsed", "one_class_from", "one_class_class"]
        if self.run.size == 0:
            return pd.DataFrame(columns=columns)
        groups = np.repeat(np.arange(self.run.size), self.size)
        top, share = majority_by_group(groups, self.predicted, self.run.size)
        collapsed = share == 1.0
        rows = {}
        bounds = np.flatnonzero(np.r_[True, self.run[1:] != self.run[:-1], True])
        for lo, hi in zip(bounds[:-1], bounds[1:]):
            flags, cls = collapsed[lo:hi], top[hi - 1]
            start = hi - lo
            if flags[-1]:
                same = flags & (top[lo:hi] == cls)
                while start > 0 and same[start - 1]:
                    start -= 1
            ends = bool(flags[-1])
            rows[int(self.run[lo])] = (ends, bool(flags.any()),
                                       int(self.epoch[lo + start]) if ends else None,
                                       cls if ends else None)
        return pd.DataFrame.from_dict(rows, orient="index", columns=columns)
