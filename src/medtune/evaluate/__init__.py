"""The evaluate stage and its parts: loss, generation metrics, MCQ benchmarks, the safety suite, reports."""
