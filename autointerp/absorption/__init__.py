"""SAEBench's first-letter feature absorption eval (Chanin et al. 2024), for every basis
(docs/absorption.md). One module per step:

=================  ===============================================================
module             step
=================  ===============================================================
``config``         the ``[absorption]`` settings (SAEBench 0.6.0's defaults)
``vocab``          the all-alphabetic words, the prompts, the word's token position
``acts``           the subject model's activations at that position
``probe``          one-vs-rest logistic-regression probes (ground truth and L1)
``groundtruth``    per hookpoint: words, split, activations, ground-truth probe, F1
``sparse``         k-sparse probing on a basis's codes, feature splitting
``fractions``      absorption fraction and full absorption per word, rates per letter
``evaluate``       one basis: the letters' rates, SAEBench's means, the browser data
=================  ===============================================================
"""
