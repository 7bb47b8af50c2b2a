"""The HTTP service: FastAPI app, API keys, rate limits and the recommendation cache."""
