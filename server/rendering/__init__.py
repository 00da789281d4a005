"""What the server derives from its model's tokenizer at start-up and keeps in `ServerState`:
requests rendered into prompt ids (`prompts`), and the parser that reads tool calls back out of
generated text (`tool_parsing`). Below `serving`, which uses them per request."""
