"""Training configuration: nested dataclasses <-> TOML sections, ``section.key=value`` overrides."""
from __future__ import annotations

import tomllib
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

from backend.rig import RigError
from backend.training.config_rules import check_values


@dataclass
class ModelConfig:
    """Generator constructor kwargs (``Generator(**asdict(model))``) and the critic width."""

    hidden: int = 256
    fused: int = 512
    use_prior: bool = True
    prior_gain: float = 0.3   # initial gain of log(prior) in the pair scores (learned)
    prior_floor: float = 1e-4  # prior values are clamped to this before the log
    relative_inputs: bool = False  # G ignores absolute positions (vertex xyz, bone head/tail xyz)
    context_layers: int = 0  # gated residual GraphSAGE layers after the first two (start as the identity)
    pair_attention: int = 0  # heads of the attention among a vertex's candidates (0 = none; starts as the identity)
    critic_hidden: int = 128


@dataclass
class FeaturesConfig:
    """Mirrors :class:`backend.features.pipeline.FeatureConfig`."""

    k_bones: int = 8
    n_neighbors: int = 12
    geodesic_resolution: int = 64
    distance: str = "geodesic"
    prior: str = "geodesic"  # prior weights fed to G: "geodesic" or "heat"
    piece_features: bool = False  # pair features about each vertex's separate mesh piece (features/pieces.py)
    parent_candidate: bool = False  # the nearest bone's parent is always a candidate (features/pipeline.py)
    geodesic_pair: bool = False  # the geodesic falloff weight of each candidate as one more pair feature


@dataclass
class DataConfig:
    vertex_budget: int = 20000  # vertices per batch (several rigs are collated up to this)
    max_vertices: int = 10000  # larger rigs are cropped to a random connected patch of this size
    labeled_fraction: float = 1.0  # the rest of the train split is used without its weights
    unlabeled_dirs: list[str] = field(default_factory=list)  # folders of rig .npz used without weights
    augment_variants: int = 0  # >0: that many augmented copies per rig (cached), one drawn per epoch
    augment_remesh: float = 0.0  # probability that a variant is re-tessellated (subdivided or decimated)
    augment_detach: float = 0.0  # probability that a bone of a variant is detached from its parent (augment.py)
    augment_detach_copies: float = 1.0  # probability that a variant is detached at all (the others stay whole)
    skip_helper_bones: bool = False  # helper bones (*_end, pole targets) are no candidates, as in the runtime
    cache_dir: str = ""  # "" -> <out>/../cache (i.e. runs/cache)
    synth_unlabeled: int = 0  # recipe / cv: that many synthetic creatures (seed synth_seed) join the unlabelled pool
    synth_seed: int = 1
    domain_balance: float = 0.0  # rig loss weight n_domain ** -x (0: off; 1: every domain equal); needs domains.json
    plot_rigs: int = 3  # validation characters drawn in the weight-map plots


@dataclass
class LossConfig:
    sup: float = 1.0  # a
    adv_s: float = 0.1  # b
    adv_u: float = 0.1  # c
    cons: float = 0.05  # d
    const: float = 0.05  # e
    cos_lambda: float = 0.1
    ce: float = 0.0  # weight of the row cross-entropy added to L_sup (our addition; 0 = the design's L_sup)
    rig_balance: bool = False  # L_sup weights every rig of a batch equally instead of every vertex
    gp_weight: float = 10.0
    drift: float = 1e-3  # epsilon * D(real)^2 keeps critic scores near 0
    cons_sigma: float = 0.01  # std of the feature noise for the consistency loss
    smooth: float = 1.0  # weight of smoothness inside L_const
    locality: float = 1.0  # weight of joint locality inside L_const
    deform: float = 0.0  # weight of the deformation loss added to L_sup (our addition; training/poses.py)
    deform_poses: int = 4  # random poses per labelled rig and epoch for the deformation loss
    deform_power: float = 1.0  # 1: mean distance (the evaluation's figure); 2: mean squared distance
    # a blend rule JSON (blend-sweep --fit-rule --out): pose the runtime's mix b * G + (1 - b) * prior,
    # with each rig's b from the rule, instead of G alone ("" = G alone)
    deform_blend_rule: str = ""


@dataclass
class OptimConfig:
    lr_g: float = 1e-4
    lr_d: float = 1e-4
    weight_decay: float = 1e-4
    betas: list[float] = field(default_factory=lambda: [0.5, 0.9])
    warmup_steps: int = 200
    min_lr: float = 1e-6
    clip: float = 1.0


@dataclass
class StagesConfig:
    stage1_epochs: int = 100
    stage1_mse: float = 0.01
    stage1_cos: float = 0.95
    stage1_const: float = 1.0  # weight of L_const in stage 1 (L_sup + L_const)
    stage2_epochs: int = 100
    stage3_epochs: int = 0  # optional fine-tune
    stage3_lr: float = 1e-5
    stage3_const: float = 0.1
    patience: int = 10
    score_smooth: float = 0.1  # early-stopping score = val MSE + score_smooth * val smoothness
    score_deform: float = 0.0  # ... + score_deform * val deformation loss (% of the diagonal; needs loss.deform > 0)


@dataclass
class AblationConfig:
    adversarial: bool = True
    consistency: bool = True
    physical: bool = True


@dataclass
class RunConfig:
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    amp: str = "bf16"  # bf16 | fp16 | off (used on CUDA only)
    cpu_amp: str = "off"  # off | bf16: G's forward and backward in bfloat16 on the CPU (fast with AMX / AVX512-BF16)
    activation_checkpointing: bool = True  # CUDA only
    checkpoint_every_steps: int = 0  # 0: checkpoint at the end of each epoch only
    checkpoint_every_minutes: float = 10.0  # also checkpoint mid-epoch when this long has passed (0: never)
    plot_every: int = 1  # epochs
    spike_factor: float = 10.0  # grad norm > factor * running median -> reported
    threads: int = 0  # torch CPU threads, 0 = torch default
    kill_after_steps: int = 0  # testing aid: stop abruptly after this many steps (simulates a crash)
    init_generator: str = ""  # warm start: generator weights from this checkpoint (same architecture)


@dataclass
class RuntimeConfig:
    """Post-network settings written into the exported model by ``recipe`` and ``cv`` (training
    ignores them): the generator's share against its prior, sharpening power, diffusion reach (%), the
    largest surface share of a piece given to the one bone it encloses (0: none)."""

    prior_blend: float = 1.0
    sharpen: float = 1.0
    diffuse: float = 0.0
    enclosing_pieces: float = 0.0


@dataclass
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    features: FeaturesConfig = field(default_factory=FeaturesConfig)
    data: DataConfig = field(default_factory=DataConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    stages: StagesConfig = field(default_factory=StagesConfig)
    ablation: AblationConfig = field(default_factory=AblationConfig)
    run: RunConfig = field(default_factory=RunConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def generator_kwargs(self) -> dict[str, Any]:
        return dict(hidden=self.model.hidden, fused=self.model.fused, use_prior=self.model.use_prior,
                    prior_gain=self.model.prior_gain, prior_floor=self.model.prior_floor,
                    relative_inputs=self.model.relative_inputs, fp=self.feature_config().pair_dim,
                    context_layers=self.model.context_layers, pair_attention=self.model.pair_attention)

    def feature_config(self):
        from backend.features.pipeline import FeatureConfig

        return FeatureConfig(**asdict(self.features))


#: The run-time settings (RuntimeConfig's fields), in the order `cv --runtime` names them.
RUNTIME_FIELDS = tuple(f.name for f in fields(RuntimeConfig))

#: Config keys that may differ between a run and its resumption (training ignores the run-time settings).
RESUME_FREE = {("run", "kill_after_steps"), ("run", "threads"), ("run", "device"), ("run", "checkpoint_every_steps"),
               ("run", "checkpoint_every_minutes")} | {("runtime", name) for name in RUNTIME_FIELDS}


def config_diff(a: dict, b: dict) -> list[str]:
    """``section.key: a != b`` for every key whose value differs between two config dicts, RESUME_FREE keys
    left out. A key one side lacks (a config written before the key existed) counts as its default."""
    defaults = TrainConfig().to_dict()
    out = []
    for sec in sorted(set(a) | set(b)):
        for key in sorted(set(a.get(sec, {})) | set(b.get(sec, {}))):
            if (sec, key) in RESUME_FREE:
                continue
            default = defaults.get(sec, {}).get(key)
            va, vb = a.get(sec, {}).get(key, default), b.get(sec, {}).get(key, default)
            if va != vb:
                out.append(f"{sec}.{key}: {va!r} != {vb!r}")
    return out


def _coerce(value: Any, current: Any, where: str) -> Any:
    """Check/convert ``value`` to the type of the default ``current``."""
    if isinstance(current, bool):
        if isinstance(value, bool):
            return value
        raise RigError(f"{where}: expected true/false, got {value!r}")
    if isinstance(current, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise RigError(f"{where}: expected an integer, got {value!r}")
    if isinstance(current, float):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise RigError(f"{where}: expected a number, got {value!r}")
    if isinstance(current, str):
        if isinstance(value, str):
            return value
        raise RigError(f"{where}: expected a string, got {value!r}")
    if isinstance(current, list):
        if isinstance(value, list):
            return value
        raise RigError(f"{where}: expected a list, got {value!r}")
    return value


def config_from_dict(data: dict[str, Any], source: str = "<config>") -> TrainConfig:
    """Build a TrainConfig; unknown sections/keys, wrong types and values out of range
    (``config_rules.RULES``) raise RigError naming ``source`` and the key."""
    cfg = TrainConfig()
    for section, values in data.items():
        if not hasattr(cfg, section) or not is_dataclass(getattr(cfg, section)):
            raise RigError(f"{source}: unknown config section [{section}]")
        if not isinstance(values, dict):
            raise RigError(f"{source}: [{section}] must be a table")
        sub = getattr(cfg, section)
        names = {f.name for f in fields(sub)}
        for key, value in values.items():
            if key not in names:
                raise RigError(f"{source}: unknown key {section}.{key} (known: {', '.join(sorted(names))})")
            setattr(sub, key, _coerce(value, getattr(sub, key), f"{source}: {section}.{key}"))
    check_values(cfg, source)
    return cfg


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> TrainConfig:
    """Read a TOML file (None: defaults) and apply ``section.key=value`` overrides (TOML values;
    bare words are taken as strings)."""
    data: dict[str, Any] = {}
    source = "<defaults>"
    if path is not None:
        path = Path(path)
        source = str(path)
        if not path.is_file():
            raise RigError(f"{path}: no such config file")
        try:
            data = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise RigError(f"{path}: not valid TOML ({exc})") from None
    for item in overrides or []:
        if "=" not in item or "." not in item.split("=", 1)[0]:
            raise RigError(f"--set {item!r}: expected section.key=value")
        key, raw = item.split("=", 1)
        section, name = key.strip().split(".", 1)
        data.setdefault(section, {})[name] = parse_value(raw.strip())
    return config_from_dict(data, source)


def parse_value(raw: str) -> Any:
    """A TOML literal (``1e-4``, ``true``, ``[1, 2]``, ``"x"``) or, failing that, the bare string."""
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw
