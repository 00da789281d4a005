"""OpenAI-compatible server for one base model and many LoRA / soft-prompt adapters on vLLM.

    python -m server --model DIR --adapters DIR [--port 8000] [--api-key KEY]

Layout: `config` (typed flags) -> `engine` (vLLM AsyncLLM) -> `adapters` (discovery,
validation, hot-loading) -> `serving` (request logic, errors as values) -> `api` (thin
FastAPI routers) -> `app` (wiring). `protocol` holds the OpenAI-shaped pydantic models.
"""
