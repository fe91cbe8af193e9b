"""Causal and output-side evaluation of feature bases: interventions on the activations at the
hookpoint (ablation, amplification, patching) and read-outs of the feature directions (logit
lens). Every intervention keeps the basis's error term ``x - decode(encode(x))``."""
