"""OpenAI-compatible server for one base model and many LoRA / soft-prompt adapters on vLLM.

    python -m server --model DIR --adapters DIR [--port 8000] [--api-key KEY]

Layout: `config` (typed flags) -> `engine` (vLLM AsyncLLM) -> `adapters` (discovery,
validation, hot-loading) -> `serving` (request logic, errors as values) -> `api` (thin
FastAPI routers) -> `app` (wiring). `protocol` holds the OpenAI-shaped pydantic models.
`in_engine` is the code that runs inside vLLM's own processes (its plugin and what that
installs); `vllm_patches` lists every vLLM, torch and xgrammar internal the server touches, and
`vllm_version` refuses a vLLM version it was not tested with.
"""
