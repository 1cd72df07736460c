"""Layer mapping, pair validation and student initialisation."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from transformers import AutoModel, BertConfig, BertForSequenceClassification, BertModel

from tinyfw.models.student import build_student, layer_mapping, validate_pair


def _shape(layers=2, hidden=16, ffn=32, heads=4, maxpos=32):
    return SimpleNamespace(
        num_layers=layers, hidden_size=hidden, intermediate_size=ffn, num_heads=heads, max_position_embeddings=maxpos
    )


def _teacher(layers=4, hidden=16, ffn=32, heads=4, vocab=40, cls=BertModel):
    torch.manual_seed(0)
    cfg = BertConfig(
        vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
        intermediate_size=ffn, max_position_embeddings=32, type_vocab_size=2, layer_norm_eps=1e-7,
        attn_implementation="eager",
    )
    return cls(cfg).eval()


# ---- layer mapping ---------------------------------------------------------------------------


def test_uniform_paper_mapping():
    assert layer_mapping("uniform", 4, 12) == [3, 6, 9, 12]
    assert layer_mapping("uniform", 6, 12) == [2, 4, 6, 8, 10, 12]
    assert layer_mapping("uniform", 1, 2) == [2]
    assert layer_mapping("uniform", 3, 3) == [1, 2, 3]


def test_nearest_matches_uniform_when_exact_and_covers_any_pair():
    assert layer_mapping("nearest", 4, 6) == [2, 3, 5, 6]  # TinyBERT4 from MiniLM-L6
    assert layer_mapping("nearest", 4, 2) == [1, 1, 2, 2]
    assert layer_mapping("nearest", 3, 7) == [3, 5, 7]
    for m, n in [(4, 12), (6, 12), (1, 2), (3, 3), (2, 8)]:
        assert layer_mapping("nearest", m, n) == layer_mapping("uniform", m, n)
    for m in range(1, 9):
        for n in range(1, 13):
            got = layer_mapping("nearest", m, n)
            assert len(got) == m and got[-1] == n and got == sorted(got) and got[0] >= 1


def test_top_bottom():
    assert layer_mapping("top", 4, 12) == [9, 10, 11, 12]
    assert layer_mapping("bottom", 4, 12) == [1, 2, 3, 4]
    assert layer_mapping("TOP", 2, 2) == [1, 2]


def test_explicit_lists():
    assert layer_mapping([2, 5, 8, 12], 4, 12) == [2, 5, 8, 12]
    assert layer_mapping((1, 1), 2, 3) == [1, 1]
    assert layer_mapping("3,6,9,12", 4, 12) == [3, 6, 9, 12]
    assert layer_mapping("[3, 6]", 2, 6) == [3, 6]


@pytest.mark.parametrize(
    "strategy, m, n, match",
    [
        ("uniform", 4, 6, r"multiple.*layer_map=nearest \(\[2, 3, 5, 6\]\).*layer_map=\[2,3,5,6\]"),
        ("top", 5, 4, "at most"),
        ("bottom", 5, 4, "at most"),
        ("middle", 2, 4, "unknown layer mapping.*uniform"),
        ([1, 2, 3], 2, 4, "3 entries but the student has 2"),
        ([0, 2], 2, 4, r"\[0\] are outside the teacher's layers 1..4"),
        ([2, 5], 2, 4, r"\[5\] are outside"),
        ([1.5, 2], 2, 4, "integers"),
        ([True, 2], 2, 4, "integers"),
        (7, 2, 4, "strategy name or a list"),
        ("uniform", 0, 4, ">= 1"),
    ],
)
def test_mapping_errors(strategy, m, n, match):
    with pytest.raises(ValueError, match=match):
        layer_mapping(strategy, m, n)


# ---- validation ------------------------------------------------------------------------------


def test_validate_pair_ok_and_errors():
    t = _teacher().config
    s = build_student(_shape(layers=2), _teacher(), "random", [2, 4]).config
    validate_pair(s, t, [2, 4], attn_weight=1.0)
    with pytest.raises(ValueError, match="1 entries for a student with 2 layers"):
        validate_pair(s, t, [2], attn_weight=1.0)
    with pytest.raises(ValueError, match=r"\[5\] are outside the teacher's layers 1..4"):
        validate_pair(s, t, [2, 5], attn_weight=1.0)


def test_vocab_mismatch_error():
    t = _teacher(vocab=40).config
    s = BertConfig(vocab_size=41, hidden_size=16, num_hidden_layers=2, num_attention_heads=4, intermediate_size=32)
    with pytest.raises(ValueError, match="share the teacher's tokenizer/vocabulary"):
        validate_pair(s, t, [2, 4], attn_weight=0.0)


def test_heads_mismatch_error_only_with_attention_loss():
    t = _teacher(heads=4).config
    s = BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32)
    with pytest.raises(ValueError, match=r"distill.weights.attn=0"):
        validate_pair(s, t, [2, 4], attn_weight=1.0)
    validate_pair(s, t, [2, 4], attn_weight=0.0)  # fine without the attention loss


# ---- build / init ----------------------------------------------------------------------------


def test_random_student_shape_and_teacher_conventions():
    teacher = _teacher()
    s = build_student(_shape(layers=2, hidden=8, ffn=24, heads=2, maxpos=16), teacher, "random", [2, 4])
    c = s.config
    assert (c.num_hidden_layers, c.hidden_size, c.intermediate_size, c.num_attention_heads) == (2, 8, 24, 2)
    assert c.max_position_embeddings == 16
    assert c.vocab_size == 40 and c.type_vocab_size == 2 and c.layer_norm_eps == 1e-7
    assert c._attn_implementation == "eager"
    assert s.pooler is not None and not any(p.requires_grad for p in s.pooler.parameters())
    assert all(p.requires_grad for p in s.encoder.parameters())


def test_teacher_layers_copies_mapped_layers():
    teacher = _teacher(layers=4)
    mapping = [2, 4]
    s = build_student(_shape(layers=2), teacher, "teacher_layers", mapping)
    for m, n in enumerate(mapping):
        theirs = teacher.encoder.layer[n - 1].state_dict()
        for k, v in s.encoder.layer[m].state_dict().items():
            assert torch.equal(v, theirs[k]), (m, n, k)
        other = teacher.encoder.layer[n - 2].state_dict()  # a different teacher layer
        assert not torch.equal(s.encoder.layer[m].attention.self.query.weight, other["attention.self.query.weight"])
    for k, v in s.embeddings.state_dict().items():
        assert torch.equal(v, teacher.embeddings.state_dict()[k]), k
    # copies, not shared storage
    s.encoder.layer[0].output.dense.weight.data.add_(1.0)
    assert not torch.equal(s.encoder.layer[0].output.dense.weight, teacher.encoder.layer[1].output.dense.weight)


def test_teacher_layers_from_a_head_model_and_shorter_positions():
    teacher = _teacher(layers=2, cls=BertForSequenceClassification)
    s = build_student(_shape(layers=1, maxpos=16), teacher, "teacher_layers", [2])
    assert torch.equal(s.encoder.layer[0].intermediate.dense.weight, teacher.bert.encoder.layer[1].intermediate.dense.weight)
    assert torch.equal(s.embeddings.position_embeddings.weight, teacher.bert.embeddings.position_embeddings.weight[:16])


def test_teacher_layers_width_mismatch_error():
    with pytest.raises(ValueError, match="widths must match.*hidden_size 8 vs teacher 16.*student.init=random"):
        build_student(_shape(hidden=8), _teacher(), "teacher_layers", [2, 4])


def test_checkpoint_init_strict(tmp_path):
    teacher = _teacher()
    s = build_student(_shape(), teacher, "random", [2, 4])
    s.save_pretrained(tmp_path / "ok")
    loaded = build_student(_shape(), teacher, str(tmp_path / "ok"), [2, 4])
    for (k, a), (_, b) in zip(s.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), k
    # AutoModel loads the saved student with no missing keys
    _, info = AutoModel.from_pretrained(tmp_path / "ok", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    with pytest.raises(ValueError, match="does not have the configured shape.*num_hidden_layers"):
        build_student(_shape(layers=1), teacher, str(tmp_path / "ok"), [4])
    # a checkpoint with a key missing, or one of another architecture: loud error, not silent random weights
    import safetensors.torch as st

    (tmp_path / "holed").mkdir()
    for f in (tmp_path / "ok").iterdir():
        (tmp_path / "holed" / f.name).write_bytes(f.read_bytes())
    weights = st.load_file(tmp_path / "ok" / "model.safetensors")
    del weights["encoder.layer.1.output.dense.weight"]
    st.save_file(weights, tmp_path / "holed" / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ValueError, match=r"missing keys \['encoder.layer.1.output.dense.weight'\]"):
        build_student(_shape(), teacher, str(tmp_path / "holed"), [2, 4])
    BertForSequenceClassification(s.config).save_pretrained(tmp_path / "cls")
    with pytest.raises(ValueError, match=r"unexpected keys \['classifier"):
        build_student(_shape(), teacher, str(tmp_path / "cls"), [2, 4])
    _teacher(layers=2, hidden=8, heads=2, ffn=16).save_pretrained(tmp_path / "small")
    with pytest.raises(ValueError, match="configured shape.*hidden_size: checkpoint 8 vs configured 16"):
        build_student(_shape(), teacher, str(tmp_path / "small"), [2, 4])


def test_unknown_init_error(tmp_path):
    with pytest.raises(ValueError, match="unknown student init.*random, teacher_layers"):
        build_student(_shape(), _teacher(), str(tmp_path / "nope"), [2, 4])


def test_checkpoint_with_other_vocabulary_is_rejected(tmp_path):
    s = build_student(_shape(), _teacher(vocab=55), "random", [2, 4])
    assert s.config.vocab_size == 55 and s.get_input_embeddings().weight.shape[0] == 55
    s.save_pretrained(tmp_path / "v55")
    with pytest.raises(ValueError, match=r"student vocabulary \(55\) differs from the teacher's \(40\)"):
        build_student(_shape(), _teacher(vocab=40), str(tmp_path / "v55"), [2, 4])
