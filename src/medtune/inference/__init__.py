"""Producing answers.

generator.py  the model side: prompts rendered as in training, batched and streamed generation
loading.py    a run directory or base model → (Generator, config)
think.py      ``<think>`` sections split off the answer
responder.py  the one guarded answer path: guardrails → [retrieval] → model → think split → post-checks
chat.py       a multi-turn history keeper over the responder (REPL, UI)
"""
