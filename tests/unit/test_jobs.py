"""How the ingress groups concurrent requests (serving.jobs)."""

from __future__ import annotations

from serving.jobs import Job, group_jobs, merged_inputs
from serving.tasks import TaskInputs
from serving.tasks.text_classification import TextClassificationParameters


def job(model: str, texts: list[str], pairs: list[str] | None = None, **params) -> Job:
    return Job(model, TaskInputs(texts, pairs, single=False),
               TextClassificationParameters.model_validate(params))


def test_jobs_of_one_model_share_a_group_even_with_different_parameters():
    jobs = [job("a", ["x"]), job("a", ["y", "z"], top_k=1), job("b", ["w"])]
    assert sorted(group_jobs(jobs)) == [[0, 1], [2]]


def test_pairs_and_single_texts_are_not_mixed():
    jobs = [job("a", ["x"]), job("a", ["y"], ["p"]), job("a", ["z"], ["q"])]
    assert sorted(group_jobs(jobs)) == [[0], [1, 2]]


def test_requests_refusing_truncation_run_alone():
    jobs = [job("a", ["x"], truncation=False), job("a", ["y"]), job("a", ["z"], truncation=False)]
    assert sorted(group_jobs(jobs)) == [[0], [1], [2]]


def test_every_job_lands_in_exactly_one_group():
    jobs = [job(m, ["t"], truncation=i % 3 != 0) for i, m in enumerate("abcabcabca")]
    indices = sorted(i for group in group_jobs(jobs) for i in group)
    assert indices == list(range(len(jobs)))


def test_merged_inputs_keep_order():
    assert merged_inputs([job("a", ["1", "2"]), job("a", ["3"])]) == (["1", "2", "3"], None)
    merged = merged_inputs([job("a", ["1"], ["p1"]), job("a", ["2", "3"], ["p2", "p3"])])
    assert merged == (["1", "2", "3"], ["p1", "p2", "p3"])
