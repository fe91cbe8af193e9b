"""Steering (docs/steering.md): interventions (:mod:`.interventions`), steered generation and
read-back (:mod:`.generate`), concept / fluency scores and the factor choice (:mod:`.scores`),
the experiment over many features (:mod:`.experiment`), rank correlations (:mod:`.summary`),
the bundled instructions (:mod:`.prompts`) and the optional LLM judge (:mod:`.judge`). The stage
is :mod:`autointerp.stages.steering`."""
