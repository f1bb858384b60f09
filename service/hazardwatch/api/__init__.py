"""The HTTP API (FastAPI) and the server thread that runs it inside `hazardwatch run`."""
