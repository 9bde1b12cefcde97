from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import yaml

from lvseg.config import config_keys
from search.space import SpaceError, load_space, parse_space, stored_space

ROOT = Path(__file__).parents[2] / "spaces"
SPACES = sorted(ROOT.rglob("*.yaml"))


def test_the_project_ships_the_spaces_the_docs_promise() -> None:
    names = {p.relative_to(ROOT).as_posix() for p in SPACES}
    assert {"baseline.yaml", "dinov2_probe.yaml", "demo/baseline.yaml", "demo/dinov2_probe.yaml"} <= names


@pytest.mark.parametrize("path", SPACES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_shipped_space_is_valid_and_names_real_config_keys(path: Path) -> None:
    space = load_space(path)
    keys = config_keys(space.recipe)
    assert set(space.fixed) <= keys and {p.name for p in space.params} <= keys
    raw = yaml.safe_load(path.read_text())
    assert set(raw.get("params", {})) == {p.name for p in space.params}


def _space(**changes) -> dict:
    raw = {"recipe": "dinov2_probe", "fixed": {"backbone": "tiny", "epochs": 3},
           "params": {"lr": {"type": "loguniform", "low": 1e-4, "high": 1e-1},
                      "optimizer": {"type": "choice", "values": ["sgd", "adam"]},
                      "momentum": {"type": "uniform", "low": 0.5, "high": 0.9, "when": {"optimizer": "sgd"}}},
           "search": {"samples": 4}}
    for key, value in changes.items():
        raw[key] = value
    return raw


@pytest.mark.parametrize("changes, message", [
    ({"colour": "red"}, r"s.yaml: top level: unknown key\(s\) colour"),
    ({"recipe": "unet"}, "s.yaml: recipe: 'unet' is not a registered recipe"),
    ({"fixed": {"learning_rate": 0.1}}, r"s.yaml: fixed: unknown key\(s\) learning_rate"),
    ({"fixed": {"head": "mlp"}}, "s.yaml: fixed: head: 'mlp' is not one of linear, bn_linear, conv"),
    ({"params": {"lr": {"type": "loguniform", "low": 0, "high": 1}}}, "params.lr.low: a log scale needs low > 0"),
    ({"params": {"lr": {"type": "uniform", "low": 1, "high": 0.1}}}, r"params.lr: low \(1\) must be below high"),
    ({"params": {"lr": {"type": "uniform", "low": "small", "high": 0.1}}},
     "params.lr.low: expected a finite number, got 'small'"),
    ({"params": {"lr": {"type": "uniform", "low": 0.1}}}, "params.lr.high: expected a finite number, got None"),
    ({"params": {"lr": {"type": "normal", "low": 0, "high": 1}}}, "params.lr.type: 'normal' is not one of"),
    ({"params": {"loss": {"type": "choice", "values": ["bce", "mse"]}}}, "params.loss: value 'mse': loss: 'mse'"),
    ({"params": {"lr": {"type": "uniform", "low": 0.1, "high": 1, "step": 2}}}, r"params.lr: unknown key\(s\) step"),
    ({"params": {"momentum": {"type": "uniform", "low": 0.1, "high": 0.9, "when": {"optimizer": "sgd"}}}},
     "params.momentum.when: 'optimizer' must be a choice param"),
    ({"params": {"optimizer": {"type": "choice", "values": ["sgd"], "when": {"loss": "bce"}},
                 "loss": {"type": "choice", "values": ["bce"], "when": {"optimizer": "sgd"}}}},
     "conditions form a cycle among loss, optimizer"),
    ({"params": {"optimizer": {"type": "choice", "values": ["sgd", "adam"]},
                 "momentum": {"type": "uniform", "low": 0.1, "high": 0.9, "when": {"optimizer": "lion"}}}},
     r"params.momentum.when.optimizer: 'lion' is not among optimizer's values \['sgd', 'adam'\]"),
    ({"search": {"sampler": "hyperopt"}}, "search.sampler: 'hyperopt' is not one of"),
    ({"search": {"scheduler": "pbt"}}, "search.scheduler: 'pbt' is not one of"),
    ({"search": {"samples": 0}}, "search.samples: expected a whole number >= 1"),
    ({"search": {"sampler": "grid"}}, "grid needs every param to be a choice"),
    ({"metric": ["val_dice", "seconds"], "mode": ["max", "min"]}, "several metrics need the nsga2 sampler"),
    ({"mode": "up"}, "mode: 'up' is not max or min"),
    ({"resources": {"cpu": -1}}, "resources.cpu: expected a number >= 0"),
    ({"fixed": {"lr": 0.1, "backbone": "tiny"}}, "lr: both fixed and searched"),
    ({"fixed": {"backbone": "tiny", "device": "cuda"}}, "s.yaml: fixed.device: cuda needs resources.gpu > 0"),
    ({"metric": "val_dcie"}, "s.yaml: metric: 'val_dcie' is not reported by dinov2_probe; it reports .*val_dice,"),
])
def test_errors_name_the_file_and_field(changes: dict, message: str) -> None:
    with pytest.raises(SpaceError, match=message):
        parse_space(_space(**changes), source="s.yaml")


def test_define_by_run_draws_conditionals_only_when_enabled() -> None:
    space = parse_space(_space(), "s.yaml")
    define = space.define_by_run({"threads": 1})
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = []
    for _ in range(12):
        trial = study.ask()
        constants = define(trial)
        seen.append(trial.params)
        assert constants["recipe"] == "dinov2_probe" and constants["backbone"] == "tiny" and constants["threads"] == 1
        study.tell(trial, 0.5)
    assert all(("momentum" in p) == (p["optimizer"] == "sgd") for p in seen)
    assert {p["optimizer"] for p in seen} == {"sgd", "adam"}


def test_a_child_listed_before_its_parent_is_drawn_after_it() -> None:
    raw = _space()
    raw["params"] = {"momentum": raw["params"]["momentum"], "optimizer": raw["params"]["optimizer"],
                     "lr": raw["params"]["lr"]}
    assert [p.name for p in parse_space(raw, "s").params] == ["optimizer", "momentum", "lr"]


def test_max_epochs_comes_from_fixed_params_or_the_recipe_default() -> None:
    assert parse_space(_space(), "s").max_epochs == 3
    assert parse_space(_space(fixed={"backbone": "tiny"}), "s").max_epochs == 10
    epochs = {"epochs": {"type": "int", "low": 2, "high": 6}}
    assert parse_space(_space(fixed={"backbone": "tiny"}, params=epochs), "s").max_epochs == 6


def test_bounds_written_the_yaml_1_1_way_are_the_numbers_they_mean(tmp_path: Path) -> None:
    """safe_load reads 1e-4 (no dot) as a string; the space took it for a non-number and said
    "expected a finite number, got '1e-4'" to someone who had written one."""
    (tmp_path / "s.yaml").write_text("recipe: dinov2_probe\nfixed: {backbone: tiny}\n"
                                     "params:\n  lr: {type: loguniform, low: 1e-4, high: 1e-1}\n")
    (lr,) = load_space(tmp_path / "s.yaml").params
    assert (lr.low, lr.high) == (1e-4, 0.1)


def test_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nothere.yaml"):
        load_space(tmp_path / "nothere.yaml")
    (tmp_path / "bad.yaml").write_text("recipe: [\n")
    with pytest.raises(SpaceError, match="bad.yaml: not valid YAML"):
        load_space(tmp_path / "bad.yaml")


@pytest.mark.parametrize("split", [{"fixed": {"split": "test"}},
                                   {"params": {"split": {"type": "choice", "values": ["val", "test"]}}}])
def test_a_metric_the_recipe_does_not_report_for_some_config_is_refused(split: dict) -> None:
    raw = {"recipe": "sam_prompts", "metric": "val_dice", "search": {"sampler": "grid", "scheduler": "fifo"}, **split}
    with pytest.raises(SpaceError, match="s.yaml: metric: 'val_dice' is not reported by sam_prompts with split: test; "
                                         "it reports .*test_dice,"):
        parse_space(raw, "s.yaml")


def test_a_stored_space_today_s_recipe_refuses_is_still_read_with_the_reason() -> None:
    raw = _space(fixed={"backbone": "tiny", "epochs": 3, "dropout": 0.1},  # a setting since removed
                 params={"head": {"type": "choice", "values": ["linear", "mlp"]}})  # a head since dropped
    text = yaml.safe_dump(raw)
    with pytest.raises(SpaceError, match="dropout"):
        parse_space(raw, "old.yaml", text)
    space, refused = stored_space(text, "old.yaml")
    assert refused is not None and "old.yaml: fixed: unknown key" in refused and "dropout" in refused
    assert space.fixed["dropout"] == 0.1 and space.params[0].values == ("linear", "mlp")
    assert space.metric == ("val_dice",) and space.text == text
    raw["fixed"].pop("dropout")
    assert "params.head: value 'mlp'" in stored_space(yaml.safe_dump(raw), "old.yaml")[1]


def test_a_stored_space_today_s_recipe_takes_is_checked_in_full() -> None:
    text = yaml.safe_dump(_space())
    space, refused = stored_space(text, "space.yaml")
    assert refused is None and space == parse_space(yaml.safe_load(text), "space.yaml", text)
    with pytest.raises(SpaceError, match="sampler"):  # its structure is checked either way
        stored_space(yaml.safe_dump(_space(search={"sampler": "bogus"})), "space.yaml")
