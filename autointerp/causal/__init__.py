"""Causal and output-side evaluation of feature bases (docs/causal.md, docs/output.md):
interventions on the activations at the hookpoint (IOI patching, ablation, amplification) and
read-outs of the feature directions (logit lens). Every intervention keeps the basis's error
term ``x - decode(encode(x))``.

Modules: ``ioi_prompts`` (templates, names, pairs), ``intervene`` (encode / decode with the
error term, hidden states, resumed runs), ``patching`` (the IOI curve), ``attribution`` (grad x
activation concentration), ``greedy`` (the paper's greedy elimination, opt-in), ``summary``
(curves -> columns with bootstrap CIs), ``hook_forward`` (passes started at the hookpoint,
log-probs at chosen positions), ``ablation``, ``logit_lens``, ``output_score``,
``output_explain``.
"""
