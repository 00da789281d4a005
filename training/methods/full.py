"""Full fine-tuning: every weight trains; the result is a new model directory.

    python -m training full --config training/recipes/full-alpaca.yaml
    python -m server --model runs/NAME/model       # serve it (adapters must be retrained for it)
"""

from __future__ import annotations

from training.methods.common import Method

METHOD = Method(
    name="full",
    help="full fine-tuning: all weights, writes a model directory the server can use as --model",
    produces="model",
    trains_base_weights=True,
)
