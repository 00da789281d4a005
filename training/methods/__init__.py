"""Fine-tuning methods, one file each; `METHODS` maps the command name to its `Method`."""

from training.methods.full import METHOD as FULL
from training.methods.lora import METHOD as LORA
from training.methods.prompt_tuning import METHOD as PROMPT_TUNING
from training.methods.qlora import METHOD as QLORA
from training.methods.selective import METHOD as SELECTIVE

METHODS = {m.name: m for m in (LORA, QLORA, PROMPT_TUNING, FULL, SELECTIVE)}
