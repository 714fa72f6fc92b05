"""Producing answers: the generator, the guarded answer path (guardrails → model → post-checks), multi-turn chat."""
