"""Pydantic models of the HTTP protocol, ordered like the OpenAI API reference.

Fields that OpenAI does not have sit under a `# Extensions (not in the OpenAI API)` comment.
"""
