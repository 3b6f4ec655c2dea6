"""A study's configuration: which variants, how many trials, budgets, scheduler and storage, the run
template every trial starts from, and the search-space overrides. Everything is validated before
any cluster work starts.

YAML layout (see studies/configs/*.yaml):

    study:  {name, variants, trials_per_variant, max_concurrent_trials, max_params, seeds, ...}
    search: {<method or designs>: {<field or lr>: <distribution>}}
    run:    {backbone, data, train, decode}     # the run template (vlpet.train.config.RunSpec)
"""

from __future__ import annotations

import dataclasses
import functools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch

from studies.plan.search_space import DESIGNS, METHOD, sample, space_for
from studies.plan.trial_run import TrialRun
from vlpet.config_base import MAX_SEED, Config, bounded
from vlpet.data.tasks import get_task
from vlpet.errors import ConfigError, build_dataclass, closest, holds_password, redact, unknown
from vlpet.methods import METHODS, MethodConfig
from vlpet.methods.base import field_names
from vlpet.methods.space import LR, Choice, Dist
from vlpet.models import BackboneConfig
from vlpet.models.vl_model import build_vl_model
from vlpet.paper_variants import VARIANTS, design_name, paper_setting, variant
from vlpet.params import ParamReport, config_report
from vlpet.train.config import RunSpec, load_yaml

STUDY_SECTIONS = ("study", "search", "run")
SAMPLERS = ("auto", "front", "tpe", "gp", "random")
EARLY_STOPPING = ("front", "pareto", "asha", "none")
TRACKERS = ("mlflow", "tensorboard")  # study.tracking (studies/driver/tracking.py)
RENAMED = {"asha": "study.asha is now study.early_stopping: front (the default: stops a trial that cannot reach "
                   "the front at its size), pareto (promotes by Pareto rank in score and params), asha (score "
                   "only, per variant) or none"}
DEFAULT_CONFIG = Path(__file__).parents[1] / "configs" / "embedded.yaml"


@dataclass(frozen=True)
class StudySettings(Config):
    """The `study:` section.

    Attributes:
        name: study name; its directory is <studies root>/<name>.
        variants: paper variants to study (vlpet-small, vlpet-middlex, vlpet-middley, vlpet-large,
            adapter, compacter, lora, prompt, bitfit, full, hyperformer, the Table 9 designs such as
            adapter+g-large+lw), or `designs`: one study over module x gate x lightweight design.
        trials_per_variant: Optuna trials per variant.
        max_concurrent_trials: trials running at once.
        max_params: trainable-parameter budget; configurations above it are never trained.
        seeds: seeds per frontier point; > 1 re-runs the frontier configurations with extra seeds.
        early_stopping: how trials are stopped early: `front` (default) stops a trial, at any epoch from
            grace_period on, once its best possible final score (the finished trials' learning curves plus
            seed_noise) is beaten by a finished configuration with no more trainable parameters; at the rungs
            (grace_period * reduction_factor**k epochs), `pareto` keeps a trial that is among the best
            1/reduction_factor of its rung by Pareto
            rank in (score, trainable params) over all variants (MO-ASHA); `asha` by score alone, per
            variant (Tune's ASHA); `none` trains every trial to the end (see studies/search/schedulers.py).
        seed_noise: score points within which two configurations are a tie: the early stopping's margin,
            and how close to the front a configuration must be to get the extra seeds.
        max_trials: cap on the search's trials (all variants).
        time_budget_s: wall-clock budget of the search (all variants: they run in one Tune experiment).
        gpu_hours: GPU-hour budget of the whole study (sum over trials of wall time x GPUs).
        optuna_storage: Optuna RDB URL; default sqlite:///<study dir>/optuna.db (PostgreSQL for clusters).
        sampler: Optuna sampler: `auto` (default: by trials_per_variant, `front` below 100 trials, TPE from
            100), `front` (studies/search/front_sampler.py: a Gaussian process on the score, each candidate judged by
            the hypervolume it could add at its known size), `gp` (Optuna's multi-objective GP), `tpe`
            (multi-objective TPE with constant liar) or `random` (the baselines of bench/search_efficiency.py).
        sampler_seed: the study's sampler seed; each variant's sampler is seeded from it and the
            variant's name, so variants draw different points.
        paper_reference: also train each paper variant's hand-picked configuration (the seed's
            hyperparameters, sizes scaled to the backbone, the paper's learning rate) as a reference point;
            the report says whether the searched front dominates it.
        max_failures: retries of a failed trial (from its last checkpoint).
        tracking: experiment trackers fed from the results table: `mlflow` (one experiment per study, one
            run per trial) and/or `tensorboard` (event files under <study dir>/tensorboard); studies/driver/tracking.py.
        mlflow_uri: the MLflow tracking server (default: MLFLOW_TRACKING_URI), checked before any trial.
    """

    section: ClassVar[str] = "study"

    name: str = "embedded"
    variants: tuple[str, ...] = ("vlpet-small", "vlpet-middlex", "vlpet-middley", "vlpet-large")
    trials_per_variant: int = bounded(3, ge=1)
    max_concurrent_trials: int = bounded(2, ge=1)
    max_params: int | None = bounded(None, ge=1)
    seeds: int = bounded(1, ge=1)
    early_stopping: str = "front"
    grace_period: int = bounded(2, ge=1)  # bench/search_efficiency.py: rung 1 cut the best run (RESULTS.md)
    seed_noise: float = bounded(1.0, ge=0)
    reduction_factor: int = bounded(2, ge=2)
    max_trials: int | None = bounded(None, ge=1)
    time_budget_s: float | None = bounded(None, gt=0)
    gpu_hours: float | None = bounded(None, gt=0)
    optuna_storage: str | None = None
    sampler: str = "auto"
    sampler_seed: int = bounded(0, ge=0, le=MAX_SEED)
    paper_reference: bool = True
    max_failures: int = bounded(2, ge=0)
    tracking: tuple[str, ...] = ()
    mlflow_uri: str | None = None

    def check(self) -> None:
        valid = [*VARIANTS["bart"], DESIGNS]
        if not self.variants:
            raise ConfigError("study.variants is empty; list at least one of " + ", ".join(valid))
        for name in self.variants:
            if name not in valid:
                raise unknown("study.variants entry", name, valid)
        repeated = sorted({name for name in self.variants if self.variants.count(name) > 1})
        if repeated:
            raise self.error("variants", f"lists {', '.join(repeated)} more than once; each variant is one search: "
                                         "list it once (more trials: trials_per_variant)")
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}", self.name):
            raise self.error("name", "must be a directory name of at most 100 characters: letters, digits, '.', "
                                     "'_', '-', not starting with '.'")
        for name in self.tracking:
            if name not in TRACKERS:
                raise unknown("study.tracking entry", name, TRACKERS)
        if len(set(self.tracking)) < len(self.tracking):
            raise self.error("tracking", "lists a tracker more than once; list each once")
        if self.sampler not in SAMPLERS:
            raise unknown("study.sampler", self.sampler, SAMPLERS)
        if self.early_stopping not in EARLY_STOPPING:
            raise unknown("study.early_stopping", self.early_stopping, EARLY_STOPPING)
        url = self.optuna_storage
        if url is not None and holds_password(url):  # study.json and the resume command would carry it
            raise ConfigError(f"study.optuna_storage={redact(url)} holds a password, which would be saved in "
                              "study.json; leave it out of the URL (driver://user@host:port/database) and give it "
                              "in the environment: PGPASSWORD or a ~/.pgpass file for PostgreSQL (libpq reads both)")
        if url is not None and url.startswith("sqlite:"):
            path = url.removeprefix("sqlite:").removeprefix("///")
            if path in ("", "//", ":memory:") or url == "sqlite://":
                raise ConfigError("study.optuna_storage=sqlite:// keeps the searches in memory, lost when the driver "
                                  "exits; leave optuna_storage unset (<study dir>/optuna.db) or give a file")
            if not path.startswith("/"):
                raise ConfigError(f"study.optuna_storage={url}: a relative SQLite path resolves against the "
                                  f"current directory, not the study's; give an absolute one (sqlite:////abs/"
                                  f"{path}) or leave optuna_storage unset (<study dir>/optuna.db)")


@dataclass(frozen=True)
class StudyConfig:
    """A validated study: settings, the run template and the search spaces, with the shape of the template's
    backbone (its family and hidden size, read once from its config). `search` is the YAML section as given
    (what study.json keeps); `spaces` the same parsed once: every method's (and `designs`') space, its
    overrides applied, fit to d_model."""

    settings: StudySettings
    template: RunSpec  # the `run:` section: the run every trial starts from
    search: dict[str, dict[str, Any]]
    family: str  # 'bart' or 't5'
    d_model: int
    spaces: dict[str, dict[str, Dist]]

    def method_of(self, variant_name: str) -> str:
        """The method (search section) of a study variant; `designs` draws its method and has a section of its own."""
        return DESIGNS if variant_name == DESIGNS else VARIANTS[self.family][variant_name]["method"]

    def space(self, variant_name: str) -> dict[str, Dist]:
        """The search space of one variant (its method's defaults + overrides, fit to d_model); the
        `designs` variant has its own space, which draws the method."""
        return self.spaces[self.method_of(variant_name)]

    def draw(self, variant_name: str, trial: Any) -> dict[str, Any]:
        """One configuration of a variant drawn from its space, define-by-run."""
        fixed = None if variant_name == DESIGNS else VARIANTS[self.family][variant_name]
        return sample(self.space(variant_name), trial, fixed)

    def trial_spec(self, variant_name: str, params: dict[str, Any], seed: int | None = None) -> RunSpec:
        """The run of one trial: the template with the variant's method and the sampled parameters (for
        `designs`, the paper variant of the drawn module with the drawn fields)."""
        params = dict(params)
        lr = params.pop(LR, self.template.train.lr)
        base = params.pop(METHOD) if variant_name == DESIGNS else variant_name
        # task-conditioned modules (per-task, Hyperformer) are made for the study's tasks
        conditioned = "tasks" in field_names(METHODS[VARIANTS[self.family][base]["method"]])
        tasks = {"tasks": self.template.data.tasks} if conditioned else {}
        method = variant(base, self.family, **{**tasks, **params})  # the trial's one build of its method config
        train = dataclasses.replace(self.template.train, lr=lr, **({"seed": seed} if seed is not None else {}))
        return dataclasses.replace(self.template, method=method, train=train)  # re-checks the sections' fit only

    def describe_trial(self, variant_name: str, params: dict[str, Any], seed: int | None = None) -> TrialRun:
        """Everything a trial needs, computed on the driver: the full run spec and its parameter count
        (known before training). `search` is the study variant the trial comes from; `variant` names what
        it runs: the study variant, or for `designs` the drawn combination ('compacter+g-large+lw'), so
        that the analysis groups and colours trials by combination."""
        spec = self.trial_spec(variant_name, params, seed)
        report = self.params_of(spec)
        name = design_name(spec.method) if variant_name == DESIGNS else variant_name
        return TrialRun(search=variant_name, variant=name, config=params, spec=spec,
                        trainable=report.trainable, total=report.total, params_pct=report.percent)

    def first_point(self, variant_name: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """A variant's default setting: the first value of every choice (the lowest of a range), as the
        Optuna parameters to enqueue (the study's first trial of the variant) and as the drawn values."""
        first = _FirstValue()
        return first.params, self.draw(variant_name, first)

    def paper_trials(self) -> list[TrialRun]:
        """Each studied paper variant's hand-picked configuration (`paper_setting`: the seed's hyperparameters,
        sizes scaled to this backbone, the paper's lr); `designs` has none."""
        video = all(get_task(t).feature_format == "npz" for t in self.template.data.tasks)
        return [self.describe_trial(v, paper_setting(v, self.family, self.d_model, video))
                for v in self.settings.variants if v != DESIGNS]

    def space_points(self, variant_name: str) -> list[dict[str, Any]]:
        """The drawn values of each choice and both ends of each range of a variant's space in turn, the other
        parameters at their first value (what `check_space` checks; where a variant's cheapest point is)."""
        return [self.draw(variant_name, _FirstValue({key: value})) for key, value in self._probes(variant_name)]

    def _probes(self, variant_name: str) -> list[tuple[str, Any]]:
        """(parameter, value): each choice and both ends of each range of a variant's space."""
        return [(key, value) for key, dist in self.space(variant_name).items()
                for value in (dist.values if isinstance(dist, Choice) else (dist.low, dist.high))]

    def check_space(self, variant_name: str) -> None:
        """Every value of every distribution of a variant's space makes a valid run: each choice and both
        ends of each range in turn, the other parameters at their first value. A bad one is a ConfigError
        naming search.<method>.<parameter> and the value."""
        method = self.method_of(variant_name)
        for key, value in self._probes(variant_name):
            try:
                self.trial_spec(variant_name, self.draw(variant_name, _FirstValue({key: value})))
            except ConfigError as err:
                raise ConfigError(f"search.{method}.{key}: the value {value!r} makes no valid run ({err})") from None

    def first_spec(self, variant_name: str) -> RunSpec:
        """The run of a variant at its default setting (`first_point`), which validation checks eagerly."""
        return self.trial_spec(variant_name, self.first_point(variant_name)[1])

    @staticmethod
    def params_of(spec: RunSpec) -> ParamReport:
        """Trainable/total parameters of a trial's configuration, known before training."""
        return _cached_report(spec.backbone, spec.method)

    def to_dict(self) -> dict[str, Any]:
        """Plain dicts for study.json."""
        return {"study": self.settings.to_dict(), "search": self.search, "run": self.template.to_dict()}


@functools.lru_cache(maxsize=1024)
def _cached_report(backbone: BackboneConfig, method: MethodConfig) -> ParamReport:
    """Parameter counts depend only on the structure (backbone + method), not on lr or seed."""
    return config_report(backbone, method)


def study_from_dict(data: dict[str, Any]) -> StudyConfig:
    """Build and validate a StudyConfig from plain dicts (YAML)."""
    for key in data:
        if key not in STUDY_SECTIONS:
            raise ConfigError(f"{key!r} is not a study config section{closest(str(key), STUDY_SECTIONS)}; "
                              f"valid: {', '.join(STUDY_SECTIONS)}")
    study = data.get("study") or {}
    for key in RENAMED.keys() & (study.keys() if isinstance(study, dict) else set()):
        raise ConfigError(RENAMED[key])
    settings = build_dataclass(StudySettings, study, "study")
    template = RunSpec.from_dict(data.get("run") or {}).with_absolute_paths()
    search = data.get("search") or {}
    if not isinstance(search, dict):
        raise ConfigError("search must map method names to {parameter: distribution}")
    if settings.early_stopping != "none" and template.train.eval_every != 1:
        raise ConfigError(f"study.early_stopping={settings.early_stopping} compares every epoch's score, but "
                          f"run.train.eval_every={template.train.eval_every} validates less often; set eval_every: 1 or "
                          "early_stopping: none")
    if settings.early_stopping != "none" and settings.grace_period >= template.train.epochs:
        raise ConfigError(f"study.grace_period={settings.grace_period} leaves early stopping nothing to decide: it "
                          f"starts at epoch grace_period and run.train.epochs={template.train.epochs}; set grace_period "
                          f"below epochs, or early_stopping: none")
    with torch.device("meta"):  # the backbone's shape from its config: no weights
        shape = build_vl_model(template.backbone, load_weights=False)
    methods = {cfg["method"] for cfg in VARIANTS[shape.family].values()} | {DESIGNS}
    for method, overrides in search.items():
        if method not in methods:
            raise unknown("search method", method, methods)
        if not isinstance(overrides, dict):
            raise ConfigError(f"search.{method} must map parameters to distributions")
    # every space, those of methods not studied this time too: their overrides are checked as well
    spaces = {method: space_for(method, search.get(method), shape.d_model) for method in sorted(methods)}
    config = StudyConfig(settings, template, search, family=shape.family, d_model=shape.d_model, spaces=spaces)
    for name in settings.variants:  # every space parses, fits the model and yields valid runs only
        config.check_space(name)
    if settings.paper_reference:
        config.paper_trials()
    check_budget(config)
    return config


def check_budget(config: StudyConfig) -> None:
    """A params budget (`study.max_params`) that no variant's cheapest configuration meets would skip every
    trial one by one: refused, naming the cheapest variant. The cheapest configuration of a variant is
    looked for as `check_space` walks its space: each value of each distribution, the others at their first."""
    budget = config.settings.max_params
    if budget is None:
        return
    cheapest = {name: min(config.params_of(config.trial_spec(name, point)).trainable
                          for point in config.space_points(name)) for name in config.settings.variants}
    name = min(cheapest, key=cheapest.get)
    if cheapest[name] > budget:
        raise ConfigError(f"study.max_params={budget:,} is below every variant's cheapest configuration (the "
                          f"cheapest: {name} with {cheapest[name]:,} trainable parameters); raise max_params to at "
                          f"least {cheapest[name]:,}, or drop it")


class _FirstValue:
    """A stand-in Optuna trial that picks the first/lowest value (or the value `fixed` gives the parameter's
    Optuna name) and records it under that name."""

    def __init__(self, fixed: dict[str, Any] | None = None) -> None:
        self.params: dict[str, Any] = {}
        self.fixed = fixed or {}

    def suggest_categorical(self, name: str, values: list[Any]) -> Any:
        return self.params.setdefault(name, self.fixed.get(name, values[0]))

    def suggest_float(self, name: str, low: float, high: float, log: bool = False) -> float:
        return self.params.setdefault(name, self.fixed.get(name, low))

    def suggest_int(self, name: str, low: int, high: int, log: bool = False) -> int:
        return self.params.setdefault(name, self.fixed.get(name, low))


def load_study(path: str | Path | None) -> StudyConfig:
    """The study at `path` (YAML), or the embedded default when None."""
    return study_from_dict(load_yaml(path or DEFAULT_CONFIG))
