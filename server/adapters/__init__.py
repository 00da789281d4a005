"""Adapter discovery, validation and hot-loading.

`base_model` knows the shapes an adapter must fit; `soft_prompt` loads soft prompts; `registry`
ties them to the engine. The rules shared with training live in `adapter_formats`: `paths` keeps
every name inside the adapters directory, `manifest` matches an adapter to this base and runner,
`servable` validates a LoRA.
"""
