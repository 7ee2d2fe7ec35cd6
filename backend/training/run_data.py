"""The rigs of a training run: the feature store, the labelled, unlabelled and validation sets, and
the computation of their features shared over the ranks."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from backend.features.augment import AugmentConfig
from backend.inference.blend_rule import PieceBlendRule, load_rule_file
from backend.rig import RigError
from backend.training import distributed as dd
from backend.training.config import TrainConfig
from backend.training.data import FeatureStore, RigSet, list_rigs, split_labeled
from backend.training.folds import domain_weights


@dataclass
class RunData:
    """The feature store and the three rig sets a Trainer draws its batches from."""

    store: FeatureStore
    train_l: RigSet  # labelled train rigs
    train_u: RigSet  # train rigs without their weights + the rigs of data.unlabeled_dirs
    val: RigSet


def deform_blend_rule(cfg: TrainConfig) -> PieceBlendRule | None:
    """The blend rule ``loss.deform_blend_rule`` names (None when unset); RigError naming the key."""
    if not cfg.loss.deform_blend_rule:
        return None
    try:
        return load_rule_file(cfg.loss.deform_blend_rule)
    except ValueError as exc:
        raise RigError(f"loss.deform_blend_rule: {exc}") from None


def run_data(cfg: TrainConfig, data_dir: str | Path, cache: Path) -> RunData:
    """The rig sets of ``data_dir`` (train/ and val/) with features cached in ``cache``; RigError when no
    train rig keeps its weights or ``data.domain_balance`` lacks its domains.json."""
    data_dir = Path(data_dir)
    augment = AugmentConfig(remesh=cfg.data.augment_remesh, detach=cfg.data.augment_detach,
                            detach_copies=cfg.data.augment_detach_copies)
    store = FeatureStore(cache, cfg.feature_config(), augment, skip_helpers=cfg.data.skip_helper_bones)
    train = list_rigs(data_dir / "train")
    flags = split_labeled(len(train), cfg.data.labeled_fraction, cfg.run.seed)
    lab = [p for p, f in zip(train, flags) if f]
    unl = [p for p, f in zip(train, flags) if not f]
    for folder in cfg.data.unlabeled_dirs:
        unl += list_rigs(folder)
    if not lab:
        raise RigError(f"{data_dir / 'train'}: no labelled rigs to train on "
                       f"(labeled_fraction={cfg.data.labeled_fraction})")
    poses = cfg.loss.deform_poses if cfg.loss.deform > 0 else 0
    rule = deform_blend_rule(cfg)
    weights = None
    if cfg.data.domain_balance > 0:
        listing = data_dir / "domains.json"
        if not listing.is_file():
            raise RigError(f"data.domain_balance needs {listing} (a fold view: python -m backend data-view --folds)")
        weights = domain_weights([p.name for p in lab], json.loads(listing.read_text()), cfg.data.domain_balance)
    val = list_rigs(data_dir / "val")
    return RunData(
        store=store,
        train_l=RigSet(lab, [True] * len(lab), store, cfg.data.max_vertices, cfg.data.augment_variants, poses, rule,
                       weights=weights),
        train_u=RigSet(unl, [False] * len(unl), store, cfg.data.max_vertices, 0),
        val=RigSet(val, [True] * len(val), store, 10**9, 0, poses, rule, memo=True))


def prepare_unlabeled(rigs: RigSet, rank: int, world: int, drop: bool, report: Callable[..., None]) -> None:
    """Features of unlabelled rig i on rank i % world; with ``drop`` (every rank, all rigs, the same
    decisions) the rigs that fail are removed from the set and reported (event ``unlabeled_skipped``)."""
    keep = []
    for i, path in enumerate(rigs.paths):
        if i % world == rank:
            try:
                rigs.store.arrays(path, 0)
            except Exception as exc:  # noqa: BLE001 -- one bad unlabelled file must not stop training
                if drop:
                    report("unlabeled_skipped", file=str(path), reason=f"{type(exc).__name__}: {exc}")
                continue
        keep.append(path)
    if drop:
        rigs.paths, rigs.labeled = keep, [False] * len(keep)


def prepare_features(data: RunData, dist: dd.DistInfo, progress: bool, report: Callable[..., None]) -> None:
    """Compute this rank's share of the feature cache, then load everything. An unlabelled rig that
    cannot be read or featurised is left out and reported, as predict and evaluate skip bad files;
    labelled and validation rigs must all be usable."""
    for rs in (data.train_l, data.val):
        rs.prepare(dist.rank, dist.world, progress)
    prepare_unlabeled(data.train_u, dist.rank, dist.world, False, report)
    dd.barrier(dist)
    for rs in (data.train_l, data.val):
        rs.prepare(0, 1, False)
    prepare_unlabeled(data.train_u, 0, 1, True, report)
