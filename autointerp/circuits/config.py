"""The ``[circuits]`` section of a sweep suite: edges and faithfulness between the bases of
consecutive hookpoints (docs/circuits.md). Off by default; needs ``model.hookpoints``."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

#: kept-set sizes shown as columns (circ_f*, circ_ioi_f*)
COLUMN_KS = (1, 4, 16)


class CircuitsConfig(BaseModel):
    """Budget knobs of the ``circuits`` sweep stage (every pair of consecutive hookpoints,
    every basis name present at both)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    #: downstream features per basis: the downstream run's explained features first, then a
    #: seeded sample of its other alive features
    n_features: int = Field(16, gt=0)
    #: top-activating contexts (rows) per downstream feature; the metric is the feature's
    #: activation summed over the top token of each
    n_contexts: int = Field(4, gt=0)
    #: rows (from the whole corpus) searched for each downstream feature's top contexts
    n_pool_rows: int = Field(512, gt=0)
    #: kept-set sizes of the faithfulness curve (all upstream features are added as the last)
    ks: list[int] = [1, 2, 4, 8, 16, 32, 64]
    #: top edges whose single-feature ablation is compared with the edge (lin_r)
    n_linear: int = Field(8, ge=0)
    #: integrated-gradients steps (0: off; the gap to grad x delta is then not reported)
    ig_steps: int = Field(0, ge=0)
    #: downstream features per backward pass
    batch_features: int = Field(8, gt=0)
    #: top edges per downstream feature kept in circuits.json and the graph page
    top_edges: int = Field(8, gt=0)
    n_bootstrap: int = Field(1000, gt=0)
    #: clean IOI prompts whose logit difference is attributed to each upstream basis's
    #: features, with its faithfulness (the circ_ioi_* columns; 0: off)
    ioi_prompts: int = Field(16, ge=0)
    #: IOI prompts per forward / backward pass
    batch_prompts: int = Field(16, gt=0)
