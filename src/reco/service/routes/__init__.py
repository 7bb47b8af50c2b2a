"""The API's routes, one module per resource; each is thin: parse, call, answer."""
