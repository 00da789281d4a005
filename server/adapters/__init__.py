"""Adapter discovery, validation and hot-loading.

`paths` keeps every name inside the adapters directory; `base_model` knows the shapes an adapter
must fit; `lora` and `soft_prompt` validate one kind each; `registry` ties them to the engine.
"""
