"""Repetition penalties that look at the answer only, not at the prompt.

transformers applies ``repetition_penalty`` and ``no_repeat_ngram_size`` to the whole sequence of a
decoder-only model, prompt included: with n-gram blocking an answer cannot write a four-piece name from
the question ("Ataxia Telangiectasia" came out as "Ataxia Telangégy") nor copy a retrieved passage it
should cite, and the penalty pushes it away from both. These processors are transformers' own, told
where the answer starts (``prompt_length``: the padded input length, the same for every row of a
left-padded batch). ``generation.penalize_prompt: true`` keeps transformers' behaviour.

Digits are never blocked: a tokenizer that splits numbers into digits (SmolLM2, Llama 2, Mistral) makes a number
said twice a repeated n-gram, and blocking it changes the number ("call or text 988 (the 988 Suicide & Crisis
Lifeline)" came out "... (the 989 ...", a "500 mg" said twice becomes "501 mg"). A medical answer must keep its
numbers; loops of numbers are what ``evaluate.degeneration.number_run`` measures.
"""

from __future__ import annotations

from collections.abc import Sequence

from transformers import LogitsProcessorList, NoRepeatNGramLogitsProcessor, RepetitionPenaltyLogitsProcessor


class AnswerNoRepeatNGram(NoRepeatNGramLogitsProcessor):
    """``NoRepeatNGramLogitsProcessor`` over the tokens after ``prompt_length`` only, never blocking ``digit_ids``."""

    def __init__(self, ngram_size: int, prompt_length: int, digit_ids: Sequence[int] = ()):
        super().__init__(ngram_size)
        self.prompt_length = prompt_length
        self.digit_ids = list(digit_ids)

    def __call__(self, input_ids, scores):
        digits = scores[:, self.digit_ids].clone()
        scores = super().__call__(input_ids[:, self.prompt_length :], scores)
        scores[:, self.digit_ids] = digits
        return scores


def digit_ids(tokenizer) -> list[int]:
    """The ids of the vocabulary's all-digit tokens ("7", " 42"), which n-gram blocking leaves alone."""
    return sorted(i for t, i in tokenizer.get_vocab().items() if (text := tokenizer.convert_tokens_to_string([t]).strip()).isdigit()
                  and text.isascii())


def answer_penalties(repetition_penalty: float, no_repeat_ngram_size: int, prompt_length: int,
                     digits: Sequence[int] = ()) -> LogitsProcessorList:
    """The processors for a generation whose answer starts at ``prompt_length`` (none when both are off); n-gram
    blocking never blocks the ``digits`` ids (``digit_ids``)."""
    processors = LogitsProcessorList()
    if repetition_penalty != 1.0:
        processors.append(RepetitionPenaltyLogitsProcessor(float(repetition_penalty), prompt_ignore_length=prompt_length))
    if no_repeat_ngram_size:
        processors.append(AnswerNoRepeatNGram(no_repeat_ngram_size, prompt_length, digits))
    return processors
