"""Request logic: validate, render the prompt, run the engine, shape the answer.

Functions here raise `APIError` for anything the client did wrong and know nothing about HTTP.
"""
