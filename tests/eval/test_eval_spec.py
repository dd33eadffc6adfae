"""GridSpec parsing and checks: weights and seeds syntax, and errors that name the field and the fix."""
from __future__ import annotations

import pytest

from studio.eval import EvalError, GridSpec, parse_seeds, parse_weights
from studio.eval.spec import check_spec, column_weights
from studio.toyworld.concepts import is_toy_world_model


def test_eval_parse_weights_and_seeds():
    assert parse_weights("0.4:0.9:0.1") == [0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
    assert parse_weights("0,0.5, 1") == [0.0, 0.5, 1.0]
    assert parse_weights("-0.5:0.5:0.5") == [-0.5, 0.0, 0.5]
    assert parse_seeds("0,1,2") == [0, 1, 2] and parse_seeds("3-5") == [3, 4, 5] and parse_seeds("7") == [7]
    for bad in ("0.9:0.4:0.1", "0:1", "a,b", "0:1:0"):
        with pytest.raises(EvalError, match="weights"):
            parse_weights(bad)
    with pytest.raises(EvalError, match="seeds"):
        parse_seeds("one")


def test_eval_check_spec_lists_every_problem():
    spec = GridSpec(lora="", prompts=[" "], seeds=[-1], weights=[0.5, 0.5], steps=0, checker="maybe", width=30)
    with pytest.raises(EvalError) as caught:
        check_spec(spec)
    text = str(caught.value)
    for words in ("lora is empty", "prompts is empty", "seeds", "weights has a value twice", "steps is 0",
                  "checker", "width is 30"):
        assert words in text, words
    check_spec(GridSpec(lora="x", prompts=["a cat"], seeds=[0, 2.0]))  # a UI number box may give 2.0
    with pytest.raises(EvalError, match="finite numbers"):
        check_spec(GridSpec(lora="x", prompts=["a cat"], weights=["strong"]))


def test_eval_reference_column_and_embedded_model():
    assert column_weights(GridSpec(lora="x", weights=[0.4, 0.8], include_reference=True)) == [0.0, 0.4, 0.8]
    assert column_weights(GridSpec(lora="x", weights=[0.0, 0.4], include_reference=True)) == [0.0, 0.4]
    assert column_weights(GridSpec(lora="x", weights=[0.4])) == [0.4]
    assert is_toy_world_model("") and not is_toy_world_model("some/model")
