"""Training utilities: tiny offline models and adapters (`training.tiny`), pretraining, fine-tuning."""
