"""Train a small Marian demo model from scratch: ``python -m tools.train_demo --pair en-de``.

Modules, imported in this order only (no cycles): ``cli`` -> ``train`` -> ``evaluate`` ->
``model`` / ``vocabulary`` -> ``data`` / ``common``.

- ``data``: reading the corpora, the train/val/test splits, the Tatoeba split.
- ``vocabulary``: SentencePiece tokenizer training and checks, encoded pairs, token batches.
- ``model``: building the Marian model, generation defaults, parameter counts, saving.
- ``train``: the training loop (``Trainer``), schedule, checkpoint averaging and selection.
- ``evaluate``: translating, scoring, evaluating the saved model, the printed summary.
- ``cli``: arguments, ``main`` and the ``eval.json`` report.
- ``common``: logging, device resolution and the recipe arguments every stage shares.
"""
