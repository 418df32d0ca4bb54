"""The evaluate app end to end: run directories, errors that name the problem, synthetic tasks."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from eval_toys import make_run, save_tiny_hf_model
from omegaconf import OmegaConf

from mambalab.eval import evaluate_split
from mambalab.eval.app import run_evaluation
from mambalab.eval.config import register_eval_configs
from mambalab.models import load_pretrained

CONF = str(Path(__file__).resolve().parents[2] / "conf")
TEXTS = ["the café is open", "a b  c d", "third document here, with more words"]


def evaluate(*overrides: str) -> dict:
    register_eval_configs()
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        cfg = compose("evaluate", overrides=["kernels=reference", *overrides])
    return run_evaluation(cfg)


def text_run(tmp_path: Path, **kwargs) -> Path:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n\n".join(TEXTS) + "\n")
    data = {"_target_": "mambalab.data.TextDataModule", "train_files": str(corpus),
            "validation_files": str(corpus), "document_split": "blank_line", "seq_len": 16,
            "batch_size": 2, "cache_dir": str(tmp_path / "cache"), "progress": False,
            "pin_memory": False}
    return make_run(tmp_path / "run", data, {"_target_": "mambalab.data.ByteTokenizer"}, 258,
                    **kwargs)


def test_run_directory_gives_metrics_json_in_the_run(tmp_path):
    run = text_run(tmp_path)
    report = evaluate(f"ckpt={run}", "mode=[chunked,streaming]")
    written = json.loads((run / "metrics.json").read_text())
    assert written["results"].keys() == {"chunked", "streaming"}
    streaming = written["results"]["streaming"]
    assert streaming["documents"] == 3 and streaming["tokens"] == sum(len(t.encode()) + 1 for t in TEXTS)
    for key in ("loss", "ppl", "word_ppl", "bpb", "byte_ppl", "seconds", "tokens_per_s"):
        assert key in streaming
    # The same numbers as evaluate_split on the same model and data.
    from mambalab.data import ByteTokenizer, TextDataModule

    data = TextDataModule(tokenizer=ByteTokenizer(), **{k: v for k, v in OmegaConf.load(
        run / "config.yaml").data.items() if k != "_target_"})
    direct = evaluate_split(load_pretrained(run, kernels="reference"), data, "validation",
                            mode="streaming").metrics()
    assert streaming["loss"] == pytest.approx(direct["loss"], rel=1e-5)
    assert report["results"]["chunked"]["tokens"] == data.split_stats("validation")["stream_tokens"] - 1
    assert report["results"]["chunked"]["split_fraction"] == 1.0
    capped = evaluate(f"ckpt={run}", "mode=chunked", "max_batches=1", f"out={tmp_path / 'capped'}")
    assert capped["results"]["chunked"]["split_fraction"] == pytest.approx(32 / (data.split_stats("validation")["stream_tokens"] - 1))  # one batch: 2 x 16


def test_missing_or_mismatched_checkpoint_names_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        evaluate(f"ckpt={tmp_path / 'no_such_run'}")
    with pytest.raises(ValueError, match="incomplete: no COMPLETE marker"):
        evaluate(f"ckpt={text_run(tmp_path, complete=False)}")
    run = tmp_path / "run"
    (run / "checkpoints" / "latest").unlink()
    with pytest.raises(FileNotFoundError, match=r"no checkpoints/latest pointer.*step_00000002"):
        evaluate(f"ckpt={run}")
    with pytest.raises(FileNotFoundError, match="no checkpoints/best"):
        evaluate(f"ckpt={run}", "which=best")
    # A checkpoint built for another tokenizer's vocabulary than the data's.
    other = make_run(tmp_path / "other", OmegaConf.load(run / "config.yaml").data,
                     {"_target_": "mambalab.data.ByteTokenizer"}, vocab_size=5000)
    with pytest.raises(ValueError, match="embedding has 5000 rows but the data's tokenizer"):
        evaluate(f"ckpt={other}")
    # A saved model outside any run: no config.yaml to take the data from, so it must be named.
    alone = shutil.copytree(other / "checkpoints" / "step_00000002", tmp_path / "alone")
    with pytest.raises(ValueError, match="carries no tokenizer and no run config.yaml"):
        evaluate(f"ckpt={alone}")
    with pytest.raises(ValueError, match="pass data="):
        evaluate(f"ckpt={alone}", "tokenizer=byte")


def test_synthetic_task_accuracy_at_each_length(tmp_path):
    data = {"_target_": "mambalab.data.InductionHeadsDataModule", "vocab_size": 16, "seq_len": 32,
            "eval_batch_size": 4, "eval_examples": 4, "eval_lengths": [32, 96], "pin_memory": False}
    run = make_run(tmp_path / "task", data, None, vocab_size=16)
    report = evaluate(f"ckpt={run}", "chunk_len=40", f"out={tmp_path / 'out'}")
    assert set(report["task"]) == {"32", "96"}
    for metrics in report["task"].values():
        assert 0.0 <= metrics["accuracy"] <= 1.0 and metrics["total"] == 4
    assert (tmp_path / "out" / "metrics.json").is_file()


def test_baseline_with_its_own_tokenizer_scores_the_same_texts(tmp_path):
    import math

    import torch
    import torch.nn.functional as F

    run = text_run(tmp_path)
    hf_model, hf_tok = save_tiny_hf_model(tmp_path / "hf", TEXTS)
    report = evaluate(f"ckpt={run}", f"baseline={tmp_path / 'hf'}", "mode=[chunked,streaming]")
    ours, theirs = report["results"]["streaming"], report["baseline"]["results"]["streaming"]
    assert set(report["baseline"]["results"]) == {"streaming"}  # chunked is per model's stream
    # By hand with transformers itself: every document re-tokenized by the HF tokenizer, its first
    # token predicted from end-of-text, summed over the documents.
    nll, tokens = 0.0, 0
    with torch.no_grad():
        for text in TEXTS:
            ids = hf_tok.encode(text + "\n", add_special_tokens=False)
            logits = hf_model(torch.tensor([[hf_tok.eos_token_id] + ids])).logits[0, :-1]
            nll += F.cross_entropy(logits.float(), torch.tensor(ids), reduction="sum").item()
            tokens += len(ids)
    assert tokens < ours["tokens"]  # BPE merges bytes: fewer tokens than the byte model scores
    assert theirs["tokens"] == tokens
    assert theirs["loss"] == pytest.approx(nll / tokens, rel=1e-4)
    words = sum(len((t + "\n").split()) + 1 for t in TEXTS)  # lm-eval: "...\n" ends in ""
    nbytes = sum(len((t + "\n").encode()) for t in TEXTS)
    assert theirs["word_ppl"] == pytest.approx(math.exp(nll / words), rel=1e-4)
    assert theirs["bpb"] == pytest.approx(nll / (nbytes * math.log(2)), rel=1e-4)
    # The fair columns share their denominators: the ratio of bits/byte is the ratio of NLL sums.
    ours_nll = ours["loss"] * ours["tokens"]
    assert ours["bpb"] / theirs["bpb"] == pytest.approx(ours_nll / nll, rel=1e-4)


def test_samples_from_document_starts_and_prompts_are_saved(tmp_path):
    run = text_run(tmp_path)
    common = [f"ckpt={run}", "mode=streaming", "max_new_tokens=6", "prompt_tokens=4", "seed=3"]
    evaluate(*common, "samples=2")
    samples = [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]
    assert [s["prompt"] for s in samples] == ["the ", "a b "]  # 4 bytes of each document
    assert all(s["new_tokens"] <= 6 and s["seed"] == 3 + i for i, s in enumerate(samples))
    again = [f"ckpt={run}", "mode=streaming", "max_new_tokens=6", "seed=3", "prompts=[Hello]"]
    evaluate(*again, f"out={tmp_path / 'p1'}")
    evaluate(*again, f"out={tmp_path / 'p2'}")
    first, second = ((tmp_path / d / "samples.jsonl").read_text() for d in ("p1", "p2"))
    assert first == second and json.loads(first)["prompt"] == "Hello"  # seeded: reproducible


def test_config_composes_data_and_tokenizer_groups_and_rejects_unknown_keys():
    from hydra.errors import ConfigCompositionException

    register_eval_configs()
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        cfg = compose("evaluate", overrides=["ckpt=x", "data=wikitext103", "tokenizer=gpt_neox",
                                             "+tokenizer@baseline_tokenizer=byte"])
        assert cfg.data._target_.endswith("WikiTextDataModule")
        assert cfg.tokenizer._target_.endswith("HFTokenizer")
        assert cfg.baseline_tokenizer._target_.endswith("ByteTokenizer")
        with pytest.raises(ConfigCompositionException, match="sampels"):
            compose("evaluate", overrides=["ckpt=x", "sampels=3"])
