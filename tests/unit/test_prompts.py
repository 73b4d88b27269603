"""A model's sentence-transformers prompts (serving.prompts) and left truncation in the
tokenizer: as SentenceTransformer.encode applies them."""

from __future__ import annotations

import json

import pytest
import tiny_models

from serving.errors import InvalidInputError
from serving.jobs import Job
from serving.prompts import Prompts
from serving.tasks import task_class
from serving.tasks.base import TaskInputs
from serving.tokenization import TextTokenizer


@pytest.fixture(scope="module")
def prompted_dir(tmp_path_factory):
    return tiny_models.prompted_encoder(tmp_path_factory.mktemp("prompted") / "model")


def test_prompts_are_read_from_the_sentence_transformers_config(prompted_dir):
    prompts = Prompts.read(str(prompted_dir))
    assert prompts.named == {"query": "query: ", "document": "passage: "}
    assert prompts.default_name == "document"
    assert prompts.apply(["a", "b"], None) == ["passage: a", "passage: b"]
    assert prompts.apply(["a"], "query") == ["query: a"]
    assert Prompts.from_details(prompts.as_details()) == prompts


def test_a_model_without_prompts_prepends_nothing(tmp_path):
    prompts = Prompts.read(str(tmp_path))
    assert prompts.apply(["a"], None) == ["a"]
    with pytest.raises(InvalidInputError, match="prompt_name: 'query' is not a prompt"):
        prompts.apply(["a"], "query")


def test_an_unknown_prompt_is_refused_naming_the_known_ones(prompted_dir):
    with pytest.raises(InvalidInputError, match="'query', 'document'"):
        Prompts.read(str(prompted_dir)).text("passage")


def test_a_default_that_names_no_prompt_is_a_config_error(tmp_path):
    (tmp_path / "config_sentence_transformers.json").write_text(
        json.dumps({"prompts": {"query": "q: "}, "default_prompt_name": "doc"}))
    with pytest.raises(ValueError, match="default_prompt_name 'doc'"):
        Prompts.read(str(tmp_path))


def test_feature_extraction_puts_the_prompt_before_each_text(prompted_dir):
    task = task_class("feature-extraction")
    prompts = Prompts.read(str(prompted_dir))
    inputs = TaskInputs(["a", "b"], None, single=False)
    assert task.prompted(inputs, task.parameters(), prompts).texts == ["passage: a",
                                                                     "passage: b"]
    asked = task.parameters(prompt_name="query")
    assert task.prompted(inputs, asked, prompts).texts == ["query: a", "query: b"]


def test_left_truncation_keeps_the_end_and_the_special_tokens(prompted_dir):
    tokenizer = TextTokenizer.load(str(prompted_dir), max_input_tokens=6)
    text = "the movie was great but the book was bad"  # one token per word
    hf = tokenizer._tokenizer
    left = tokenizer.encode([text], truncation_side="left").input_ids.tolist()
    assert hf.convert_ids_to_tokens(left)[0] == hf.cls_token
    assert hf.convert_ids_to_tokens(left)[-1] == hf.sep_token
    assert hf.decode(left, skip_special_tokens=True).endswith("the book was bad")
    right = tokenizer.encode([text]).input_ids.tolist()
    assert hf.decode(right, skip_special_tokens=True).startswith("the movie was great")
    assert hf.truncation_side == "right"  # the setting was for that call only


def test_requests_truncated_on_different_sides_never_share_a_call():
    params = task_class("feature-extraction").parameters
    inputs = TaskInputs(["a"], None, single=True)
    left = Job("m", inputs, params(truncation_direction="Left"))
    right = Job("m", inputs, params())
    assert left.params.truncation_side() == "left"
    assert left.group_key != right.group_key
    assert Job("m", inputs, params(truncation_direction="right")).group_key == right.group_key


def test_a_model_pooling_without_its_prompt_refuses_prompts(tmp_path):
    (tmp_path / "1_Pooling").mkdir()
    (tmp_path / "1_Pooling" / "config.json").write_text(
        json.dumps({"pooling_mode_mean_tokens": True, "include_prompt": False}))
    (tmp_path / "config_sentence_transformers.json").write_text(
        json.dumps({"prompts": {"query": "q: ", "none": ""}}))
    prompts = Prompts.from_details(Prompts.read(str(tmp_path)).as_details())
    assert not prompts.pooled
    assert prompts.apply(["a"], None) == ["a"]  # no prompt: served as it is
    assert prompts.apply(["a"], "none") == ["a"]
    with pytest.raises(InvalidInputError, match="include_prompt: false"):
        prompts.apply(["a"], "query")
