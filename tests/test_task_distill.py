"""stage=task: TD steps 1+2 beat chance, teacher logits cached, td=off, gd from a checkpoint,
w/o Pred, regression, augment=on, and the saved student loads and predicts."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from conftest import run_tinyfw
from kwtask import kw_overrides, write_kw_task


@pytest.fixture(scope="session")
def kw_root(shared_home) -> Path:
    return write_kw_task(shared_home / "kw")  # same files (and cached teacher) as test_teacher


def _load_student(path: str):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model, info = AutoModelForSequenceClassification.from_pretrained(path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    return model.eval(), AutoTokenizer.from_pretrained(path)


@pytest.mark.slow
def test_td_beats_chance_saves_loadable_student_and_caches_teacher_logits(tmp_path, shared_home, kw_root):
    args = ["stage=task", "gd=off", "augment=off", *kw_overrides(kw_root)]
    rec = run_tinyfw(*args, run_dir=tmp_path / "a", home=shared_home)
    m = rec["metrics"]
    assert rec["flags"] == {"gd": "off", "td": "on", "da": "off"}
    assert m["dev"]["accuracy"] >= 0.8 and m["test"]["accuracy"] >= 0.8  # chance: 0.5
    assert m["teacher"]["dev"]["accuracy"] >= 0.8 and m["main_metric"] == "accuracy"
    assert set(m["steps"]) == {"step1", "step2"} and m["init"] == "random"
    assert m["teacher_logits"] == {"cached": False, "computed": 160}
    assert m["student"]["non_embedding_params"] < m["teacher_size"]["non_embedding_params"]
    student = rec["outputs"]["student"]
    assert (Path(student) / "README.md").read_text().count("accuracy") >= 2
    model, tok = _load_student(student)
    with torch.no_grad():
        logits = model(**tok(["really great fun", "boring and awful plot"], return_tensors="pt", padding=True)).logits
    assert logits.argmax(-1).tolist() == [1, 0]
    # a second run on the same data reuses the teacher's logits instead of recomputing them
    again = run_tinyfw(*args, run_dir=tmp_path / "b", home=shared_home)
    assert again["metrics"]["teacher_logits"] == {"cached": True, "computed": 0}
    assert again["metrics"]["dev"] == m["dev"]  # same seed, same data: same result


@pytest.mark.slow
def test_td_off_fine_tunes_on_hard_labels(tmp_path, shared_home, kw_root):
    rec = run_tinyfw("stage=task", "gd=off", "td=off", "augment=off", *kw_overrides(kw_root),
                     run_dir=tmp_path / "run", home=shared_home)
    m = rec["metrics"]
    assert set(m["steps"]) == {"finetune"} and m["teacher_logits"] == {}
    assert m["dev"]["accuracy"] >= 0.8


@pytest.mark.slow
def test_gd_checkpoint_and_without_pred(tmp_path, shared_home, kw_root):
    """gd=on from an explicit checkpoint; weights.pred=0 ("w/o Pred") trains step 2 on hard
    labels, so no teacher logits are needed."""
    from transformers import BertModel

    from tinyfw.models.load import bert_config, load_tokenizer
    from tinyfw.config import ShapeCfg

    tok = load_tokenizer("tiny", shared_home)
    gd = tmp_path / "gd"
    BertModel(bert_config(ShapeCfg(1, 32, 64, 4), len(tok))).save_pretrained(gd)
    rec = run_tinyfw("stage=task", "gd=on", f"task_distill.gd_checkpoint={gd}", "augment=off",
                     "distill.weights.pred=0", *kw_overrides(kw_root), run_dir=tmp_path / "run", home=shared_home)
    m = rec["metrics"]
    assert m["init"] == f"gd:{gd}" and m["teacher_logits"] == {}
    assert m["dev"]["accuracy"] >= 0.8
    bad = run_tinyfw("stage=task", "gd=on", f"task_distill.gd_checkpoint={tmp_path / 'nope'}", "augment=off",
                     *kw_overrides(kw_root), run_dir=tmp_path / "bad", home=shared_home, expect_ok=False)
    assert bad["status"] == "failed" and "nope" in bad["error"]


@pytest.mark.slow
def test_regression_task_distils_to_teacher_outputs(tmp_path, shared_home):
    root = write_kw_task(tmp_path / "reg", regression=True)
    rec = run_tinyfw("stage=task", "gd=off", "augment=off", *kw_overrides(root, regression=True),
                     "teacher_ft.train.epochs=10", "teacher_ft.train.lr=3e-3", run_dir=tmp_path / "run",
                     home=shared_home)
    m = rec["metrics"]
    assert m["main_metric"] == "corr" and m["teacher_logits"]["computed"] == 160
    assert m["dev"]["pearson"] > 0.3
    model, _ = _load_student(rec["outputs"]["student"])
    assert model.config.problem_type == "regression" and model.config.num_labels == 1


@pytest.mark.slow
def test_smoke_task_with_augmentation(tmp_path, shared_home):
    """The issue's done-when command: GD student, masked LM and augmented set built on demand."""
    rec = run_tinyfw("stage=task", "augment=on", "experiment=smoke", run_dir=tmp_path / "run", home=shared_home)
    m = rec["metrics"]
    assert rec["flags"] == {"gd": "on", "td": "on", "da": "on"}
    assert m["train_examples"] > m["original_train_examples"]  # augmented rows were added
    assert m["init"].startswith("gd:") and "accuracy" in m["dev"] and "accuracy" in m["test"]
    # TD step 1 starts from the GD run's W_e / W_h, saved beside the GD student
    gd_dir = Path(m["init"][3:])
    assert m["projections"]["loaded"] == ["proj_e", "proj_h"] and m["projections"]["fresh"] == []
    assert m["projections"]["source"] == str(gd_dir.parent / "projections.pt")
    _load_student(rec["outputs"]["student"])


def test_with_augmented_keeps_uncovered_originals():
    from datasets import Dataset, Features, Value

    from tinyfw.data.trainset import cap_examples, with_augmented

    feats = Features({"text": Value("string"), "label": Value("int64")})
    train = Dataset.from_dict({"text": ["a", "b", "c"], "label": [0, 1, 0]}, features=feats)
    aug = Dataset.from_dict({"text": ["a", "a2", "b", "b2"], "label": [0, 0, 1, 1], "source_row": [0, 0, 1, 1],
                             "is_original": [True, False, True, False]})
    out = with_augmented(train, aug, ["text"])
    assert out["text"] == ["a", "a2", "b", "b2", "c"] and out["label"] == [0, 0, 1, 1, 0]
    assert out["is_original"] == [True, False, True, False, True]
    capped = cap_examples(out, 4, seed=0)  # all three originals + one sampled variant, in order
    assert len(capped) == 4 and [t for t in capped["text"] if len(t) == 1] == ["a", "b", "c"]
    assert cap_examples(out, -1, seed=0) is out


def test_phase_budgets_hold_steps_or_epochs_equal():
    from omegaconf import OmegaConf

    from tinyfw.config import TaskDistillCfg
    from tinyfw.train.budget import phase_budgets

    td = OmegaConf.structured(TaskDistillCfg)
    td.step1.max_steps, td.step2.max_steps, td.finetune.max_steps = 300, 200, 200
    got = phase_budgets(td)  # default budget=steps: max_steps counts, whatever the data size
    assert str(td.budget) == "steps" and got["step1"].max_steps == 300 and got["finetune"].max_steps == 200
    td.budget = "epochs"
    got = phase_budgets(td)  # epochs count (max_steps dropped): fewer rows -> fewer steps
    assert all(got[k].max_steps == -1 for k in got) and got["step1"].epochs == td.step1.epochs
    td.budget = "steps"
    td.step2.max_steps = -1
    with pytest.raises(ValueError, match=r"budget=steps needs task_distill.step2.max_steps > 0"):
        phase_budgets(td)
    assert set(phase_budgets(td, ("finetune",))) == {"finetune"}  # td=off: step 2's budget is not used


@pytest.mark.slow
def test_step1_is_cached_and_reused_by_a_step2_sweep_with_identical_results(tmp_path, shared_home, kw_root):
    args = ["stage=task", "gd=off", "augment=off", *kw_overrides(kw_root)]
    a = run_tinyfw(*args, "task_distill.step2.lr=5e-3", run_dir=tmp_path / "a", home=shared_home)
    b = run_tinyfw(*args, "task_distill.step2.lr=2e-3", run_dir=tmp_path / "b", home=shared_home)
    assert (Path(a["metrics"]["step1"]["entry"]) / "student.safetensors").is_file()
    assert b["metrics"]["step1"]["cached"] is True and b["metrics"]["step1"]["entry"] == a["metrics"]["step1"]["entry"]
    assert b["metrics"]["steps"]["step1"] == a["metrics"]["steps"]["step1"]
    # the same step-2 run from scratch in a fresh home ends exactly where the cached one did
    fresh = run_tinyfw(*args, "task_distill.step2.lr=2e-3", run_dir=tmp_path / "c", home=tmp_path / "home")
    assert fresh["metrics"]["step1"]["cached"] is False
    assert fresh["metrics"]["dev"] == b["metrics"]["dev"] and fresh["metrics"]["test"] == b["metrics"]["test"]
    # another step-1 setting is another entry
    other = run_tinyfw(*args, "task_distill.step1.lr=2e-3", run_dir=tmp_path / "d", home=shared_home)
    assert other["metrics"]["step1"]["cached"] is False and other["metrics"]["step1"]["entry"] != a["metrics"]["step1"]["entry"]


def test_td_fingerprint_names_what_defines_the_run_and_ignores_the_rest(tmp_path):
    """A stage=task run's checkpoints refuse to resume another training: its fingerprint
    changes with what defines it (named by config key) and not with logging cadence or with
    settings of parts it does not use."""
    from hydra import compose, initialize_config_dir

    import tinyfw.__main__ as entry
    from tinyfw.artefacts.task_distill import fingerprint as for_task
    from tinyfw.fingerprint import differences

    def fp(*overrides):
        with initialize_config_dir(config_dir=str(entry.CONF_DIR), version_base="1.3"):
            return for_task(compose("config", overrides=["stage=task", "experiment=smoke", *overrides]),
                                  tmp_path)

    base = fp()
    assert differences(base, fp("task_distill.step2.log_every=1", "task_distill.step1.save_every=7")) == []
    assert differences(base, fp("task_distill.step2.lr=2e-3")) == ["task_distill.step2.lr: 0.001 -> 0.002"]
    assert differences(base, fp("general.train.lr=2e-3")) == ["general.train.lr: 0.001 -> 0.002"]  # the GD student
    assert differences(base, fp("teacher_ft.train.lr=2e-3")) == ["teacher_ft.train.lr: 0.001 -> 0.002"]
    assert differences(base, fp("augmenter.p_replace=0.5")) == ["augmenter.p_replace: 0.4 -> 0.5"]
    assert differences(base, fp("mlm.train.lr=2e-3")) == ["mlm.train.lr: 0.001 -> 0.002"]  # augmenter.mlm=mlm
    off = fp("gd=off", "augment=off")
    assert differences(off, fp("gd=off", "augment=off", "general.train.lr=2e-3", "mlm.train.lr=2e-3")) == []
    assert "distill.weights.attn: 1.0 -> 0.0" in differences(base, fp("distill.weights.attn=0"))


def test_start_point_is_typed_and_records_the_gd_label(tmp_path):
    """Where the TD student starts is a typed StartPoint: gd=off gives task_distill.gd_off_init
    in student.shape; gd=on with task_distill.gd_checkpoint gives that directory in its own
    shape, recorded as ``gd:<path>`` (result.json's ``init``)."""
    from hydra import compose, initialize_config_dir
    from transformers import BertConfig, BertModel

    import tinyfw.__main__ as entry
    from tinyfw.td.start import Origin, StartPoint, start_point

    def cfg(*overrides):
        with initialize_config_dir(config_dir=str(entry.CONF_DIR), version_base="1.3"):
            return compose("config", overrides=["stage=task", "experiment=smoke", *overrides])

    off = start_point(cfg("gd=off", "task_distill.gd_off_init=teacher_layers"), tmp_path)
    assert off.origin is Origin.teacher_layers and off.gd_dir is None
    assert off.init == off.label == "teacher_layers"
    assert off.shape.num_layers == cfg().student.shape.num_layers
    gd = tmp_path / "gd student"
    BertModel(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=3, num_attention_heads=2,
                         intermediate_size=24)).save_pretrained(gd)
    on = start_point(cfg("gd=on", f"task_distill.gd_checkpoint='{gd}'"), tmp_path)
    assert on == StartPoint(Origin.gd, on.shape, str(gd))
    assert (on.gd_dir, on.init, on.label) == (str(gd), str(gd), f"gd:{gd}")
    assert (on.shape.num_layers, on.shape.hidden_size, on.shape.intermediate_size) == (3, 16, 24)
    with pytest.raises(FileNotFoundError, match="task_distill.gd_checkpoint=.* does not exist"):
        start_point(cfg("gd=on", f"task_distill.gd_checkpoint={tmp_path / 'nope'}"), tmp_path)
