"""Feature circuits across hookpoints: edges between the features of two bases
(:mod:`.edges`), their faithfulness under mean ablation (:mod:`.faithfulness`) and the
"why this completion?" ranking of one basis's features (:mod:`.attribute`). See
``docs/circuits.md``."""
