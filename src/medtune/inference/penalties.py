"""Repetition penalties that look at the answer only, not at the prompt.

transformers applies ``repetition_penalty`` and ``no_repeat_ngram_size`` to the whole sequence of a
decoder-only model, prompt included: with n-gram blocking an answer cannot write a four-piece name from
the question ("Ataxia Telangiectasia" came out as "Ataxia Telangégy") nor copy a retrieved passage it
should cite, and the penalty pushes it away from both. These processors are transformers' own, told
where the answer starts (``prompt_length``: the padded input length, the same for every row of a
left-padded batch). ``generation.penalize_prompt: true`` keeps transformers' behaviour.
"""

from __future__ import annotations

from transformers import LogitsProcessorList, NoRepeatNGramLogitsProcessor, RepetitionPenaltyLogitsProcessor


class AnswerNoRepeatNGram(NoRepeatNGramLogitsProcessor):
    """``NoRepeatNGramLogitsProcessor`` over the tokens after ``prompt_length`` only."""

    def __init__(self, ngram_size: int, prompt_length: int):
        super().__init__(ngram_size)
        self.prompt_length = prompt_length

    def __call__(self, input_ids, scores):
        return super().__call__(input_ids[:, self.prompt_length :], scores)


def answer_penalties(repetition_penalty: float, no_repeat_ngram_size: int, prompt_length: int) -> LogitsProcessorList:
    """The processors for a generation whose answer starts at ``prompt_length`` (none when both are off)."""
    processors = LogitsProcessorList()
    if repetition_penalty != 1.0:
        processors.append(RepetitionPenaltyLogitsProcessor(float(repetition_penalty), prompt_ignore_length=prompt_length))
    if no_repeat_ngram_size:
        processors.append(AnswerNoRepeatNGram(no_repeat_ngram_size, prompt_length))
    return processors
