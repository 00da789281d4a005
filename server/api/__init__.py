"""Thin FastAPI routers: parse, call `server.serving`, return. No request logic here."""
