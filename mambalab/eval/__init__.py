"""Evaluation as papers report it: token, word and byte perplexity; chunked, strided and streaming
modes; synthetic-task accuracy; samples; baseline comparison."""
from mambalab.eval.documents import EvalDocument, count_bytes, count_words
from mambalab.eval.split import MODES, evaluate_split
from mambalab.eval.totals import EvalTotals

__all__ = ["EvalDocument", "EvalTotals", "MODES", "count_bytes", "count_words", "evaluate_split"]
