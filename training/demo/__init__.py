"""The built-in demo: a small base model and adapters the project builds itself, offline."""
