"""Causal evaluation of feature bases (docs/causal.md): IOI prompts, activation patching with
the error term kept, latent attribution, and their leaderboard columns.

Modules: ``ioi_prompts`` (templates, names, pairs), ``intervene`` (encode / decode with the
error term, hidden states, resumed runs), ``patching`` (the IOI curve), ``attribution`` (grad x
activation concentration), ``greedy`` (the paper's greedy elimination, opt-in), ``summary``
(curves -> columns with bootstrap CIs).
"""
